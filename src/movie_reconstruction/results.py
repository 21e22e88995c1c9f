"""The results folder: everything one run produced, written so that it can be reopened
without recomputing anything (by ``movie-recon report``, ``movie-recon info`` and the napari
reader).

Layout::

    provenance.json                 inputs with SHA-256 hashes, versions, seeds, settings,
                                    device and per-stage timings (seconds summed over runs,
                                    updated after every stage)
    session/                        the simulated session (demo runs only)
    extraction/suite2p/             suite2p's output (extract stage)
    rois.npz                        per plane: mean image and ROI label image (plane{p}_mean,
                                    plane{p}_labels), for the ROI map
    recording/                      the aligned recording, Sensorium 2023 layout (build stage)
    models/model_{k}/               encoder checkpoints (safetensors + JSON, with training history)
    mask.safetensors                the transparency mask the reconstructions used
    reconstructions/trial_{id}/     stimulus.tif and reconstruction.tif ((T, H, W) float32 grey
                                    levels, ImageJ hyperstacks), member_movies.npy and trial.json
                                    (scores, per-frame correlation, losses, settings identity)
    metrics.csv, metrics.json       one row per reconstructed trial, plus the summary
    controls.json, controls.csv     the controls table and the neuron-count curve
    report.html                     the self-contained report

Every file is written atomically (``movie_reconstruction._atomic``); a trial folder appears
complete or not at all, which is what lets a re-run resume: a trial whose ``trial.json``
exists and was made with the same models and settings is not redone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, _atomic
from ._json import jsonable
from .errors import InputError

FORMAT = "movie-reconstruction-results"
FORMAT_VERSION = 1
PROVENANCE = "provenance.json"
RECONSTRUCTIONS = "reconstructions"
MODELS = "models"
RECORDING = "recording"
EXTRACTION = "extraction"
SESSION = "session"
MASK = "mask.safetensors"
ROIS = "rois.npz"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
CONTROLS_JSON = "controls.json"
CONTROLS_CSV = "controls.csv"
CONTROL_MOVIES = "controls"
REPORT = "report.html"
TRIAL_JSON = "trial.json"


# ------------------------------------------------------------------------------------ helpers
def write_json(path: Path, data) -> None:
    _atomic.write_text(path, json.dumps(jsonable(data), indent=1, allow_nan=False))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_inputs(paths: Iterable[tuple[str, str | Path]]) -> list[dict]:
    """``[(role, path)]`` -> records with size and SHA-256 (folders: every file inside, sorted)."""
    records = []
    for role, path in paths:
        path = Path(path)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                records.append(_file_record(role, file))
        elif path.exists():
            records.append(_file_record(role, path))
        else:
            raise InputError("input not found", path)
    return records


def _file_record(role: str, path: Path) -> dict:
    return {"role": role, "path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def software_versions() -> dict[str, str]:
    versions = {"napari-movie-reconstruction": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", "scipy", "torch", "suite2p", "dask", "distributed", "tifffile", "safetensors", "matplotlib"):
        module = sys.modules.get(name)
        if module is None:
            try:
                from importlib.metadata import version

                versions[name] = version(name)
            except Exception:  # not installed
                continue
        else:
            versions[name] = str(getattr(module, "__version__", "?"))
    return versions


def identity_hash(data) -> str:
    """A short stable hash of a JSON-able description (used to tell runs with other settings apart)."""
    text = json.dumps(jsonable(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    if not path.is_file():
        raise InputError("file not found", path)
    try:
        return np.asarray(tifffile.imread(path), np.float32)
    except Exception as exc:  # tifffile raises several types for broken files
        raise InputError(f"not a readable TIFF ({exc})", path) from None


# ------------------------------------------------------------------------------------ types
@dataclass
class TrialResult:
    """One reconstructed trial, as stored in ``reconstructions/trial_{id}/``."""

    trial_id: int
    tier: str
    stimulus: np.ndarray  # (T, H, W) float32 0..255
    reconstruction: np.ndarray  # (T, H, W) float32 0..255 (ensemble mean, blurred)
    correlation: float  # masked correlation, first frames dropped (paper convention)
    ssim: float
    frame_correlation: np.ndarray  # (T,), NaN for the dropped frames
    population_activity: np.ndarray  # (T,) mean recorded response over neurons
    members: int
    info: dict = field(default_factory=dict)  # losses, iterations, timings, identity
    path: Path | None = None

    @property
    def n_frames(self) -> int:
        return int(self.stimulus.shape[0])


@dataclass
class Results:
    """Everything a results folder holds, loaded without recomputation."""

    path: Path
    provenance: dict
    trials: list[TrialResult]
    metrics: dict
    controls: dict | None
    training: list[dict]  # per model: checkpoint path, best epoch, validation correlation, history
    mask: np.ndarray | None
    rois: dict[int, dict[str, np.ndarray]]  # plane -> {"mean_image", "labels"}
    checkpoints: list[Path]
    report: Path | None

    def trial(self, trial_id: int) -> TrialResult:
        for t in self.trials:
            if t.trial_id == int(trial_id):
                return t
        raise KeyError(f"trial {trial_id} is not in {self.path}")


# ------------------------------------------------------------------------------------ the folder
class ResultsFolder:
    """A results folder being written (or read). Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ---------------------------------------------------------------- opening
    @classmethod
    def create(cls, path: str | Path, *, command: Sequence[str] | None = None) -> ResultsFolder:
        """Open ``path`` for writing: a new folder, or an existing results folder (to resume).

        An existing folder that is not empty and holds no ``provenance.json`` of ours is refused,
        so a typo cannot write results into someone's data folder.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError("results path exists and is not a folder", path)
        folder = cls(path)
        if path.exists() and any(path.iterdir()) and not (path / PROVENANCE).exists():
            raise InputError("folder is not empty and is not a results folder; choose a new or empty folder", path)
        path.mkdir(parents=True, exist_ok=True)
        if not (path / PROVENANCE).exists():
            now = _now()
            write_json(
                path / PROVENANCE,
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "created": now,
                    "updated": now,
                    "versions": software_versions(),
                    "command": list(command) if command is not None else None,
                    "inputs": [],
                    "seeds": {},
                    "settings": {},
                    "device": None,
                    "timings_s": {},
                    "stages": {},
                },
            )
        else:
            folder.provenance()  # checks the format
        return folder

    @classmethod
    def open(cls, path: str | Path) -> ResultsFolder:
        path = Path(path)
        if not path.exists():
            raise InputError("results folder not found", path)
        if not (path / PROVENANCE).is_file():
            raise InputError(f"not a results folder ({PROVENANCE} is missing)", path)
        folder = cls(path)
        folder.provenance()
        return folder

    # ---------------------------------------------------------------- provenance
    def provenance(self) -> dict:
        data = read_json(self.path / PROVENANCE)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a results provenance file (format is not {FORMAT!r})", self.path / PROVENANCE)
        return data

    def record(
        self,
        stage: str,
        *,
        seconds: float | None = None,
        settings: dict | None = None,
        seeds: dict | None = None,
        inputs: list[dict] | None = None,
        device: str | None = None,
        **extra,
    ) -> None:
        """Merge what a stage did into ``provenance.json`` (atomically)."""
        data = self.provenance()
        data["updated"] = _now()
        data["versions"] = software_versions()
        if seconds is not None:  # summed over runs: a resumed stage adds the time it spent
            data["timings_s"][stage] = round(float(data["timings_s"].get(stage, 0.0)) + float(seconds), 3)
        if settings is not None:
            data["settings"][stage] = settings
        if seeds:
            data["seeds"].update(seeds)
        if inputs:
            known = {(r["role"], r["path"]) for r in data["inputs"]}
            data["inputs"] += [r for r in inputs if (r["role"], r["path"]) not in known]
        if device is not None:
            data["device"] = device
        data["stages"][stage] = {"finished": _now(), **extra}
        write_json(self.path / PROVENANCE, data)

    # ---------------------------------------------------------------- places
    @property
    def session_dir(self) -> Path:
        return self.path / SESSION

    @property
    def extraction_dir(self) -> Path:
        return self.path / EXTRACTION

    @property
    def recording_dir(self) -> Path:
        return self.path / RECORDING

    @property
    def models_dir(self) -> Path:
        return self.path / MODELS

    @property
    def mask_path(self) -> Path:
        return self.path / MASK

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    def model_dir(self, k: int) -> Path:
        return self.models_dir / f"model_{k}"

    def checkpoints(self) -> list[Path]:
        if not self.models_dir.is_dir():
            return []
        found = [p for p in self.models_dir.iterdir() if p.is_dir() and p.name.startswith("model_") and (p / "config.json").is_file()]
        return sorted(found, key=lambda p: int(p.name.split("_")[1]) if p.name.split("_")[1].isdigit() else 1 << 30)

    def trial_dir(self, trial_id: int) -> Path:
        return self.path / RECONSTRUCTIONS / f"trial_{int(trial_id):04d}"

    # ---------------------------------------------------------------- ROIs
    def write_rois(self, planes: Sequence) -> None:
        """Mean image and ROI labels of each plane (from :class:`~movie_reconstruction.traces.Traces`)."""
        arrays = {}
        for traces in planes:
            arrays[f"plane{traces.plane}_mean"] = np.asarray(traces.mean_image, np.float32)
            arrays[f"plane{traces.plane}_labels"] = traces.labels()
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        _atomic.write_bytes(self.path / ROIS, buffer.getvalue())

    def read_rois(self) -> dict[int, dict[str, np.ndarray]]:
        path = self.path / ROIS
        if not path.is_file():
            return {}
        out: dict[int, dict[str, np.ndarray]] = {}
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                plane, kind = key.split("_", 1)
                out.setdefault(int(plane[5:]), {})["mean_image" if kind == "mean" else "labels"] = data[key]
        return out

    # ---------------------------------------------------------------- trials
    def finished_trials(self, identity: str | None = None) -> dict[int, dict]:
        """``{trial_id: trial.json}`` of the finished trials (made with ``identity``, when given)."""
        root = self.path / RECONSTRUCTIONS
        out = {}
        if not root.is_dir():
            return out
        for folder in sorted(root.glob("trial_*")):
            meta_path = folder / TRIAL_JSON
            if not meta_path.is_file():
                continue
            meta = read_json(meta_path)
            if identity is None or meta.get("identity") == identity:
                out[int(meta["trial_id"])] = meta
        return out

    def write_trial(
        self,
        *,
        trial_id: int,
        tier: str,
        stimulus: np.ndarray,
        reconstruction: np.ndarray,
        member_movies: np.ndarray,
        correlation: float,
        ssim: float,
        frame_correlation: np.ndarray,
        population_activity: np.ndarray,
        identity: str,
        info: dict,
    ) -> Path:
        """Write one finished trial (all files at once: the folder appears complete or not at all)."""
        import tifffile

        target = self.trial_dir(trial_id)
        meta = {
            "trial_id": int(trial_id),
            "tier": str(tier),
            "correlation": float(correlation),
            "ssim": float(ssim),
            "members": int(member_movies.shape[0]),
            "frames": int(stimulus.shape[0]),
            "frame_correlation": [None if not np.isfinite(v) else float(v) for v in frame_correlation],
            "population_activity": [float(v) for v in population_activity],
            "identity": identity,
            "written": _now(),
            **info,
        }
        with _atomic.atomic_path(target) as tmp:
            tmp.mkdir()
            for name, movie, what in (
                ("stimulus.tif", stimulus, f"trial {trial_id} stimulus"),
                ("reconstruction.tif", reconstruction, f"trial {trial_id} reconstruction"),
            ):
                tifffile.imwrite(
                    tmp / name, np.ascontiguousarray(movie, np.float32), imagej=True,
                    metadata={"axes": "TYX", "Info": what}, photometric="minisblack",
                )
            np.save(tmp / "member_movies.npy", np.asarray(member_movies, np.float32))
            (tmp / TRIAL_JSON).write_text(json.dumps(jsonable(meta), indent=1, allow_nan=False))
        return target

    def read_trial(self, trial_id: int) -> TrialResult:
        folder = self.trial_dir(trial_id)
        meta = read_json(folder / TRIAL_JSON)
        return _trial_from(folder, meta)

    def write_metrics(self, rows: list[dict], summary: dict) -> None:
        columns = list(rows[0]) if rows else ["trial_id"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
        _atomic.write_text(self.path / METRICS_CSV, buffer.getvalue())
        write_json(self.path / METRICS_JSON, {"summary": summary, "trials": rows})

    def write_controls(self, table: dict) -> None:
        """``table``: ``{"rows": [...], "neuron_curve": [...], "identity": ..., ...}``."""
        write_json(self.path / CONTROLS_JSON, table)
        rows = table.get("rows", [])
        if rows:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_value(v) for k, v in row.items()})
            _atomic.write_text(self.path / CONTROLS_CSV, buffer.getvalue())

    def read_controls(self) -> dict | None:
        path = self.path / CONTROLS_JSON
        return read_json(path) if path.is_file() else None

    def control_movie_path(self, control: str, trial_id: int) -> Path:
        return self.path / CONTROL_MOVIES / control.replace(" ", "-") / f"trial_{int(trial_id)}.npy"

    def write_control_movie(self, control: str, trial_id: int, movie) -> None:
        """A control's reconstruction of one trial, kept so that ``evaluate`` can test it against the real one."""
        _atomic.save_npy(self.control_movie_path(control, trial_id), np.asarray(movie, np.float32))

    def read_control_movie(self, control: str, trial_id: int) -> np.ndarray | None:
        path = self.control_movie_path(control, trial_id)
        return np.load(path) if path.is_file() else None

    # ---------------------------------------------------------------- summary
    def summary_lines(self) -> list[str]:
        """What the folder holds, for ``movie-recon info``."""
        prov = self.provenance()
        lines = [f"results folder {self.path}"]
        lines.append(f"  created {prov.get('created')} with napari-movie-reconstruction {prov['versions'].get('napari-movie-reconstruction')}")
        if prov.get("device"):
            lines.append(f"  device: {prov['device']}")
        stages = prov.get("stages", {})
        timings = prov.get("timings_s", {})
        if stages:
            lines.append("  stages: " + ", ".join(f"{s} ({timings[s]:.0f} s)" if s in timings else s for s in stages))
        checkpoints = self.checkpoints()
        if checkpoints:
            lines.append(f"  models: {len(checkpoints)} ({', '.join(p.name for p in checkpoints)})")
        finished = self.finished_trials()
        if finished:
            corr = [m["correlation"] for m in finished.values()]
            lines.append(
                f"  reconstructions: {len(finished)} trial(s), masked correlation mean {np.mean(corr):.3f} "
                f"(range {min(corr):.3f}..{max(corr):.3f})"
            )
        controls = self.read_controls()
        if controls:
            verdict = controls.get("overall") or ("beaten" if controls.get("beats_controls") else "NOT all beaten")
            lines.append(f"  controls: {len(controls.get('rows', [])) - 1} ({verdict})")
        if self.report_path.is_file():
            lines.append(f"  report: {self.report_path}")
        return lines


