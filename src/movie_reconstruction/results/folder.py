"""The results folder as a place: created, opened and locked for writing, with its paths, ensemble
members and ROI map; :class:`ResultsFolder` gathers the provenance, trial and summary files too."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import _atomic
from .._lock import LOCK_FILE, folder_lock
from ..errors import InputError, OutputError, check_writable
from .layout import (
    EXTRACTION,
    MASK,
    METRICS_JSON,
    MODELS,
    PROVENANCE,
    RECORDING,
    REPORT,
    ROIS,
    SESSION,
)
from .provenance import ProvenanceFile
from .summaries import SummaryFiles
from .trials import TrialFiles


class ResultsFolder(ProvenanceFile, TrialFiles, SummaryFiles):
    """A results folder being written (or read). Create with :meth:`create`, open with :meth:`open`.

    Its files are handled by the classes it is made of: :class:`ProvenanceFile` (``provenance.json``),
    :class:`TrialFiles` (``reconstructions/``) and :class:`SummaryFiles` (metrics and controls).
    """

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
    from ..model.checkpoint import verify_checkpoint

    try:
        verify_checkpoint(folder)
    except InputError as exc:
        where = exc.path.name if exc.path is not None else folder.name
        return f"{where}: {exc.problem}"
    return None


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (what creating it would create)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path
