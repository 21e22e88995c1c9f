"""Movie reconstruction: invert trained encoders by gradient descent on the pixels.

``reconstruct(models, trials)`` is a job generator (see :mod:`movie_reconstruction.progress`)
that yields progress with preview frames and returns a :class:`Reconstruction`. Metrics,
transparency masks, controls and the paper's windowed loop (a benchmark baseline) live in
the submodules. torch is imported inside the functions that need it.
"""

from .optimiser import Reconstruction, ReconstructionConfig, reconstruct, reconstruct_all

__all__ = ["Reconstruction", "ReconstructionConfig", "reconstruct", "reconstruct_all"]
