"""The output folders of an extraction: the run marker that says what produced a folder and which
stages are finished, and the move of a finished run from its staging folder into place."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .. import _atomic
from .._json import jsonable
from ..io.safe_npy import load_record
from .stack import InputStack

RUN_MARKER = "movie_recon_run.json"
FINAL_FOLDER = "suite2p"
STAGING_FOLDER = ".suite2p.partial"
MARKER_VERSION = 1


def run_identity(stack: InputStack, settings: dict, nplanes: int, nchannels: int, functional_channel: int) -> dict:
    compared = copy.deepcopy(settings)
    compared.pop("torch_device", None)  # the same run on another device is the same run
    return {
        "input": stack.fingerprint,
        "settings": jsonable(compared),
        "layout": {"nplanes": nplanes, "nchannels": nchannels, "functional_channel": functional_channel},
    }


def read_marker(folder: Path) -> dict | None:
    path = folder / RUN_MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_marker(folder: Path, identity: dict, stages: dict, complete: bool) -> None:
    marker = {"version": MARKER_VERSION, "identity": identity, "stages": stages, "complete": complete}
    _atomic.write_text(folder / RUN_MARKER, json.dumps(marker, indent=1))


def same_identity(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def describe_stages(stages: dict) -> str:
    done = ["conversion"] if stages.get("conversion") else []
    for plane, plane_stages in sorted(stages.get("planes", {}).items()):
        done += [f"{plane} {s}" for s in plane_stages]
    return ", ".join(done) or "nothing"


_PATH_KEYS = ("save_path0", "save_path", "fast_disk", "settings_path", "db_path", "reg_file", "reg_file_chan2")


def relocate_paths(folder: Path, staging: Path, final: Path) -> None:
    """Point the paths suite2p stored in db.npy/ops.npy at the folder's final place."""
    old_root, new_root = str(staging), str(final)
    for name in ("db.npy", "ops.npy"):
        path = folder / name
        if not path.is_file():
            continue
        record = load_record(path)
        for key in _PATH_KEYS:
            value = record.get(key)
            if isinstance(value, str) and value.startswith(old_root):
                record[key] = new_root + value[len(old_root):]
        if isinstance(record.get("save_path0"), str) and record["save_path0"] == str(staging.parent):
            record["save_path0"] = str(final.parent)
        record["save_folder"] = final.name
        np.save(path, record)


def publish(staging: Path, final: Path, staging_root: Path) -> None:
    """Move the finished run into place with renames, replacing an older one only now."""
    if final.exists():
        retired = staging_root / "replaced"
        os.replace(final, retired)
    os.replace(staging, final)
    shutil.rmtree(staging_root, ignore_errors=True)
