"""The summaries derived from a results folder's trials: ``metrics.json``/``.csv`` and
``controls.json``/``.csv`` (with the hashes of the trial files they came from, so that a reader
can tell a stale one), and the controls' movies."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from .. import _atomic
from .layout import CONTROL_MOVIES, CONTROLS_CSV, CONTROLS_JSON, METRICS_CSV, METRICS_JSON, read_json, write_json


class SummaryFiles:
    """The summary files of a :class:`~movie_reconstruction.results.ResultsFolder` (mixed into it;
    it reads the trials through the folder's ``trial_sources`` and ``finished_trials``)."""

    path: Path

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


def _csv_value(value):
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value
