"""The aligned recording: trials of stimulus frames with each neuron's activity and the
behaviour resampled onto the same frame times.

Everything downstream (training, reconstruction, the viewer) reads this one type. Trial
arrays are held as sequences that may load lazily (memory-mapped ``.npy`` files), so a
recording of thousands of trials and 10,000+ neurons costs almost nothing until a trial is
touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, require_finite

BEHAVIOR_CHANNELS: tuple[str, ...] = ("pupil", "running", "pupil_x", "pupil_y")
TIERS: tuple[str, ...] = ("train", "validation", "test")


class LazyArrays(Sequence):
    """A sequence of arrays, one per trial, loaded on access from ``.npy`` files.

    Files are memory-mapped, so touching one trial reads only that trial's pages.
    ``transform`` turns the stored layout into ours (for example Sensorium's
    ``(H, W, T)`` videos into ``(T, H, W)``) without copying.
    """

    def __init__(self, paths: Sequence[Path], transform: Callable[[np.ndarray], np.ndarray] | None = None):
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return LazyArrays(self.paths[i], self.transform)
        path = self.paths[i]
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise InputError("trial file is missing", path) from None
        except (ValueError, OSError) as exc:
            raise InputError(f"not a readable .npy array ({exc})", path) from None
        return self.transform(array) if self.transform is not None else array

    def path_of(self, i: int) -> Path:
        return self.paths[i]


@dataclass(frozen=True)
class NeuronTable:
    """Per-neuron metadata: a stable id and a position.

    ``positions`` are (y, x) pixels in the imaging field of view for recordings that we
    extracted ourselves, or whatever coordinates the source provides (Sensorium's
    ``cell_motor_coordinates`` are 3D, in microns).
    """

    ids: np.ndarray
    positions: np.ndarray | None = None
    position_units: str = "pixels"

    def __post_init__(self):
        object.__setattr__(self, "ids", np.asarray(self.ids))
        if self.ids.ndim != 1:
            raise InputError(f"neuron ids must be 1-D, got shape {self.ids.shape}")
        if self.positions is not None:
            positions = np.asarray(self.positions, dtype=np.float32)
            if positions.ndim != 2 or positions.shape[0] != self.ids.shape[0]:
                raise InputError(
                    f"neuron positions must be (neurons, dims) with {self.ids.shape[0]} rows, got {positions.shape}"
                )
            object.__setattr__(self, "positions", positions)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def subset(self, index) -> NeuronTable:
        index = np.asarray(index)
        return NeuronTable(
            self.ids[index], None if self.positions is None else self.positions[index], self.position_units
        )


@dataclass(frozen=True)
class Trial:
    """One trial, all arrays on the stimulus frame clock."""

    video: np.ndarray  # (T, H, W) float32, 0..255 grey levels
    responses: np.ndarray  # (neurons, T) float32, non-negative activity
    behavior: np.ndarray  # (channels, T) float32
    behavior_channels: tuple[str, ...]
    trial_id: int
    tier: str
    frame_rate: float

    @property
    def n_frames(self) -> int:
        return int(self.video.shape[0])

    def channel(self, name: str) -> np.ndarray:
        return self.behavior[self.behavior_channels.index(name)]


@dataclass
class Recording:
    """Stimulus trials with aligned responses and behaviour for one mouse (or one session).

    ``videos[i]`` is ``(T_i, H, W)``, ``responses[i]`` is ``(neurons, T_i)`` and
    ``behavior[i]`` is ``(channels, T_i)``; each may be an in-memory array or a lazily
    loaded one (see :class:`LazyArrays`). ``tiers[i]`` is one of ``train``, ``validation``,
    ``test``.
    """

    videos: Sequence
    responses: Sequence
    behavior: Sequence
    frame_rate: float
    tiers: np.ndarray
    neurons: NeuronTable
    trial_ids: np.ndarray | None = None
    behavior_channels: tuple[str, ...] = BEHAVIOR_CHANNELS
    source: Path | None = None
    name: str = "recording"
    neuron_index: np.ndarray | None = field(default=None, repr=False)
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        n = len(self.videos)
        if len(self.responses) != n or len(self.behavior) != n:
            raise InputError(
                f"trial counts differ: {n} videos, {len(self.responses)} response arrays, "
                f"{len(self.behavior)} behaviour arrays",
                self.source,
            )
        self.tiers = np.asarray(self.tiers).astype(str)
        if self.tiers.shape != (n,):
            raise InputError(f"expected {n} tiers, got shape {self.tiers.shape}", self.source)
        unknown = sorted(set(self.tiers.tolist()) - set(TIERS))
        if unknown:
            raise InputError(f"unknown tier(s) {unknown}; expected {list(TIERS)}", self.source)
        self.trial_ids = np.arange(n) if self.trial_ids is None else np.asarray(self.trial_ids)
        if self.trial_ids.shape != (n,):
            raise InputError(f"expected {n} trial ids, got shape {self.trial_ids.shape}", self.source)
        ids, counts = np.unique(self.trial_ids, return_counts=True)
        if (counts > 1).any():  # trials are stored and looked up by id: a repeat would hide one
            raise InputError(f"trial id(s) {', '.join(str(i) for i in ids[counts > 1].tolist())} appear more than once", self.source)
        self.behavior_channels = tuple(self.behavior_channels)
        if not np.isfinite(self.frame_rate) or self.frame_rate <= 0:
            raise InputError(f"frame rate must be positive, got {self.frame_rate}", self.source)

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.videos)

    @property
    def n_neurons(self) -> int:
        return len(self.neurons)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of the stimulus frames, read from the first trial."""
        return tuple(int(s) for s in self.videos[0].shape[1:3])

    # ------------------------------------------------------------------ access
    def trial(self, i: int) -> Trial:
        """Trial ``i`` (position, not id) with its shapes checked; arrays may be memory-mapped."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"trial {i} out of range for {len(self)} trials")
        video, responses, behavior = self.videos[i], self.responses[i], self.behavior[i]
        where = self._where(i)
        if video.ndim != 3:
            raise InputError(f"video must be (frames, height, width), got shape {video.shape}", where)
        if self.neuron_index is not None:
            responses = responses[self.neuron_index]
        t = video.shape[0]
        if responses.ndim != 2 or responses.shape[1] != t:
            raise InputError(f"responses have shape {responses.shape}, expected (neurons, {t}) to match the video", where)
        if responses.shape[0] != self.n_neurons:
            raise InputError(f"responses have {responses.shape[0]} neurons, the recording has {self.n_neurons}", where)
        if behavior.ndim != 2 or behavior.shape != (len(self.behavior_channels), t):
            raise InputError(
                f"behaviour has shape {behavior.shape}, expected ({len(self.behavior_channels)}, {t})", where
            )
        require_finite(responses, "responses", where)
        return Trial(
            video=np.asarray(video, dtype=np.float32),
            responses=np.asarray(responses, dtype=np.float32),
            behavior=np.asarray(behavior, dtype=np.float32),
            behavior_channels=self.behavior_channels,
            trial_id=int(self.trial_ids[i]),
            tier=str(self.tiers[i]),
            frame_rate=self.frame_rate,
        )

    def __iter__(self) -> Iterator[Trial]:
        for i in range(len(self)):
            yield self.trial(i)

    def _where(self, i: int):
        responses = self.responses
        if isinstance(responses, LazyArrays):
            return responses.path_of(i)
        return self.source

    def validate(self) -> Recording:
        """Load every trial once and check shapes and values; returns self for chaining."""
        shape = None
        for i in range(len(self)):
            trial = self.trial(i)
            if shape is None:
                shape = trial.video.shape[1:]
            elif trial.video.shape[1:] != shape:
                raise InputError(f"frame size {trial.video.shape[1:]} differs from trial 0's {shape}", self._where(i))
        return self

    # ------------------------------------------------------------------ selection
    def indices(self, tier: str) -> np.ndarray:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; expected one of {TIERS}")
        return np.flatnonzero(self.tiers == tier)

    def select(self, index) -> Recording:
        """A recording of the trials at ``index`` (positions); arrays stay lazy."""
        index = np.atleast_1d(np.asarray(index))
        if index.dtype == bool:
            index = np.flatnonzero(index)
        pick = lambda seq: _Subsequence(seq, index)  # noqa: E731
        return Recording(
            videos=pick(self.videos),
            responses=pick(self.responses),
            behavior=pick(self.behavior),
            frame_rate=self.frame_rate,
            tiers=self.tiers[index],
            neurons=self.neurons,
            trial_ids=self.trial_ids[index],
            behavior_channels=self.behavior_channels,
            source=self.source,
            name=self.name,
            neuron_index=self.neuron_index,
            extra=dict(self.extra),
        )

    def split(self) -> dict[str, Recording]:
        """``{"train": ..., "validation": ..., "test": ...}``; tiers without trials are left out."""
        return {tier: self.select(self.indices(tier)) for tier in TIERS if (self.tiers == tier).any()}

    def with_neurons(self, index) -> Recording:
        """The same trials restricted to a subset of neurons (by position in the table)."""
        index = np.atleast_1d(np.asarray(index))
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.size and (index.min() < 0 or index.max() >= self.n_neurons):
            raise IndexError(f"neuron index out of range for {self.n_neurons} neurons")
        combined = index if self.neuron_index is None else self.neuron_index[index]
        return Recording(
            videos=self.videos,
            responses=self.responses,
            behavior=self.behavior,
            frame_rate=self.frame_rate,
            tiers=self.tiers,
            neurons=self.neurons.subset(index),
            trial_ids=self.trial_ids,
            behavior_channels=self.behavior_channels,
            source=self.source,
            name=self.name,
            neuron_index=combined,
            extra=dict(self.extra),
        )

    def __repr__(self) -> str:
        counts = ", ".join(f"{t}={int((self.tiers == t).sum())}" for t in TIERS)
        return (
            f"Recording({self.name!r}, {len(self)} trials [{counts}], {self.n_neurons} neurons, "
            f"{self.frame_rate:g} Hz, behaviour {list(self.behavior_channels)})"
        )


class _Subsequence(Sequence):
    """A view of some items of a sequence, without loading them."""

    def __init__(self, base: Sequence, index: np.ndarray):
        self.base, self.index = base, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return _Subsequence(self.base, self.index[i])
        return self.base[int(self.index[i])]

    def path_of(self, i: int):
        return self.base.path_of(int(self.index[i])) if hasattr(self.base, "path_of") else None


def from_arrays(
    videos: Sequence[np.ndarray],
    responses: Sequence[np.ndarray],
    behavior: Sequence[np.ndarray],
    *,
    frame_rate: float,
    tiers: Sequence[str],
    neuron_ids=None,
    neuron_positions=None,
    behavior_channels: Sequence[str] = BEHAVIOR_CHANNELS,
    name: str = "recording",
) -> Recording:
    """Build an in-memory recording from per-trial arrays (checked eagerly)."""
    n_neurons = int(np.asarray(responses[0]).shape[0])
    ids = np.arange(n_neurons) if neuron_ids is None else neuron_ids
    recording = Recording(
        videos=[np.asarray(v, dtype=np.float32) for v in videos],
        responses=[np.asarray(r, dtype=np.float32) for r in responses],
        behavior=[np.asarray(b, dtype=np.float32) for b in behavior],
        frame_rate=frame_rate,
        tiers=np.asarray(tiers),
        neurons=NeuronTable(np.asarray(ids), neuron_positions),
        behavior_channels=tuple(behavior_channels),
        name=name,
    )
    return recording.validate()
