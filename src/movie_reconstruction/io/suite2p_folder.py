"""Load an existing suite2p output folder (suite2p GUI, an earlier run, or ``extract_traces``) as ``list[Traces]``.

suite2p writes, per plane folder: ``F.npy``, ``Fneu.npy``, ``spks.npy`` (ROIs x frames),
``stat.npy`` (one dict per ROI: ``ypix``, ``xpix``, ``lam``, ...), ``iscell.npy`` (ROIs x 2: the
cell decision and the classifier probability) and its settings. 0.x writes everything into
``ops.npy``; 1.x splits it into ``settings.npy`` (nested), ``db.npy`` (paths, frame counts,
plane index), ``reg_outputs.npy`` (mean image, shifts) and ``detect_outputs.npy`` (max
projection, correlation map), and still writes ``ops.npy`` unless ``io.save_ops_orig`` is off.

``stat.npy`` and the settings files are pickled object arrays; they are read with
:func:`~movie_reconstruction.io.safe_npy.load_objects`, which rebuilds arrays and plain values
only, so a crafted folder cannot run code. The trace and ``iscell`` arrays must be plain arrays.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..traces import RoiMask, Traces
from .safe_npy import load_array, load_objects

REQUIRED = ("F.npy", "Fneu.npy", "spks.npy", "stat.npy", "iscell.npy")
PLAIN_ARRAYS = ("F.npy", "Fneu.npy", "spks.npy", "iscell.npy")  # numbers only: never unpickled


def find_plane_folders(path: str | Path) -> list[Path]:
    """The plane folders of a suite2p output: ``path`` itself, ``path/plane*``, or ``path/suite2p/plane*``."""
    path = Path(path)
    if not path.exists():
        raise InputError("folder not found", path)
    if not path.is_dir():
        raise InputError("not a folder (expected a suite2p output folder)", path)
    if _looks_like_plane(path):
        return [path]
    for root in (path, path / "suite2p"):
        if root.is_dir():
            planes = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"plane\d+", p.name)]
            if planes:
                return sorted(planes, key=lambda p: int(p.name[5:]))
    raise InputError("no suite2p output here (expected stat.npy and F.npy, or plane0/, plane1/, ... folders)", path)


def _looks_like_plane(path: Path) -> bool:
    return (path / "stat.npy").exists() or (path / "F.npy").exists()


def read_suite2p_folder(path: str | Path, cell_threshold: float | None = 0.5) -> list[Traces]:
    """One :class:`Traces` per plane of a suite2p output folder.

    ``cell_threshold``: ROIs whose classifier probability (``iscell[:, 1]``) is at least this
    are kept; ``None`` keeps suite2p's (or the curator's, if edited in the GUI) ``iscell[:, 0]``.
    Folders without a ``plane*`` name (a single plane folder) count as plane 0.
    """
    planes = find_plane_folders(path)
    return [read_plane_folder(folder, cell_threshold=cell_threshold, default_plane=i) for i, folder in enumerate(planes)]


def _load(folder: Path, name: str, required: bool = True):
    file = folder / name
    if not file.is_file():
        if required:
            raise InputError(f"missing {name} (suite2p output incomplete?)", folder)
        return None
    value = load_array(file) if name in PLAIN_ARRAYS else load_objects(file)
    if value.dtype == object and value.ndim == 0:
        value = value.item()
    return value


def _settings_of(folder: Path) -> tuple[dict, dict]:
    """(flat record of everything suite2p saved about the plane, the settings to report)."""
    ops = _load(folder, "ops.npy", required=False)
    settings = _load(folder, "settings.npy", required=False)
    db = _load(folder, "db.npy", required=False)
    reg = _load(folder, "reg_outputs.npy", required=False)
    det = _load(folder, "detect_outputs.npy", required=False)
    record: dict = {}
    for part in (db, settings, reg, det, ops):
        if isinstance(part, dict):
            record.update(part)
    if not record:
        raise InputError("missing ops.npy (suite2p 0.x) or settings.npy/db.npy (suite2p 1.x)", folder)
    reported = settings if isinstance(settings, dict) else {
        k: v for k, v in record.items() if not isinstance(v, np.ndarray) or v.size <= 16
    }
    return record, reported


def read_plane_folder(folder: str | Path, cell_threshold: float | None = 0.5, default_plane: int = 0) -> Traces:
    """The :class:`Traces` of one suite2p plane folder."""
    folder = Path(folder)
    F = np.asarray(_load(folder, "F.npy"), dtype=np.float32)
    Fneu = np.asarray(_load(folder, "Fneu.npy"), dtype=np.float32)
    spks = np.asarray(_load(folder, "spks.npy"), dtype=np.float32)
    stat = _load(folder, "stat.npy")
    iscell = np.asarray(_load(folder, "iscell.npy"), dtype=np.float64)
    record, settings = _settings_of(folder)

    if F.ndim != 2:
        raise InputError(f"F.npy has shape {F.shape}, expected (ROIs, frames)", folder / "F.npy")
    for name, array in (("Fneu.npy", Fneu), ("spks.npy", spks)):
        if array.shape != F.shape:
            raise InputError(f"{name} has shape {array.shape} but F.npy has {F.shape}", folder / name)
    n_rois = F.shape[0]
    if len(stat) != n_rois:
        raise InputError(f"stat.npy has {len(stat)} ROIs but F.npy has {n_rois}", folder / "stat.npy")
    if iscell.ndim == 1:
        iscell = np.stack([iscell, iscell], axis=1)
    if iscell.shape != (n_rois, 2):
        raise InputError(f"iscell.npy has shape {iscell.shape}, expected ({n_rois}, 2)", folder / "iscell.npy")

    try:
        Ly, Lx = int(record["Ly"]), int(record["Lx"])
    except KeyError:
        raise InputError("the frame size (Ly, Lx) is in neither ops.npy nor db.npy", folder) from None
    fs = float(record.get("fs", np.nan))
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"no valid frame rate (fs) in the settings: {record.get('fs')!r}", folder)

    if cell_threshold is None:
        keep = iscell[:, 0] > 0.5
    else:
        keep = iscell[:, 1] >= float(cell_threshold)
    rows = np.flatnonzero(keep)
    masks = []
    for i in rows:
        roi = stat[i]
        try:
            ypix, xpix = np.asarray(roi["ypix"], dtype=np.int64), np.asarray(roi["xpix"], dtype=np.int64)
        except (KeyError, TypeError, IndexError):
            raise InputError(f"ROI {i} in stat.npy has no ypix/xpix", folder / "stat.npy") from None
        weights = np.asarray(roi.get("lam", np.ones(len(ypix))), dtype=np.float32)
        inside = (ypix >= 0) & (ypix < Ly) & (xpix >= 0) & (xpix < Lx)
        if not inside.all():
            raise InputError(f"ROI {i} in stat.npy has pixels outside the {Ly}x{Lx} frame", folder / "stat.npy")
        masks.append(RoiMask(ypix=ypix, xpix=xpix, weights=weights))

    mean_image = record.get("meanImg")
    if mean_image is None or np.shape(mean_image) != (Ly, Lx):
        raise InputError("no mean image (meanImg) of the frame size in the settings", folder)
    max_projection = _full_frame(record.get("max_proj"), record, Ly, Lx)

    nplanes = int(record.get("nplanes", 1) or 1)
    plane = record.get("iplane", None)
    if plane is None:
        match = re.fullmatch(r"plane(\d+)", folder.name)
        plane = int(match.group(1)) if match else default_plane
    plane = int(plane)
    # planes are scanned one after another within each volume: plane k starts k/nplanes of a volume late
    plane_offset = (plane % nplanes) / (fs * nplanes) if nplanes > 1 else 0.0

    return Traces(
        F=F[rows],
        Fneu=Fneu[rows],
        spks=spks[rows],
        roi_masks=masks,
        roi_index=rows.astype(np.int64),
        cell_probability=iscell[rows, 1].astype(np.float32),
        frame_shape=(Ly, Lx),
        mean_image=np.asarray(mean_image, dtype=np.float32),
        max_projection=max_projection,
        frame_rate=fs,
        settings=settings,
        plane=plane,
        plane_offset=float(plane_offset),
        cell_threshold=float(cell_threshold) if cell_threshold is not None else float("nan"),
        source=str(folder),
    )


def _full_frame(image, record: dict, Ly: int, Lx: int) -> np.ndarray | None:
    """suite2p crops the max projection to the registered range (yrange, xrange); put it back in frame."""
    if image is None:
        return None
    image = np.asarray(image, dtype=np.float32)
    if image.shape == (Ly, Lx):
        return image
    yrange, xrange = record.get("yrange"), record.get("xrange")
    if yrange is None or xrange is None:
        return None
    y0, y1 = int(yrange[0]), int(yrange[1])
    x0, x1 = int(xrange[0]), int(xrange[1])
    if image.shape != (y1 - y0, x1 - x0):
        return None
    full = np.full((Ly, Lx), float(image.min()) if image.size else 0.0, dtype=np.float32)
    full[y0:y1, x0:x1] = image
    return full
