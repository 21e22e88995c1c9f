"""napari-movie-reconstruction: reconstruct the movie a mouse saw from its visual cortex activity.

The importable core is plain Python + NumPy; torch, suite2p, napari and Qt are imported
lazily by the stages that need them, so ``import movie_reconstruction`` stays light.
"""

__version__ = "0.1.0"

from .errors import InputError
from .recording import NeuronTable, Recording, Trial
from .traces import Traces

__all__ = ["InputError", "NeuronTable", "Recording", "Trial", "Traces", "__version__"]
