"""Parameters of a simulated two-photon session, grouped by what they describe.

Every number has a unit in its name or its comment. ``SimulationConfig.default()`` is the
demo session, ``quick()`` a short one for a two-minute demo, ``tiny()`` the size used by the
tests and the napari sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InputError

# Photographs that ship inside scikit-image (no download). Test clips come from images that
# are never used for training or validation, so a reconstruction test is on unseen scenes.
TRAIN_IMAGES: tuple[str, ...] = ("camera", "astronaut", "coffee", "rocket", "grass", "brick", "moon", "coins")
TEST_IMAGES: tuple[str, ...] = ("chelsea", "gravel", "clock")


@dataclass(frozen=True)
class StimulusConfig:
    frame_rate: float = 30.0  # Hz, movie frames
    frame_shape: tuple[int, int] = (36, 64)  # (H, W) pixels
    trial_seconds: float = 10.0
    n_train: int = 20
    n_validation: int = 3
    n_test: int = 3
    grey_seconds: float = 1.0  # grey screen between trials (shown, so part of the movie)
    lead_in_seconds: float = 1.0  # grey screen before the first and after the last trial
    train_images: tuple[str, ...] = TRAIN_IMAGES  # skimage.data names or image file paths
    test_images: tuple[str, ...] = TEST_IMAGES
    train_videos: tuple[str, ...] = ()  # video file paths (read with PyAV); mixed with the images
    test_videos: tuple[str, ...] = ()
    monitor_refresh_hz: float = 60.0  # each movie frame lasts a whole number of refreshes
    dropped_frame_probability: float = 0.002  # a frame held one refresh longer
    photodiode_jitter_s: float = 0.0002
    degrees_per_pixel: float = 1.8  # visual angle of one stimulus pixel (64 px ~ 115 deg)

    @property
    def n_trials(self) -> int:
        return self.n_train + self.n_validation + self.n_test

    @property
    def trial_frames(self) -> int:
        return int(round(self.trial_seconds * self.frame_rate))


@dataclass(frozen=True)
class PopulationConfig:
    n_neurons: int = 600
    # Receptive-field centres cover this fraction of the stimulus width and height, centred
    # at ``coverage_centre`` (fractions of width, height). 1.0 covers the whole screen.
    coverage: float = 0.6
    coverage_centre: tuple[float, float] = (0.5, 0.5)
    rf_scatter_pixels: float = 1.5  # scatter around the retinotopic map
    sigma_pixels: tuple[float, float] = (3.0, 7.0)  # Gaussian envelope s.d., log-uniform (5-13 deg)
    spatial_frequency_cycles_per_pixel: tuple[float, float] = (0.03, 0.10)  # log-uniform (0.017-0.056 cycles/deg)
    aspect_ratio: tuple[float, float] = (0.5, 1.0)  # envelope width / length
    complex_fraction: float = 0.5  # phase-invariant (energy-model) cells
    luminance_fraction: float = 0.3  # untuned ON/OFF cells that follow the local luminance
    latency_s: tuple[float, float] = (0.04, 0.08)
    temporal_peak_s: tuple[float, float] = (0.03, 0.07)  # after the latency
    temporal_undershoot: tuple[float, float] = (0.2, 0.6)  # biphasic: negative lobe / positive lobe
    threshold_sd: float = 0.3  # rectification threshold in s.d. of each cell's drive
    exponent: float = 2.0  # power of the rectified drive (expansive, so responses are sparse)
    mean_rate_hz: float = 6.0  # median over cells of the mean firing rate during stimuli
    mean_rate_spread: float = 0.5  # log-normal s.d. across cells
    spontaneous_rate_hz: float = 0.3
    max_rate_hz: float = 80.0  # responses saturate softly toward this rate
    running_gain: tuple[float, float] = (0.0, 1.0)  # extra gain at full running, per cell (uniform)
    running_half_speed_cm_s: float = 10.0
    eye_shift: bool = True  # receptive fields move with the pupil position


@dataclass(frozen=True)
class BehaviourConfig:
    running_sample_rate_hz: float = 100.0  # wheel encoder clock
    pupil_sample_rate_hz: float = 20.0  # eye camera clock
    rest_bout_s: float = 8.0  # mean duration of rest bouts (exponential)
    run_bout_s: float = 6.0  # mean duration of running bouts
    run_speed_cm_s: tuple[float, float] = (8.0, 30.0)  # per-bout mean speed, uniform
    pupil_baseline: float = 18.0  # pupil diameter, camera pixels, at rest
    pupil_arousal_gain: float = 8.0  # extra diameter at full arousal
    pupil_time_constant_s: float = 1.5  # dilation lags arousal
    saccades_per_s: float = 0.25
    saccade_amplitude_deg: float = 6.0  # s.d. per axis
    fixation_drift_deg: float = 0.5  # s.d. of slow drift
    eye_recentre_s: float = 3.0  # the eye drifts back toward the centre


INDICATORS: dict[str, dict[str, float]] = {
    # rise / decay time constants (s) and the dF/F of one action potential; approximate
    # in-vivo values (Chen et al. 2013; Dana et al. 2019; Zhang et al. 2023).
    "GCaMP6f": {"rise_s": 0.02, "decay_s": 0.40, "dff_per_spike": 0.15},
    "GCaMP6m": {"rise_s": 0.04, "decay_s": 0.80, "dff_per_spike": 0.15},
    "GCaMP6s": {"rise_s": 0.07, "decay_s": 1.50, "dff_per_spike": 0.25},
    "jGCaMP7f": {"rise_s": 0.02, "decay_s": 0.30, "dff_per_spike": 0.20},
    "jGCaMP8m": {"rise_s": 0.007, "decay_s": 0.20, "dff_per_spike": 0.25},
}


@dataclass(frozen=True)
class ImagingConfig:
    frame_rate: float = 30.0  # Hz, imaging frames (volumes)
    fov_shape: tuple[int, int] = (224, 224)  # (Y, X) pixels
    indicator: str = "GCaMP6f"
    rise_s: float | None = None  # None: the indicator's value
    decay_s: float | None = None
    dff_per_spike: float | None = None
    saturation_spikes: float = 30.0  # dF/F saturates as c / (1 + c / this)
    soma_radius_pixels: tuple[float, float] = (2.5, 3.5)
    nucleus_dimming: float = 0.5  # GCaMP is excluded from the nucleus
    soma_brightness: float = 6.0  # mean photons per soma pixel per frame at F0
    background_brightness: float = 3.0  # photons per pixel per frame, tissue autofluorescence
    neuropil_brightness: float = 2.0  # photons per pixel per frame from out-of-focus neuropil
    neuropil_modulation: float = 0.3  # neuropil dF/F relative to the population mean dF/F
    bleach_fraction: float = 0.1  # fluorescence lost by the end of a long session
    bleach_time_constant_s: float = 1200.0
    motion_sd_pixels: float = 0.6  # slow rigid drift
    motion_time_constant_s: float = 3.0
    running_motion_pixels: float = 0.8  # extra jitter while running
    photons_to_adu: float = 20.0  # detector gain
    read_noise_adu: float = 8.0
    offset_adu: float = 100.0
    frames_per_file: int = 4000  # a new TIFF every this many frames
    imaging_start_s: float = 0.0  # first frame time on the shared clock

    def indicator_kinetics(self) -> tuple[float, float, float]:
        """(rise_s, decay_s, dff_per_spike) with per-field overrides applied."""
        if self.indicator not in INDICATORS:
            raise InputError(f"unknown indicator {self.indicator!r}; known: {sorted(INDICATORS)}")
        base = INDICATORS[self.indicator]
        return (
            float(self.rise_s if self.rise_s is not None else base["rise_s"]),
            float(self.decay_s if self.decay_s is not None else base["decay_s"]),
            float(self.dff_per_spike if self.dff_per_spike is not None else base["dff_per_spike"]),
        )


@dataclass(frozen=True)
class DaqConfig:
    """Raw sync signals in place of timestamp files (``write_sync_signals``), as a lab's DAQ records them."""

    write_sync_signals: bool = False  # timing/daq.h5 (frame clock, vsync, photodiode, wheel) and a [sync] manifest section
    sample_rate_hz: float = 10_000.0
    display_lag_s: float = 0.0167  # vsync edge to the photodiode seeing the new frame
    photodiode_noise: float = 0.03  # s.d., in units of the black-to-white step
    photodiode_drift: float = 0.3  # slow change of baseline and gain, same units
    # the wheel in the DAQ file, from the simulated running speed: "quadrature" (lines wheel_a, wheel_b),
    # "analog" (wheel_analog) or "" (none: running stays a behaviour file)
    wheel_encoder: str = "quadrature"
    wheel_counts_per_rev: int = 4096  # a 1024-line disc, four state changes per line
    wheel_diameter_cm: float = 20.0
    wheel_analog_max_volts: float = 5.0
    wheel_analog_noise_volts: float = 0.01


