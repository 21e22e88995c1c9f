"""Whole runs made of the stages (:mod:`movie_reconstruction.stages`), shared by the
``movie-recon`` command line and the napari widgets.

``run_session`` chains extract -> report for a session manifest; ``run_demo`` simulates a
session first; ``reconstruct_and_judge`` is what the ``reconstruct`` command and the
Reconstruct widget both run: the reconstructions, then (with ``settings.controls``) the
controls and their statistics. Nothing here imports Qt or napari; torch and suite2p are
imported by the stages that need them. ``client`` is a ``distributed.Client`` (see
:mod:`movie_reconstruction.distributed`) or None to run in this process, where progress is
finest and reconstruction previews come through for live display.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .progress import Job, Progress
from .results import ResultsFolder
from .settings import PipelineSettings, with_changes  # noqa: F401 - with_changes re-exported for scripts
from .stages import (  # noqa: F401 - the stage API, re-exported
    ReconstructionSummary, build_stage, controls_stage, evaluate_stage, extract_stage, reconstruct_stage, report_stage,
    simulate_stage, train_stage,
)


@dataclass
class PipelineResult:
    results: Path
    report: Path | None
    reconstruction: ReconstructionSummary | None
    controls: dict | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reconstruction is None or self.reconstruction.ok


@dataclass
class Judged:
    """What ``reconstruct_and_judge`` did: the reconstructions' summary, and the controls with
    their verdicts (None when they were not run, with the reason)."""

    summary: ReconstructionSummary
    controls: dict | None
    skipped_controls: str = ""


def reconstruct_and_judge(results: ResultsFolder, settings: PipelineSettings, *, recording_path=None,
                          client=None) -> Job[Judged]:
    """Reconstruct the chosen trials; then, with ``settings.controls`` and at least two
    reconstructed trials, run the controls and judge them (evaluate)."""
    summary = yield from reconstruct_stage(results, settings, recording_path=recording_path, client=client)
    skipped = ""
    if not settings.controls:
        skipped = "controls not asked for"
    elif not summary.ok:
        skipped = "controls skipped: some reconstructions failed"
    elif len(summary.trial_ids) < 2:
        skipped = "controls skipped: they need at least two trials"
    else:
        yield from controls_stage(results, settings, recording_path=recording_path, client=client)
    if summary.correlations:
        yield from evaluate_stage(results, settings)
    if skipped:
        yield Progress("controls", 1, 1, skipped)
    return Judged(summary, None if skipped else results.read_controls(), skipped)


def run_session(
    manifest: str | Path,
    results_dir: str | Path,
    settings: PipelineSettings | None = None,
    *,
    client=None,
    command: Sequence[str] | None = None,
) -> Job[PipelineResult]:
    """Session manifest -> traces -> recording -> ensemble -> reconstructions -> controls -> report."""
    settings = settings or PipelineSettings()
    with ResultsFolder.writing(results_dir, command=command) as results:
        started = time.perf_counter()
        traces = yield from extract_stage(results, manifest, settings)
        yield from build_stage(results, manifest, traces, settings)
        return (yield from _model_to_report(results, settings, client, started))


def _model_to_report(results: ResultsFolder, settings: PipelineSettings, client, started: float) -> Job[PipelineResult]:
    yield from train_stage(results, settings, client=client)
    judged = yield from reconstruct_and_judge(results, settings, client=client)
    report = None
    if settings.report:
        report = yield from report_stage(results)
    timings = dict(results.provenance().get("timings_s", {}))
    timings["total"] = time.perf_counter() - started
    controls = results.read_controls() if judged.summary.correlations else None
    return PipelineResult(results.path, report, judged.summary, controls, timings)


def run_demo(
    results_dir: str | Path,
    *,
    quick: bool = False,
    settings: PipelineSettings | None = None,
    client=None,
    command: Sequence[str] | None = None,
) -> Job[PipelineResult]:
    """The whole pipeline on a simulated session (``quick``: the two-minute version)."""
    settings = settings or PipelineSettings.demo(quick)
    with ResultsFolder.writing(results_dir, command=command) as results:
        started = time.perf_counter()
        session = yield from simulate_stage(results, "quick" if quick else "default", settings.seed)
        traces = yield from extract_stage(results, session.manifest, settings)
        yield from build_stage(results, session.manifest, traces, settings)
        return (yield from _model_to_report(results, settings, client, started))
