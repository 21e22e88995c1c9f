"""One call from a results folder to verdicts: the statistics behind ``movie-recon evaluate``, the
pipeline's evaluate stage and the report (docs/reconstruction.md, "Verdicts").

``evaluate_results`` reads the reconstructions, the control movies saved by the controls
stage and the mask; computes the static/moving decomposition, a statistical verdict per
control (:mod:`.reconstruct.statistics`), identification among distractors
(:mod:`.reconstruct.identification`), temporal and spatial resolution and the reliability map
(:mod:`.reconstruct.resolution`); and merges them into ``metrics.json`` and ``controls.json``
(``reliability_map.npy`` beside them). No torch, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from . import _atomic
from .reconstruct.identification import MIN_DISTRACTORS, Identification, identify
from .reconstruct.metrics import DROP_FRAMES
from .reconstruct.resolution import Spectrum, reliability_map, spatial_resolution, temporal_resolution
from .reconstruct.statistics import ALPHA, MEASURE_LABELS, ControlVerdict, OverallVerdict, content_scores, control_verdicts, overall_verdict
from .results import CONTROLS_JSON, ResultsFolder, load_results, read_json, write_json
from .results_recording import open_recording, recording_path_of

RELIABILITY_MAP = "reliability_map.npy"
N_DISTRACTORS = 60
CONTROL_ORDER = ("shuffled", "time-reversed", "circular shift", "grey-screen prior")
DEFAULT_FRAME_RATE = 30.0


@dataclass
class Evaluation:
    trial_ids: list[int]
    frame_rate: float
    content: dict[str, list[dict]]  # condition -> per trial static/moving scores
    verdicts: list[ControlVerdict]
    overall: OverallVerdict | None
    identification: Identification | None
    temporal: Spectrum
    spatial: Spectrum
    notes: list[str] = field(default_factory=list)

    def statistics(self) -> dict:
        """The ``statistics`` block of metrics.json (schema in docs/reconstruction.md)."""
        return {
            "schema": 1, "frame_rate": self.frame_rate, "trial_ids": self.trial_ids,
            "content": self.content,
            "identification": self.identification.to_dict() if self.identification else None,
            "temporal_resolution": self.temporal.to_dict(), "spatial_resolution": self.spatial.to_dict(),
            "reliability_map": RELIABILITY_MAP, "notes": self.notes,
        }

    def verdict_lines(self) -> list[str]:
        """The table a reviewer reads in 30 s."""
        lines = [f"{'control':<18} {'judged on':<12} {'real':>6} {'control':>7} {'effect [95% CI]':>24} {'p':>8}  verdict"]
        for v in self.verdicts:
            for c in v.judged():
                interval = f"{c.effect:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                p = f"{c.p_value:.2g}" if c.verdict != "cannot tell" else f">={c.min_p:.2g}"
                lines.append(f"{v.control:<18} {MEASURE_LABELS[c.measure]:<12} {c.real:>6.3f} {c.control_score:>7.3f} "
                             f"{interval:>24} {p:>8}  {c.verdict}")
            lines.append(f"{'':<18} => {v.verdict.upper()}")
        if self.overall is not None:
            lines.append(f"overall: {self.overall.verdict} ({self.overall.sentence})")
        if self.identification is not None:
            i = self.identification
            lines.append(f"identification: top-1 {i.top1:.2f} (chance {i.chance_top1:.3f}), top-5 {i.top5:.2f} "
                         f"(chance {i.chance_top5:.3f}) among {i.candidates} movies, p = {i.p_value:.2g}; "
                         f"per 1 s segment top-1 {i.segment_top1:.2f} (chance {i.segment_chance_top1:.4f})")
        lines.append(f"temporal resolution: {self.temporal.describe()}; spatial: {self.spatial.describe()}")
        lines += [f"note: {n}" for n in self.notes]
        return lines


def _frame_rate(folder: ResultsFolder, notes: list[str]):
    """(recording or None, frame rate) of the folder's recording."""
    try:
        recording = open_recording(recording_path_of(folder))
        return recording, float(recording.frame_rate)
    except Exception:  # noqa: BLE001 - a folder of reconstructions alone can still be evaluated
        notes.append(f"no readable recording: frame rate taken as {DEFAULT_FRAME_RATE:g} Hz")
        return None, DEFAULT_FRAME_RATE