@dataclass(frozen=True)
class SimulationConfig:
    name: str = "simulated-mouse"
    stimulus: StimulusConfig = field(default_factory=StimulusConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    daq: DaqConfig = field(default_factory=DaqConfig)

    @classmethod
    def default(cls) -> SimulationConfig:
        """The demo session: 26 ten-second trials, 600 neurons, 224x224 pixels at 30 Hz (~4.8 min)."""
        return cls()

    @classmethod
    def quick(cls) -> SimulationConfig:
        """The under-two-minute demo: 15 eight-second trials, 300 neurons, 160x160 pixels."""
        return cls(
            name="simulated-mouse-quick",
            stimulus=StimulusConfig(trial_seconds=8.0, n_train=12, n_validation=1, n_test=2, grey_seconds=0.5),
            population=PopulationConfig(n_neurons=300),
            imaging=ImagingConfig(fov_shape=(160, 160)),
        )

    @classmethod
    def tiny(cls) -> SimulationConfig:
        """Seconds to make: tests and the napari sample (4 three-second trials, 24 neurons, 64x64)."""
        return cls(
            name="simulated-mouse-tiny",
            stimulus=StimulusConfig(trial_seconds=3.0, n_train=2, n_validation=1, n_test=1, grey_seconds=0.5),
            population=PopulationConfig(n_neurons=24),
            imaging=ImagingConfig(fov_shape=(64, 64), frames_per_file=200),
        )

    @classmethod
    def preset(cls, name: str) -> SimulationConfig:
        presets = {"default": cls.default, "quick": cls.quick, "tiny": cls.tiny}
        if name not in presets:
            raise InputError(f"unknown simulation preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()

    def replace(self, **sections) -> SimulationConfig:
        """A copy with some fields of some sections changed: ``replace(imaging={"frame_rate": 15})``."""
        changes = {}
        for section, values in sections.items():
            current = getattr(self, section)
            if isinstance(values, dict):
                unknown = set(values) - {f.name for f in dataclasses.fields(current)}
                if unknown:
                    raise InputError(f"unknown {section} setting(s) {sorted(unknown)}")
                changes[section] = dataclasses.replace(current, **values)
            else:
                changes[section] = values
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SimulationConfig:
        sections = {
            "stimulus": StimulusConfig,
            "population": PopulationConfig,
            "behaviour": BehaviourConfig,
            "imaging": ImagingConfig,
            "daq": DaqConfig,
        }
        kwargs = {"name": data.get("name", "simulated-mouse")}
        for key, kind in sections.items():
            values = dict(data.get(key, {}))
            for f in dataclasses.fields(kind):
                if f.name in values and isinstance(values[f.name], list):
                    values[f.name] = tuple(values[f.name])
            kwargs[key] = kind(**values)
        return cls(**kwargs)
