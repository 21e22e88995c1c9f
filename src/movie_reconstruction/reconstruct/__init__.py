"""Movie reconstruction: invert trained encoders by gradient descent on the pixels.

``reconstruct(models, trials)`` is a job generator (see :mod:`movie_reconstruction.progress`)
that yields progress with preview frames and returns a :class:`Reconstruction`. Metrics,
transparency masks, controls, verdicts and resolution live in the submodules (module map:
docs/architecture.md); the paper's windowed loop is a baseline in ``benchmarks/``. torch is
imported inside the functions that need it.
"""

from .config import ReconstructionConfig
from .optimiser import reconstruct, reconstruct_all
from .result import Reconstruction

__all__ = ["Reconstruction", "ReconstructionConfig", "reconstruct", "reconstruct_all"]
