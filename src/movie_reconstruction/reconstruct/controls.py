"""Controls: is the reconstruction what the mouse saw, or what the model outputs anyway?

``run_controls`` reconstructs the trials from their real responses and from responses
that carry no information about *this* movie, scores every reconstruction against the
movie that was shown, and returns a table with the margins:

- ``shuffled``: another trial's reconstruction (its own responses and behaviour) scored
  against this trial's movie. It shares everything with the real reconstruction except the
  pairing, so it measures what any reconstruction from this encoder looks like.
- ``time-reversed``: the responses played backwards (behaviour as recorded).
- ``circular shift``: the responses rotated by half the trial.
- ``grey-screen prior``: the encoders' own predicted responses to a grey screen (with the
  recorded behaviour), i.e. what the model "sees" when there is nothing to see.
- a neuron-count curve: the real reconstruction with random subsets of neurons.

Whether the real reconstruction beats a control is a statistical verdict
(:mod:`.statistics`): a paired test over trials for what a trial shares over time (masked r,
static part) and a block sign-flip test within trials for what moves, judged on the measures
where that control means something. ``ControlTable.verdicts`` holds them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..progress import Job, relabel
from .metrics import DROP_FRAMES, masked_correlation, predict
from .optimiser import ReconstructionConfig, as_model_list, as_trial_list, reconstruct, resolve_mask
from .statistics import ControlVerdict, OverallVerdict, control_verdicts, overall_verdict

CONTROLS = ("shuffled", "time-reversed", "circular shift", "grey-screen prior")


@dataclass(frozen=True)
class ControlRow:
    name: str
    per_trial: np.ndarray
    real: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_trial))

    @property
    def margin(self) -> float:
        """Real minus control mean correlation."""
        return self.real - self.mean


@dataclass
class ControlTable:
    real_per_trial: np.ndarray
    controls: list[ControlRow]
    neuron_curve: list[tuple[int, np.ndarray]] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    verdicts: list[ControlVerdict] = field(default_factory=list)

    @property
    def real(self) -> float:
        return float(np.mean(self.real_per_trial))

    def verdict_of(self, name: str) -> ControlVerdict | None:
        return next((v for v in self.verdicts if v.control == name), None)

    @property
    def overall(self) -> OverallVerdict:
        return overall_verdict(self.verdicts, len(self.real_per_trial))

    def rows(self) -> list[dict]:
        out = [{"condition": "real", "mean_r": self.real, "margin": 0.0, "control/real": 1.0, "verdict": ""}]
        for row in self.controls:
            verdict = self.verdict_of(row.name)
            out.append(
                {
                    "condition": row.name,
                    "mean_r": row.mean,
                    "margin": row.margin,
                    "control/real": row.mean / self.real if self.real else float("nan"),
                    "verdict": verdict.verdict if verdict else "not judged",
                }
            )
        return out

    def to_markdown(self) -> str:
        lines = ["| condition | mean r | margin (real - control) | control / real | verdict (p < 0.01) |",
                 "|---|---|---|---|---|"]
        for r in self.rows():
            lines.append(
                f"| {r['condition']} | {r['mean_r']:.3f} | {r['margin']:.3f} | {r['control/real']:.2f} | {r['verdict']} |"
            )
        if self.neuron_curve:
            lines += ["", "| neurons | mean r |", "|---|---|"]
            lines += [f"| {n} | {float(np.mean(v)):.3f} |" for n, v in self.neuron_curve]
        return "\n".join(lines)


RECONSTRUCTING_CONTROLS = CONTROLS[1:]  # the shuffled control reuses the real reconstructions


def shuffled_donors(n_trials: int) -> list[int]:
    """For each trial, the trial whose reconstruction the shuffled control scores against it."""
    return [(i + 1) % n_trials for i in range(n_trials)]


def altered_trials(name: str, trials, models, *, start_grey: float, device=None) -> list:
    """The trials with the responses of the reconstructing control ``name`` (the one place that
    says what each control is)."""
    if name == "time-reversed":
        return [dataclasses.replace(t, responses=np.ascontiguousarray(t.responses[:, ::-1])) for t in trials]
    if name == "circular shift":
        return [dataclasses.replace(t, responses=np.roll(t.responses, t.n_frames // 2, axis=1)) for t in trials]
    if name == "grey-screen prior":
        return [dataclasses.replace(t, responses=predict(models, np.full_like(t.video, start_grey), t, device=device))
                for t in trials]
    raise ValueError(f"unknown control {name!r}; expected one of {RECONSTRUCTING_CONTROLS}")


def default_neuron_counts(n_neurons: int) -> tuple[int, ...]:
    """1/8, 1/4 and 1/2 of the neurons (those of at least 5)."""
    return tuple(c for c in (n_neurons // 8, n_neurons // 4, n_neurons // 2) if c >= 5)


def neuron_subsets(n_neurons: int, counts, seed: int) -> dict[int, np.ndarray]:
    """A random subset of neurons per count below ``n_neurons`` (sorted indices), drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    counts = sorted({int(c) for c in counts if 0 < int(c) < n_neurons})
    return {c: np.sort(rng.choice(n_neurons, size=c, replace=False)) for c in counts}


def run_controls(
    models,
    trials,
    config: ReconstructionConfig | None = None,
    *,
    mask=None,
    controls=CONTROLS,
    neuron_counts=(),
    drop_frames: int = DROP_FRAMES,
    seed: int = 0,
    device=None,
) -> Job[ControlTable]:
    """Reconstruct ``trials`` for real and under each control; return a :class:`ControlTable`."""
    config = config or ReconstructionConfig()
    models = as_model_list(models)
    trials = as_trial_list(trials)
    unknown = sorted(set(controls) - set(CONTROLS))
    if unknown:
        raise ValueError(f"unknown control(s) {unknown}; expected some of {CONTROLS}")
    if "shuffled" in controls and len(trials) < 2:
        raise InputError("the shuffled control needs at least two trials")
    alpha = resolve_mask(mask, models, tuple(models[0].frame_shape))
    truth = [t.video for t in trials]

    def score(movies):
        return np.array([masked_correlation(m, v, alpha, drop_frames=drop_frames) for m, v in zip(movies, truth)])

    real = yield from relabel(reconstruct(models, trials, config, mask=alpha, device=device), "real")
    real_scores = score(real.movies)
    rows, movies = [], {}
    for name in controls:
        if name == "shuffled":
            movies[name] = [real.movies[j] for j in shuffled_donors(len(trials))]
        else:
            altered = altered_trials(name, trials, models, start_grey=config.start_grey, device=device)
            result = yield from relabel(reconstruct(models, altered, config, mask=alpha, device=device), name)
            movies[name] = list(result.movies)
        rows.append(ControlRow(name, score(movies[name]), float(real_scores.mean())))

    n_all = int(models[0].n_neurons)
    subsets = neuron_subsets(n_all, neuron_counts, seed)
    curve = []
    for count, subset in subsets.items():
        result = yield from relabel(
            reconstruct(models, trials, config, mask=alpha, neurons=subset, device=device), f"{count} neurons"
        )
        curve.append((count, score(result.movies)))
    if any(int(c) >= n_all for c in neuron_counts):
        curve.append((n_all, real_scores))
    verdicts = control_verdicts(real.movies, movies, truth, alpha, frame_rate=float(trials[0].frame_rate),
                                drop_frames=drop_frames, seed=seed)
    extra = {"elapsed_real_s": real.elapsed_s, "iterations": real.iterations_run}
    return ControlTable(real_scores, rows, curve, extra=extra, verdicts=verdicts)