def _trial_from(folder: Path, meta: dict) -> TrialResult:
    frame_corr = np.array([np.nan if v is None else v for v in meta.get("frame_correlation", [])], np.float64)
    info = {k: v for k, v in meta.items() if k not in {"frame_correlation", "population_activity"}}
    return TrialResult(
        trial_id=int(meta["trial_id"]),
        tier=str(meta.get("tier", "test")),
        stimulus=_read_tiff(folder / "stimulus.tif"),
        reconstruction=_read_tiff(folder / "reconstruction.tif"),
        correlation=float(meta["correlation"]),
        ssim=float(meta["ssim"]) if meta.get("ssim") is not None else float("nan"),
        frame_correlation=frame_corr,
        population_activity=np.asarray(meta.get("population_activity", []), np.float64),
        members=int(meta.get("members", 1)),
        info=info,
        path=folder,
    )


def _csv_value(value):
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------------ reading
def load_results(path: str | Path) -> Results:
    """Everything in a results folder, without recomputation (for reports, ``info`` and napari)."""
    folder = ResultsFolder.open(path)
    trials = [_trial_from(folder.trial_dir(tid), meta) for tid, meta in sorted(folder.finished_trials().items())]
    metrics_path = folder.path / METRICS_JSON
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    training = []
    for checkpoint in folder.checkpoints():
        config = read_json(checkpoint / "config.json")
        tm = config.get("training_metrics") or {}
        training.append(
            {
                "checkpoint": checkpoint,
                "best_epoch": tm.get("best_epoch"),
                "best_val_corr": tm.get("best_val_corr"),
                "stopped_because": tm.get("stopped_because"),
                "seconds": tm.get("seconds"),
                "seed": (tm.get("training") or {}).get("seed"),
                "history": tm.get("history", []),
            }
        )
    mask = None
    if folder.mask_path.is_file():
        from safetensors.numpy import load_file

        mask = np.asarray(load_file(str(folder.mask_path))["alpha"], np.float32)
    return Results(
        path=folder.path,
        provenance=folder.provenance(),
        trials=trials,
        metrics=metrics,
        controls=folder.read_controls(),
        training=training,
        mask=mask,
        rois=folder.read_rois(),
        checkpoints=folder.checkpoints(),
        report=folder.report_path if folder.report_path.is_file() else None,
    )
