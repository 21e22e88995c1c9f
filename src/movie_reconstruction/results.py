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
    metrics.csv, metrics.json       one row per reconstructed trial, plus the summary and the
                                    hashes of the trial.json files they came from ("sources")
    controls.json, controls.csv     the controls table and the neuron-count curve, with their
                                    sources; "stale" lists trials reconstructed again since
    report.html                     the self-contained report
    .lock                           while a run writes here: its pid, host, start and command
                                    (movie_reconstruction._lock)

Every file is written atomically (``movie_reconstruction._atomic``); a trial folder appears
complete or not at all, which is what lets a re-run resume: a trial whose ``trial.json``
exists and was made with the same models and settings is not redone. Summaries are derived
from the trial files and checked against them by every reader, so an interruption between a
trial and its summary never shows a score that disagrees with the trial.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, _atomic
from ._json import jsonable
from ._lock import LOCK_FILE, folder_lock
from .errors import InputError, OutputError, check_writable

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
    # what a reader must be told: members left out (they cannot be loaded), stale controls
    warnings: list[str] = field(default_factory=list)

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
        so a typo cannot write results into someone's data folder. A place that cannot be
        written raises :class:`~movie_reconstruction.errors.OutputError`. Runs go through
        :meth:`writing`, which also takes the folder's lock.
        """
        folder = cls._prepare(path)
        folder._start_provenance(command)
        return folder

    @classmethod
    @contextlib.contextmanager
    def writing(cls, path: str | Path, *, command: Sequence[str] | None = None, create: bool = True
                ) -> Iterator[ResultsFolder]:
        """The folder of a run that writes: created (``create``) or opened, locked against other
        writers for the ``with`` block (see :mod:`movie_reconstruction._lock`), with its summaries
        brought in line with the trials on disk first (a crashed run may have left them behind).

        A folder this run created is removed again, while it holds the lock, when the run fails
        before writing anything but its provenance (a run refused by the lock removes nothing).
        """
        path = Path(path)
        if not create:
            cls.open(path)
        check_writable(path)  # before any work: a read-only place fails now, not after the computing
        created = _first_missing(path)
        folder = cls._prepare(path) if create else cls(path)
        with folder.lock(command):
            try:
                if create:
                    folder._start_provenance(command)
                folder.refresh_summaries()
                yield folder
            except BaseException:
                if created is not None:
                    folder._remove_if_unused(created)
                raise

    def lock(self, command: Sequence[str] | None = None):
        """A ``with`` block holding this folder's writer lock (re-entrant in the holding thread)."""
        return folder_lock(self.path, command)

    @classmethod
    def _prepare(cls, path: str | Path) -> ResultsFolder:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise OutputError("results path exists and is not a folder", path)
        if path.exists() and any(p.name != LOCK_FILE for p in path.iterdir()) and not (path / PROVENANCE).exists():
            raise InputError("folder is not empty and is not a results folder; choose a new or empty folder", path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError.from_os_error(exc, path) from None
        return cls(path)

    def _start_provenance(self, command: Sequence[str] | None) -> None:
        if (self.path / PROVENANCE).exists():
            self.provenance()  # checks the format
            return
        now = _now()
        try:
            write_json(
                self.path / PROVENANCE,
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
        except OSError as exc:
            raise OutputError.from_os_error(exc, self.path) from None

    def _remove_if_unused(self, created: Path) -> None:
        """Remove this folder (and the empty folders above it up to ``created``) when it holds
        nothing but its provenance: a run that failed before producing anything."""
        leftovers = {p.name for p in self.path.iterdir()} if self.path.is_dir() else set()
        if not leftovers <= {PROVENANCE, LOCK_FILE}:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        here, created = self.path.absolute(), created.absolute()
        while here != created:
            here = here.parent
            try:
                here.rmdir()  # only while empty
            except OSError:
                break

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
        """The ensemble's checkpoint folders, in member order.

        A ``models/model_*`` entry that is not a checkpoint folder (a stray file, a link to some
        other folder, one without ``config.json``) raises :class:`InputError` naming it: a member
        is never left out of an ensemble silently. Readers that can go on without it use
        :meth:`members`.
        """
        members, problems = self.members()
        if problems:
            path, problem = next(iter(problems.items()))
            raise InputError(f"ensemble member cannot be used ({problem}); remove it, or re-run "
                             "`movie-recon train --overwrite`", path)
        return members

    def members(self, *, verify: bool = False) -> tuple[list[Path], dict[Path, str]]:
        """``(usable checkpoint folders, {model_* entry: why it cannot be used})``. With ``verify``,
        each checkpoint's files are also checked against their hashes (as reconstruction does)."""
        if not self.models_dir.is_dir():
            return [], {}
        entries = sorted((p for p in self.models_dir.iterdir() if p.name.startswith("model_")),
                         key=lambda p: int(p.name.split("_")[1]) if p.name.split("_")[1].isdigit() else 1 << 30)
        usable, problems = [], {}
        for entry in entries:
            if not entry.is_dir():
                problems[entry] = "not a folder" if entry.exists() else "a broken link"
            elif not (entry / "config.json").is_file():
                problems[entry] = "not an encoder checkpoint: config.json is missing" + \
                    (f" in {entry.resolve()}, where it links" if entry.is_symlink() else "")
            else:
                problem = _checkpoint_problem(entry) if verify else None
                if problem:
                    problems[entry] = problem
                else:
                    usable.append(entry)
        return usable, problems

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
        return {tid: meta for tid, (meta, _) in self._scan_trials().items()
                if identity is None or meta.get("identity") == identity}

    def trial_sources(self) -> dict[int, str]:
        """``{trial_id: hash of its trial.json}``: which reconstructions are on disk now. Summaries
        carry the sources they were computed from, so that a stale one can be told apart."""
        return {tid: digest for tid, (_, digest) in self._scan_trials().items()}

    def _scan_trials(self) -> dict[int, tuple[dict, str]]:
        root = self.path / RECONSTRUCTIONS
        out = {}
        if not root.is_dir():
            return out
        for folder in sorted(root.glob("trial_*")):
            meta_path = folder / TRIAL_JSON
            if not meta_path.is_file():
                continue
            data = meta_path.read_bytes()
            meta = _parse_json(data, meta_path)
            out[int(meta["trial_id"])] = (meta, hashlib.sha256(data).hexdigest()[:16])
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

    def write_metrics(self, rows: list[dict], summary: dict, sources: dict[int, str] | None = None) -> None:
        """``metrics.csv`` and ``metrics.json``; ``sources`` (:meth:`trial_sources`) names the
        trial files the rows were computed from (readers use it to spot a stale file)."""
        columns = list(rows[0]) if rows else ["trial_id"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
        data = {"summary": summary, "trials": rows}
        if sources is not None:
            data["sources"] = {str(k): v for k, v in sorted(sources.items())}
        write_json(self.path / METRICS_JSON, data)  # first: the JSON is what readers check
        _atomic.write_text(self.path / METRICS_CSV, buffer.getvalue())

    def write_controls(self, table: dict) -> None:
        """``table``: ``{"rows": [...], "neuron_curve": [...], "sources": {trial_id: hash}, ...}``."""
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
        """The controls table; ``"stale"`` lists the trials whose reconstruction changed (or went)
        since the controls were computed from it (absent when they are current)."""
        path = self.path / CONTROLS_JSON
        if not path.is_file():
            return None
        controls = read_json(path)
        changed = _changed_sources(controls.get("sources"), self.trial_sources())
        if changed:
            controls["stale"] = changed
        return controls

    def read_metrics(self) -> dict:
        """``metrics.json`` when it matches the trials on disk; otherwise the metrics derived from
        the trial files now (with ``"stale_file": True``: the file on disk is behind)."""
        path = self.path / METRICS_JSON
        stored = read_json(path) if path.is_file() else None
        sources = self.trial_sources()
        recorded = {str(k): v for k, v in sorted(sources.items())}
        finished = self.finished_trials()
        if stored is not None and (stored.get("sources") == recorded if "sources" in stored
                                   else _rows_match(stored.get("trials"), finished)):
            return stored
        if stored is None and not sources:
            return {}
        rows, summary = metrics_from_trials(finished)
        return {"summary": summary, "trials": rows, "sources": recorded, "stale_file": True}

    def refresh_summaries(self) -> None:
        """Bring ``metrics.json`` and ``controls.json`` in line with the trials on disk: the
        metrics are recomputed from the trial files, and controls computed from reconstructions
        that have changed since are marked stale (``controls.csv`` is removed: it cannot say so).
        Writers call this when they take the lock and after every trial they write."""
        metrics = self.read_metrics()
        if metrics.get("stale_file"):
            self.write_metrics(metrics["trials"], metrics["summary"], {int(k): v for k, v in metrics["sources"].items()})
        path = self.path / CONTROLS_JSON
        if path.is_file():
            stored = read_json(path)
            controls = self.read_controls()
            if controls.get("stale") and controls["stale"] != stored.get("stale"):
                controls["stale_reason"] = ("the reconstructions of these trials changed (or were removed) after the "
                                            "controls were computed; re-run the controls")
                write_json(path, controls)
                (self.path / CONTROLS_CSV).unlink(missing_ok=True)

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
        checkpoints, problems = self.members(verify=True)
        if checkpoints or problems:
            lines.append(f"  models: {len(checkpoints)} ({', '.join(p.name for p in checkpoints)})")
        for path, problem in problems.items():
            lines.append(f"  PROBLEM: {path.name} cannot be used: {problem}")
        finished = self.finished_trials()
        if finished:
            corr = [m["correlation"] for m in finished.values()]
            lines.append(
                f"  reconstructions: {len(finished)} trial(s), masked correlation mean {np.mean(corr):.3f} "
                f"(range {min(corr):.3f}..{max(corr):.3f})"
            )
            settings = len({m.get("identity") for m in finished.values()})
            if settings > 1:
                lines.append(f"  NOTE: the trials were reconstructed with {settings} different models/settings")
        if self.read_metrics().get("stale_file"):
            lines.append(f"  NOTE: {METRICS_JSON} is behind the trials on disk (an interrupted run); "
                         "the next command that writes here refreshes it")
        controls = self.read_controls()
        if controls:
            verdict = controls.get("overall") or ("beaten" if controls.get("beats_controls") else "NOT all beaten")
            lines.append(f"  controls: {len(controls.get('rows', [])) - 1} ({verdict})")
            if controls.get("stale"):
                lines.append(f"  STALE: the controls were computed from earlier reconstructions of trial(s) "
                             f"{controls['stale']}; re-run `movie-recon reconstruct` with controls")
        if self.report_path.is_file():
            lines.append(f"  report: {self.report_path}")
        return lines


def _checkpoint_problem(folder: Path) -> str | None:
    from .model.checkpoint import verify_checkpoint

    try:
        verify_checkpoint(folder)
    except InputError as exc:
        where = exc.path.name if exc.path is not None else folder.name
        return f"{where}: {exc.problem}"
    return None


def metrics_from_trials(finished: dict[int, dict]) -> tuple[list[dict], dict]:
    """Rows and summary of ``metrics.json`` from the trials' own ``trial.json`` files."""
    rows = [
        {"trial_id": tid, "tier": meta.get("tier"), "correlation": meta["correlation"], "ssim": meta.get("ssim"),
         "members": meta.get("members"), "frames": meta.get("frames"), "iterations": max(meta.get("iterations", [0]) or [0]),
         **{k: (meta.get("artifacts") or {}).get(k) for k in ("artifact_index", "nyquist_share", "stimulus_nyquist_share")}}
        for tid, meta in sorted(finished.items())
    ]
    corr = [r["correlation"] for r in rows]
    ssim = [r["ssim"] for r in rows if r["ssim"] is not None]
    summary = {
        "trials": len(rows),
        "mean_correlation": float(np.mean(corr)) if corr else None,
        "median_correlation": float(np.median(corr)) if corr else None,
        "mean_ssim": float(np.mean(ssim)) if ssim else None,
        "settings": len({meta.get("identity") for meta in finished.values()}),
        "convention": "Pearson r over pixels with alpha >= 1 x frames, first 30 frames dropped (Bauer et al. 2025)",
    }
    return rows, summary


def _rows_match(rows, finished: dict[int, dict]) -> bool:
    """For a metrics file without sources (older versions): whether its rows are the trials on disk."""
    try:
        stored = {int(r["trial_id"]): float(r["correlation"]) for r in rows or []}
    except (KeyError, TypeError, ValueError):
        return False
    return stored.keys() == finished.keys() and all(
        math.isclose(stored[t], float(meta["correlation"]), rel_tol=1e-9) for t, meta in finished.items())


def _changed_sources(recorded: dict | None, current: dict[int, str]) -> list[int]:
    """Trials whose file differs from (or is missing against) what a summary was computed from.
    A summary without sources (written by an older version) cannot be checked: nothing is reported."""
    if recorded is None:
        return []
    recorded = {int(k): v for k, v in recorded.items()}
    changed = {tid for tid, digest in recorded.items() if current.get(tid) != digest}
    return sorted(changed)


def _parse_json(data: bytes, path: Path):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None


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


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (what creating it would create)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


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
    metrics = folder.read_metrics()  # derived from the trial files when metrics.json is behind them
    checkpoints, problems = folder.members()
    warnings = [f"{MODELS}/{path.name} was left out: {problem}" for path, problem in problems.items()]
    controls = folder.read_controls()
    if controls and controls.get("stale"):
        warnings.append(f"the controls were computed from earlier reconstructions of trial(s) {controls['stale']}; "
                        "re-run them before trusting them")
    training = []
    for checkpoint in checkpoints:
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
        controls=controls,
        training=training,
        mask=mask,
        rois=folder.read_rois(),
        checkpoints=checkpoints,
        report=folder.report_path if folder.report_path.is_file() else None,
        warnings=warnings,
    )
