"""An NWB file opened and listed: its data objects by path, the choice of the objects of one kind
(by name, or the only one), and :class:`NwbSession`, the record that :mod:`movie_reconstruction.io.nwb`'s
readers fill in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..traces import Traces
from .behaviour import BehaviourTable

CONTAINER_FIELDS = ("roi_response_series", "time_series", "spatial_series", "plane_segmentations", "images")


@dataclass
class NwbSession:
    path: Path
    name: str
    imaging_times: np.ndarray | None
    traces: list[Traces]
    raw: object | None  # RawStack of the TwoPhotonSeries, lazy
    stimulus_frames: np.ndarray | None  # (T, H, W) float32 0..255 at the requested size
    stimulus_times: np.ndarray | None
    trials: object | None  # align.TrialTable
    behaviour: list[BehaviourTable] = field(default_factory=list)
    plane_offsets: list[float] = field(default_factory=list)
    used: dict[str, str] = field(default_factory=dict)  # role -> NWB object path
    notes: list[str] = field(default_factory=list)


def open_nwb(path: Path):
    from pynwb import NWBHDF5IO

    if not path.is_file():
        raise InputError("NWB file not found", path)
    try:
        io = NWBHDF5IO(str(path), "r")
        return io, io.read()
    except Exception as exc:  # h5py/hdmf raise many kinds for a file that is not NWB
        raise InputError(f"not a readable NWB file ({type(exc).__name__}: {exc})", path) from None


def nwb_objects(nwb) -> list[tuple[str, object]]:
    """Every data object in the file as ``(path, object)``, containers' children included."""
    roots = [("acquisition", nwb.acquisition), ("stimulus/presentation", nwb.stimulus),
             ("stimulus/templates", nwb.stimulus_template), ("intervals", nwb.intervals or {})]
    roots += [(f"processing/{name}", module.data_interfaces) for name, module in nwb.processing.items()]
    found = []
    for prefix, group in roots:
        for name, obj in group.items():
            found.append((f"{prefix}/{name}", obj))
            for attr in CONTAINER_FIELDS:
                children = getattr(obj, attr, None)
                if hasattr(children, "items"):
                    found += [(f"{prefix}/{name}/{child}", item) for child, item in children.items()]
    return found


def describe_nwb(path) -> str:
    """A listing of what an NWB file holds: one line per object, with its type and shape."""
    io, nwb = open_nwb(Path(path))
    try:
        lines = []
        for where, obj in nwb_objects(nwb):
            data = getattr(obj, "data", None)
            shape = f" {tuple(data.shape)}" if hasattr(data, "shape") else ""
            lines.append(f"{where}: {type(obj).__name__}{shape}")
        return "\n".join(lines)
    finally:
        io.close()


def objects_listing(objects, kinds) -> str:
    return "; ".join(f"{p} ({type(o).__name__})" for p, o in objects if type(o).__name__ in kinds) or "none"


def pick_objects(objects, kinds: tuple[str, ...], name: str | None, what: str, option: str, path: Path, prefer=None):
    """The objects of ``kinds`` called ``name`` (or the only / the only preferred one)."""
    candidates = [(p, o) for p, o in objects if type(o).__name__ in kinds]
    if name is not None:
        chosen = [(p, o) for p, o in candidates if o.name == name or p == name or p.endswith("/" + name)]
        if not chosen:
            raise InputError(f"no {what} called {name!r}; the file has: {objects_listing(objects, kinds)}", path)
        return chosen
    # several of one name (one per plane) are taken together
    for group in (candidates, [(p, o) for p, o in candidates if prefer is not None and prefer(o)]):
        if group and len({o.name for _, o in group}) == 1:
            return group
    if not candidates:
        return candidates
    raise InputError(f"more than one {what}; choose one with {option}: {objects_listing(objects, kinds)}", path)


def series_times(series) -> np.ndarray:
    return np.asarray(series.get_timestamps(), dtype=np.float64)


def series_values(series) -> np.ndarray:
    return np.asarray(series.get_data_in_units(), dtype=np.float64)
