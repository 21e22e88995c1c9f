"""The settings of the pixel optimisation (:class:`ReconstructionConfig`); a leaf module."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .._schema import check_all, setting
from ..losses import DEFAULT_LOSS, get_loss

OPTIMIZERS = ("adam", "momentum")
ENSEMBLE_MODES = ("average_movies", "average_gradients")


@dataclass(frozen=True)
class ReconstructionConfig:
    """Settings of the pixel optimisation. The defaults are the tool's tested defaults.

    ``learning_rate`` is in grey levels per step for a pixel whose normalised gradient is
    one (gradients are divided by their root mean square inside the update mask, so the
    step size does not depend on the number of neurons or the loss scale).
    """

    iterations: int = setting(200, "optimisation steps per trial (fewer when early stopping ends sooner)",
                              stage="reconstruct", low=1, high=100000)
    optimizer: str = setting("adam", "how the pixels are updated", stage="reconstruct", choices=OPTIMIZERS,
                             advanced=True)
    learning_rate: float = setting(4.0, "step size for a pixel whose normalised gradient is one", stage="reconstruct",
                                   unit="grey levels per step", low=1e-6, high=255.0, advanced=True)
    momentum: float = setting(0.9, "momentum of the 'momentum' optimizer", stage="reconstruct", low=0.0, high=0.999,
                              advanced=True)
    gradient_clip: float = setting(3.0, "gradients are clipped at this many times their RMS inside the update mask",
                                   stage="reconstruct", low=0.1, high=1000.0, advanced=True)
    ensemble: str = setting("average_movies", "average the members' movies, or their gradients on one movie",
                            stage="reconstruct", choices=ENSEMBLE_MODES, advanced=True)
    blur_sigma: float | None = setting(0.5, "3D Gaussian blur of the final movie (0 or none: off)", stage="reconstruct",
                                       kind=float, unit="pixels and frames", low=0.0, high=10.0, optional=True,
                                       advanced=True)
    start_grey: float = setting(128.0, "the grey level of the starting movie", stage="reconstruct", unit="grey levels",
                                low=0.0, high=255.0, advanced=True)
    start_noise: float = setting(0.0, "std of Gaussian noise added to the grey start (uses the seed)",
                                 stage="reconstruct", unit="grey levels", low=0.0, high=128.0, advanced=True)
    pixel_range: tuple[float, float] = (0.0, 255.0)
    early_stopping: bool = setting(True, "stop when the loss stops improving", stage="reconstruct", advanced=True)
    # Chosen on the twin's validation trials (docs/reconstruction_benchmark.md): the masked
    # correlation peaks after about 40 to 60 steps and then falls slowly as the pixels fit response
    # noise, so stopping at the loss's knee is both faster and no worse.
    patience: int = setting(10, "early stopping: steps without enough improvement before stopping",
                            stage="reconstruct", low=1, high=10000, advanced=True)
    min_improvement: float = setting(0.01, "early stopping: the fraction of the improvement so far that counts as "
                                           "progress", stage="reconstruct", low=0.0, high=1.0, advanced=True)
    min_iterations: int = setting(30, "early stopping: never before this many steps", stage="reconstruct", low=1,
                                  high=100000, advanced=True)
    batch_size: int = setting(10, "trials optimised together (memory grows with it)", stage="reconstruct", low=1,
                              high=1000, advanced=True)
    # Compute once what the fixed behaviour and the update mask leave unchanged (models that
    # offer ``prepare``, as our Encoder does): exact, so off only to measure what it saves.
    reuse_fixed_parts: bool = True
    preview_every: int = 10  # steps between preview frames (0 = only the final one)
    seed: int = 0
    loss: str = DEFAULT_LOSS  # a name from the loss table (movie_reconstruction.losses)
    # Against the stride-2 core's checkerboard (issue 24, reconstruct.antialias): ``jitter`` moves the
    # update by up to this many whole pixels each step (0 = off). On by default since the twin's run
    # (7,776 neurons, 10 test trials, one ensemble): period-2 power from a median 4.6x the stimulus's
    # (up to 19x) to 0.9x (up to 1.6x), SSIM 0.474 -> 0.578, masked r unchanged (0.752 both); on the
    # full demo's trials it doubled SSIM and raised r (docs/reconstruction.md, "The checkerboard").
    # ``gradient_blur``: sigma in pixels of a spatial Gaussian blur of each step's gradient (0 = off;
    # it also worked, less well in r and SSIM).
    jitter: int = setting(1, "shift each step's update by up to this many pixels, against the checkerboard "
                             "(0: off)", stage="reconstruct", unit="pixels", low=0, high=4, advanced=True)
    gradient_blur: float = setting(0.0, "spatial Gaussian blur of each step's gradient (0: off)", stage="reconstruct",
                                   unit="pixels", low=0.0, high=5.0, advanced=True)

    def __post_init__(self):
        check_all(self)  # each described setting's range and choices (ValueError naming it)
        get_loss(self.loss)  # ValueError naming the known losses
        lo, hi = self.pixel_range
        if not lo < hi:
            raise ValueError(f"pixel_range must be (low, high) with low < high, got {self.pixel_range}")
        object.__setattr__(self, "pixel_range", (float(lo), float(hi)))

    def to_dict(self) -> dict:
        return asdict(self)