def _simulation(folder: ResultsFolder):
    path = folder.session_dir / "simulation.json"
    if not path.is_file():
        return None
    from .simulate.config import SimulationConfig

    return SimulationConfig.from_dict(read_json(path)["config"])


def distractor_movies(folder: ResultsFolder, recording, n_frames: int, frame_shape, frame_rate: float,
                      *, count: int = N_DISTRACTORS, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Distractor clips the length of a trial from media the encoders were not trained on.

    A simulated session: its own generator on its own test sources (exchangeable with the test
    stimuli). Otherwise the recording's validation stimuli of that length, topped up with clips
    of the bundled test photographs (a different distribution: identification is then optimistic).
    """
    import dataclasses

    from .simulate.config import StimulusConfig
    from .simulate.stimulus import image_clip, load_source_image, load_source_video, video_clip

    simulation = _simulation(folder)
    movies, source = [], ""
    stimulus = simulation.stimulus if simulation is not None else StimulusConfig()
    if simulation is None and recording is not None:
        for i in recording.indices("validation"):
            video = np.asarray(recording.trial(int(i)).video, np.float32)
            if video.shape[0] >= n_frames and len(movies) < count:
                movies.append(video[:n_frames])
        source = f"{len(movies)} validation stimuli of the recording, then "
    stimulus = dataclasses.replace(stimulus, frame_shape=tuple(frame_shape), frame_rate=frame_rate,
                                   trial_seconds=n_frames / frame_rate)
    sources = [("image", s) for s in stimulus.test_images] + [("video", s) for s in stimulus.test_videos]
    rng = np.random.default_rng([seed, 104729])
    while len(movies) < count:
        kind, name = sources[int(rng.integers(len(sources)))]
        if kind == "image":
            clip = image_clip(load_source_image(name), rng, n_frames, stimulus)
        else:
            clip = video_clip(load_source_video(str(name)), rng, n_frames, stimulus)
        movies.append(clip[:n_frames])
    generated = "the simulated session's own stimulus generator" if simulation else "the bundled stimulus generator"
    names = ", ".join(str(s) for _, s in sources)
    return movies, f"{source}{generated} on the held-out test sources ({names}), seed {seed}"


def _control_movies(folder: ResultsFolder, controls: dict | None, trials, notes: list[str]) -> dict[str, list]:
    """``{control: movies in the order of trials}`` for the controls whose movies are saved."""
    if not controls:
        return {}
    order = [int(t) for t in controls.get("trial_ids", [])]
    by_id = {t.trial_id: t for t in trials}
    if not order or any(t not in by_id for t in order) or len(order) != len(trials):
        notes.append("controls.json names other trials than the reconstructions: controls not judged (rerun the controls)")
        return {}
    real = [by_id[t].reconstruction for t in order]
    names = [r["condition"] for r in controls.get("rows", [])[1:]]
    out = {}
    for name in (n for n in CONTROL_ORDER if n in names):
        if name == "shuffled":  # each trial paired with the next trial's reconstruction (pipeline.controls_stage)
            out[name] = [real[(i + 1) % len(real)] for i in range(len(real))]
            continue
        movies = [folder.read_control_movie(name, t) for t in order]
        if any(m is None for m in movies):
            notes.append(f"the {name} control's movies are not in the folder (made before they were saved): not judged")
            continue
        out[name] = movies
    return out


def evaluate_results(path, *, drop_frames: int = DROP_FRAMES, seed: int = 0,
                     degrees_per_pixel: float | None = None) -> Evaluation:
    """Compute every statistic of a results folder and merge it into metrics.json and controls.json."""
    folder = ResultsFolder.open(path)
    results = load_results(folder.path)
    if not results.trials:
        from .errors import InputError

        raise InputError("no reconstructed trials to evaluate", folder.path)
    notes: list[str] = []
    recording, frame_rate = _frame_rate(folder, notes)
    controls = results.controls
    if controls and controls.get("stale"):
        notes.append(f"the controls are out of date (trial(s) {controls['stale']} were reconstructed again since): "
                     "not judged; re-run the controls")
        controls = None
    order = [int(t) for t in (controls or {}).get("trial_ids", [])] or [t.trial_id for t in results.trials]
    trials = [results.trial(t) for t in order if t in {x.trial_id for x in results.trials}] or results.trials
    mask = results.mask
    stimuli = [t.stimulus for t in trials]
    recs = [t.reconstruction for t in trials]
    movies = _control_movies(folder, controls, trials, notes)
    content = {name: [content_scores(m, s, mask, drop_frames=drop_frames).as_row() for m, s in zip(ms, stimuli)]
               for name, ms in {"real": recs, **movies}.items()}
    verdicts = control_verdicts(recs, movies, stimuli, mask, frame_rate=frame_rate, drop_frames=drop_frames, seed=seed)
    overall = overall_verdict(verdicts, len(trials)) if controls else None
    identification = _identification(folder, recording, recs, stimuli, mask, frame_rate, drop_frames, seed, notes)
    if degrees_per_pixel is None:
        simulation = _simulation(folder)
        degrees_per_pixel = simulation.stimulus.degrees_per_pixel if simulation is not None else None
    evaluation = Evaluation(
        trial_ids=[t.trial_id for t in trials], frame_rate=frame_rate, content=content, verdicts=verdicts,
        overall=overall, identification=identification,
        temporal=temporal_resolution(recs, stimuli, mask, frame_rate=frame_rate, drop_frames=drop_frames),
        spatial=spatial_resolution(recs, stimuli, mask, drop_frames=drop_frames, degrees_per_pixel=degrees_per_pixel),
        notes=notes,
    )
    _atomic.save_npy(folder.path / RELIABILITY_MAP, reliability_map(recs, stimuli, drop_frames=drop_frames))
    _write(folder, evaluation, controls)
    if controls is None and results.controls:  # stale: no verdict of an earlier evaluation may survive
        stale = dict(results.controls)
        for key in ("verdicts", "overall", "overall_sentence", "beats_controls", "verdict_table"):
            stale.pop(key, None)
        write_json(folder.path / CONTROLS_JSON, stale)  # the JSON only: controls.csv stays removed while stale
    return evaluation


def _identification(folder, recording, recs, stimuli, mask, frame_rate, drop_frames, seed, notes):
    lengths = {np.shape(m)[0] for m in (*recs, *stimuli)}
    if len(lengths) != 1:
        notes.append("identification skipped: the trials differ in length")
        return None
    n_frames = lengths.pop()
    distractors, source = distractor_movies(folder, recording, n_frames, np.shape(stimuli[0])[1:], frame_rate,
                                            count=max(N_DISTRACTORS, MIN_DISTRACTORS), seed=seed)
    return identify(recs, stimuli, distractors, mask, frame_rate=frame_rate, drop_frames=drop_frames, seed=seed,
                    distractor_source=source)


def _write(folder: ResultsFolder, evaluation: Evaluation, controls: dict | None) -> None:
    metrics = folder.read_metrics() or {"summary": {}, "trials": []}  # in line with the trial files
    real = dict(zip(evaluation.trial_ids, evaluation.content["real"]))
    rows = [{**row, **real.get(int(row["trial_id"]), {})} for row in metrics.get("trials", [])]
    folder.write_metrics(rows, {**metrics.get("summary", {}), "statistics": evaluation.statistics()},
                         folder.trial_sources())
    if controls:
        verdicts = {v.control: v for v in evaluation.verdicts}
        for k, row in enumerate(controls.get("rows", [])):
            v = verdicts.get(row["condition"])
            row.pop("passes", None)  # the retired fixed rule (folders made before the verdicts)
            row["verdict"] = "" if k == 0 else (v.verdict if v else "not judged")
        controls.pop("all_pass", None)
        controls.pop("rule", None)
        controls.update({
            "verdicts": [v.to_dict() for v in evaluation.verdicts],
            "overall": evaluation.overall.verdict, "overall_sentence": evaluation.overall.sentence,
            "beats_controls": evaluation.overall.beats_controls, "alpha": ALPHA,
            "verdict_table": "\n".join(evaluation.verdict_lines()),
        })
        folder.write_controls(controls)
