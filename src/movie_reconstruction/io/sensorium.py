"""Sensorium 2023 mouse folders: read one as a lazy :class:`Recording`, write one back.

Layout (per mouse)::

    data/videos/{i}.npy        (36, 64, T)   stimulus frames, 0..255
    data/responses/{i}.npy     (neurons, T)  deconvolved activity
    data/behavior/{i}.npy      (2, T)        pupil dilation, running speed
    data/pupil_center/{i}.npy  (2, T)        pupil x, y
    meta/trials/tiers.npy      (trials,)     train | oracle | live_test_* | final_test_* | none
    meta/neurons/unit_ids.npy, meta/neurons/cell_motor_coordinates.npy

Tiers map onto ours as train -> train, oracle -> validation, *test* -> test; trials marked
``none`` are left out. Reading opens nothing but the metadata: trial arrays are
memory-mapped when first touched.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import InputError
from ..recording import BEHAVIOR_CHANNELS, LazyArrays, NeuronTable, Recording

SENSORIUM_FRAME_RATE = 30.0
ARRAY_FOLDERS = ("videos", "responses", "behavior", "pupil_center")
TIER_TO_SENSORIUM = {"train": "train", "validation": "oracle", "test": "final_test_main"}


def sensorium_tier(tier: str) -> str | None:
    """Our tier for a Sensorium tier name, or None for trials to leave out."""
    if tier == "train":
        return "train"
    if tier == "oracle":
        return "validation"
    if "test" in tier:
        return "test"
    return None


def _stack_behaviour(behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
    return np.concatenate([behavior, pupil_center], axis=0)


class _BehaviourFiles(LazyArrays):
    """Each trial's behaviour is two files (behavior + pupil_center) stacked into four channels."""

    def __init__(self, behavior: LazyArrays, pupil_center: LazyArrays):
        super().__init__(behavior.paths)
        self.behavior, self.pupil_center = behavior, pupil_center

    def __getitem__(self, i):
        if isinstance(i, slice):
            return _BehaviourFiles(self.behavior[i], self.pupil_center[i])
        return _stack_behaviour(self.behavior[i], self.pupil_center[i])


def read_sensorium(folder: str | Path, *, frame_rate: float | None = None) -> Recording:
    """Open a Sensorium 2023 mouse folder lazily (30 Hz unless the folder's recording.json says otherwise)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("Sensorium folder not found", folder)
    if frame_rate is None:
        info = folder / "recording.json"
        frame_rate = json.loads(info.read_text()).get("frame_rate", SENSORIUM_FRAME_RATE) if info.exists() else SENSORIUM_FRAME_RATE
    tiers_path = folder / "meta" / "trials" / "tiers.npy"
    if not tiers_path.exists():
        raise InputError("not a Sensorium mouse folder: meta/trials/tiers.npy is missing", folder)
    raw_tiers = np.load(tiers_path, allow_pickle=False).astype(str)
    keep = np.array([sensorium_tier(t) is not None for t in raw_tiers])
    trial_ids = np.flatnonzero(keep)
    tiers = np.array([sensorium_tier(t) for t in raw_tiers[keep]])

    arrays = {}
    for name in ARRAY_FOLDERS:
        paths = [folder / "data" / name / f"{i}.npy" for i in trial_ids]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InputError(
                f"{len(missing)} trial file(s) missing from data/{name}, first {missing[0].name} "
                f"(tiers.npy lists {len(raw_tiers)} trials)",
                missing[0],
            )
        arrays[name] = LazyArrays(paths)

    neurons_dir = folder / "meta" / "neurons"
    ids_path = neurons_dir / "unit_ids.npy"
    first = arrays["responses"][0]
    n_neurons = first.shape[0]
    ids = np.load(ids_path, allow_pickle=False) if ids_path.exists() else np.arange(n_neurons)
    if ids.shape[0] != n_neurons:
        raise InputError(f"unit_ids has {ids.shape[0]} entries, responses have {n_neurons} neurons", ids_path)
    coords_path = neurons_dir / "cell_motor_coordinates.npy"
    positions = np.load(coords_path, allow_pickle=False) if coords_path.exists() else None

    return Recording(
        videos=LazyArrays(arrays["videos"].paths, transform=lambda v: np.moveaxis(v, -1, 0)),
        responses=arrays["responses"],
        behavior=_BehaviourFiles(arrays["behavior"], arrays["pupil_center"]),
        frame_rate=frame_rate,
        tiers=tiers,
        neurons=NeuronTable(ids, positions, "microns" if positions is not None else "pixels"),
        trial_ids=trial_ids,
        behavior_channels=BEHAVIOR_CHANNELS,
        source=folder,
        name=folder.name,
    )


def write_sensorium(recording: Recording, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``recording`` as a Sensorium 2023 mouse folder, atomically (all or nothing)."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise InputError("output folder already exists (pass overwrite=True to replace it)", folder)
    if tuple(recording.behavior_channels) != BEHAVIOR_CHANNELS:
        raise InputError(
            f"Sensorium layout needs behaviour channels {list(BEHAVIOR_CHANNELS)}, recording has {list(recording.behavior_channels)}"
        )
    with atomic_path(folder) as tmp:
        for name in ARRAY_FOLDERS:
            (tmp / "data" / name).mkdir(parents=True)
        (tmp / "meta" / "trials").mkdir(parents=True)
        (tmp / "meta" / "neurons").mkdir(parents=True)
        for k in range(len(recording)):
            trial = recording.trial(k)
            i = int(recording.trial_ids[k])
            np.save(tmp / "data" / "videos" / f"{i}.npy", np.ascontiguousarray(np.moveaxis(trial.video, 0, -1)))
            np.save(tmp / "data" / "responses" / f"{i}.npy", trial.responses)
            np.save(tmp / "data" / "behavior" / f"{i}.npy", trial.behavior[:2])
            np.save(tmp / "data" / "pupil_center" / f"{i}.npy", trial.behavior[2:4])
        n_slots = int(recording.trial_ids.max()) + 1 if len(recording) else 0
        tiers = np.full(n_slots, "none", dtype="<U16")
        tiers[recording.trial_ids] = [TIER_TO_SENSORIUM[t] for t in recording.tiers]
        np.save(tmp / "meta" / "trials" / "tiers.npy", tiers)
        np.save(tmp / "meta" / "neurons" / "unit_ids.npy", recording.neurons.ids)
        if recording.neurons.positions is not None:
            np.save(tmp / "meta" / "neurons" / "cell_motor_coordinates.npy", recording.neurons.positions)
        (tmp / "recording.json").write_text(
            json.dumps({"name": recording.name, "frame_rate": recording.frame_rate, "trials": len(recording)}, indent=1)
        )
    return folder
