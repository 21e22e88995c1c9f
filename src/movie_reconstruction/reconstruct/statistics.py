"""Verdicts a sceptic accepts: is the reconstruction closer to the movie than each control is?

Everything follows :mod:`.metrics`: the first ``drop_frames`` frames are dropped and only
pixels with alpha >= 1 are evaluated. A reconstruction is split into what it shares over the
whole trial and what changes within it (``content_scores``):

- ``masked``: the headline Pearson r over evaluated pixels x frames;
- ``static``: r of the per-pixel temporal means (one image per movie);
- ``moving``: r of the movies after subtracting each pixel's temporal mean;
- ``change_k``: r of the changes over k frames, ``movie[t + k] - movie[t]`` (k = 1, 5, 15).

**The test.** For each control and measure, the per-trial paired difference
``d_i = score(real_i, stimulus_i) - score(control_i, stimulus_i)``; the effect is the mean
over trials. The null hypothesis H0 is that the real and the control reconstruction are
exchangeable with respect to the stimulus (the label "real" carries no information), and the
alternative is one-sided (the real one is closer). The p-value is a sign-flip randomisation
test: swapping real and control leaves the data's distribution unchanged under H0. What may
be swapped depends on the measure:

- ``masked`` and ``static`` contain the per-pixel means, which every frame of a trial shares;
  blocks of one trial are then not independent replicates (swapping half the blocks only
  halves a static difference, so the observed one would always look extreme). The unit is the
  trial: all ``2**n`` sign flips of the n per-trial differences (exact up to ``EXACT_LIMIT``
  trials, random flips beyond). The smallest
  attainable p is ``2**-n``: below 7 trials such a test cannot reach p < 0.01, and the verdict
  says "cannot tell" instead of pretending. The 95 % interval is Student's t over trials.
- ``moving`` and ``change_k`` have each pixel's trial mean removed, so their dependence in time
  is short-range. Each trial is cut into blocks of ``BLOCK_SECONDS`` (1 s) and the real and
  the control movie are swapped block by block, independently in every block of every trial
  (trials are kept, so the conclusion is about these test trials). The correlation of each
  trial is rebuilt from per-block sums of cross-products and energies, so a resample costs a
  matrix product. Blocks of 1 s keep most of the autocorrelation inside a block; the test
  assumes dependence between blocks is negligible (checked on autocorrelated noise in
  tests/test_statistics.py). Exact enumeration up to 2**12 assignments, else ``N_RESAMPLES``
  random ones (p = (1 + hits) / (1 + resamples)). The 95 % interval is a stratified block
  bootstrap (blocks resampled with replacement within each trial).

A comparison is "beaten" at p < ``ALPHA`` (0.01) with a positive effect, "not beaten" when
the test could reach ``ALPHA`` but did not (or the control scores higher), "cannot tell" when
the smallest attainable p is not below ``ALPHA``, and "not applicable" for moving measures
when the stimulus does not move inside the mask. Each control is judged on ``JUDGED_ON``: the
time-reversed and circular-shift controls on the moving part (a still scene looks the same
backwards), the shuffled and grey-screen controls on the masked r, static and moving parts.
Pure numpy; seeded and deterministic.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

from .mask import EVALUATION_THRESHOLD
from .metrics import DROP_FRAMES, _alpha, pearson

ALPHA = 0.01
BLOCK_SECONDS = 1.0
CHANGE_LAGS = (1, 5, 15)
N_RESAMPLES = 9999
EXACT_LIMIT = 12  # enumerate every sign flip up to 2**12 assignments
CONFIDENCE = 0.95
BLOCKS_PER_AUTOCORRELATION = 5.0  # a block spans at least this many integrated autocorrelation times
STILL_RMS = 0.5  # grey levels: a stimulus whose moving part is smaller than this does not move
TRIAL_MEASURES = ("masked", "static")
BLOCK_MEASURES = ("moving", *(f"change_{k}" for k in CHANGE_LAGS))
MEASURES = TRIAL_MEASURES + BLOCK_MEASURES
JUDGED_ON = {
    "shuffled": ("masked", "static", "moving"),
    "time-reversed": ("moving",),
    "circular shift": ("moving",),
    "grey-screen prior": ("masked", "static", "moving"),
}
TRIALS_NEEDED = int(np.ceil(np.log2(1 / ALPHA)))  # 2**-7 < 0.01: the fewest trials a paired test over trials needs
BEATEN, NOT_BEATEN, CANNOT_TELL, NOT_APPLICABLE = "beaten", "not beaten", "cannot tell", "not applicable"


def evaluated(movie, mask=None, *, drop_frames: int = DROP_FRAMES) -> np.ndarray:
    """The evaluated part of a movie, ``(frames after drop_frames, pixels with alpha >= 1)``, float64."""
    movie = np.asarray(movie, np.float64)
    inside = _alpha(mask, movie.shape[1:]) >= EVALUATION_THRESHOLD
    return movie[drop_frames:, inside]


def signal(frames: np.ndarray, measure: str) -> np.ndarray:
    """The part of evaluated frames ``(T, P)`` that a block measure correlates, centred."""
    if measure == "moving":
        return frames - frames.mean(0)
    if measure.startswith("change_"):
        lag = int(measure.split("_")[1])
        change = frames[lag:] - frames[:-lag] if lag < len(frames) else np.zeros((0, frames.shape[1]))
        return change - change.mean() if change.size else change
    raise ValueError(f"{measure!r} is not a block measure; expected one of {BLOCK_MEASURES}")


def score(rec: np.ndarray, truth: np.ndarray, measure: str) -> float:
    """One measure for evaluated frames of a reconstruction and its stimulus."""
    if measure == "masked":
        return pearson(rec, truth)
    if measure == "static":
        return pearson(rec.mean(0), truth.mean(0))
    a, b = signal(rec, measure), signal(truth, measure)
    return pearson(a, b) if a.size else 0.0  # a change over more frames than the trial has: nothing to score


@dataclass(frozen=True)
class ContentScores:
    """Static and moving content of one reconstruction, scored against one stimulus."""

    masked: float
    static: float
    moving: float
    change: dict[int, float]

    def as_row(self) -> dict[str, float]:
        return {"masked": self.masked, "static": self.static, "moving": self.moving,
                **{f"change_{k}": v for k, v in self.change.items()}}


def content_scores(reconstruction, truth, mask=None, *, drop_frames: int = DROP_FRAMES) -> ContentScores:
    rec, tru = evaluated(reconstruction, mask, drop_frames=drop_frames), evaluated(truth, mask, drop_frames=drop_frames)
    return ContentScores(score(rec, tru, "masked"), score(rec, tru, "static"), score(rec, tru, "moving"),
                         {k: score(rec, tru, f"change_{k}") for k in CHANGE_LAGS})


@dataclass(frozen=True)
class Comparison:
    """Real versus one control on one measure, over the test trials."""

    control: str
    measure: str
    real: float  # mean over trials of the real reconstruction's score
    control_score: float  # mean over trials of the control's score
    per_trial_difference: tuple[float, ...]
    effect: float  # mean of the per-trial differences (real - control)
    ci_low: float
    ci_high: float
    p_value: float  # one-sided: real closer to the stimulus than the control
    min_p: float  # the smallest p this design can give
    resampling: str  # "trials" or "1 s blocks"
    units: int  # trials, or blocks over all trials
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def _decide(effect: float, p_value: float, min_p: float) -> str:
    if not effect > 0:
        return NOT_BEATEN
    if min_p >= ALPHA:
        return CANNOT_TELL
    return BEATEN if p_value < ALPHA else NOT_BEATEN


def _sign_patterns(units: int, rng: np.random.Generator, resamples: int) -> tuple[np.ndarray, bool]:
    """Swap indicators ``(assignments, units)``: every one when few, else random; True if exact."""
    if units <= EXACT_LIMIT:
        return np.array(list(itertools.product((0.0, 1.0), repeat=units))).reshape(-1, units), True
    return (rng.random((resamples, units)) < 0.5).astype(np.float64), False


def _p_value(null: np.ndarray, observed: float, exact: bool) -> float:
    hits = int(np.sum(null >= observed - 1e-12 * max(1.0, abs(observed))))
    return hits / len(null) if exact else (1 + hits) / (1 + len(null))


def _min_p(units: int, exact: bool, resamples: int) -> float:
    return 2.0**-units if exact else max(2.0**-units, 1 / (1 + resamples))


def trial_test(real_scores, control_scores, rng: np.random.Generator,
               resamples: int = N_RESAMPLES) -> tuple[float, float, float, float, float]:
    """Paired sign-flip test over trials: (effect, ci_low, ci_high, p, min_p)."""
    from scipy import stats

    d = np.asarray(real_scores, np.float64) - np.asarray(control_scores, np.float64)
    n = len(d)
    flips, exact = _sign_patterns(n, rng, resamples)
    null = ((1 - 2 * flips) * d).mean(1)
    effect = float(d.mean())
    if n > 1:
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)
        low, high = effect - half, effect + half
    else:
        low = high = float("nan")
    return effect, float(low), float(high), _p_value(null, effect, exact), _min_p(n, exact, resamples)


def pooled_autocorrelation(movies: list[np.ndarray], max_lag: int) -> np.ndarray:
    """Autocorrelation ``(max_lag + 1,)`` of centred ``(T, P)`` signals, pooled over pixels and trials."""
    out = np.zeros(max_lag + 1)
    for m in movies:
        for lag in range(min(max_lag + 1, len(m))):
            out[lag] += float(np.sum(m[lag:] * m[: len(m) - lag]))
    return out / out[0] if out[0] > 0 else np.eye(1, max_lag + 1)[0]


def block_length(real, control_frames, truths, measure: str, minimum: int) -> int:
    """Frames per block: at least ``minimum`` (1 s) and ``BLOCKS_PER_AUTOCORRELATION`` integrated
    autocorrelation times of the per-pixel products (real - control) x stimulus, the terms the
    test sums, so that neighbouring blocks are close to independent (the sign-flip test's
    assumption). The autocorrelation is pooled over every evaluated pixel and trial (far steadier
    than one series per trial) and summed up to the first lag where it is no longer positive."""
    products = []
    for r, c, t in zip(real, control_frames, truths):
        product = (signal(r, measure) - signal(c, measure)) * signal(t, measure)
        products.append(product - product.mean(0))
    rho = pooled_autocorrelation(products, max(1, min(len(t) for t in truths) // 2))
    stop = np.flatnonzero(rho[1:] <= 0)
    tau = 1 + 2 * rho[1 : 1 + (stop[0] if len(stop) else len(rho) - 1)].sum()
    return max(minimum, int(np.ceil(BLOCKS_PER_AUTOCORRELATION * tau)))


def block_sums(rec: np.ndarray, truth: np.ndarray, control: np.ndarray, measure: str, block: int) -> np.ndarray:
    """Per-block sums ``(5, blocks)``: real x stimulus, control x stimulus, real², control², stimulus²."""
    x, c, s = signal(rec, measure), signal(control, measure), signal(truth, measure)
    n_blocks = max(1, len(s) // block)
    starts = np.arange(n_blocks) * block  # a last partial block joins the one before it
    if len(s) == 0:
        return np.zeros((5, 1))
    rows = [(x * s).sum(1), (c * s).sum(1), (x * x).sum(1), (c * c).sum(1), (s * s).sum(1)]
    return np.stack([np.add.reduceat(r, starts) for r in rows])


def _correlations(sums: np.ndarray, swap: np.ndarray) -> np.ndarray:
    """Real minus control r of one trial for each row of ``swap`` (1: that block's movies swapped)."""
    cross_r, cross_c, energy_r, energy_c, energy_s = sums
    num_r = cross_r.sum() + swap @ (cross_c - cross_r)
    num_c = cross_c.sum() - swap @ (cross_c - cross_r)
    en_r = energy_r.sum() + swap @ (energy_c - energy_r)
    en_c = energy_c.sum() - swap @ (energy_c - energy_r)
    return _safe_r(num_r, en_r, energy_s.sum()) - _safe_r(num_c, en_c, energy_s.sum())


def _safe_r(cross, energy_a, energy_b) -> np.ndarray:
    """Correlation from a cross-product and two energies; 0 where either energy vanishes (as ``pearson``)."""
    den = np.sqrt(np.maximum(energy_a * energy_b, 0.0))
    return np.where(den > 1e-12, cross / np.where(den > 1e-12, den, 1.0), 0.0)


def block_test(sums_per_trial: list[np.ndarray], rng: np.random.Generator,
               resamples: int = N_RESAMPLES) -> tuple[float, float, float, float, float]:
    """Block sign-flip test within trials and a stratified block-bootstrap interval: (effect, low, high, p, min_p)."""
    sizes = [s.shape[1] for s in sums_per_trial]
    effect = float(np.mean([_correlations(s, np.zeros((1, s.shape[1])))[0] for s in sums_per_trial]))
    flips, exact = _sign_patterns(sum(sizes), rng, resamples)
    edges = np.cumsum([0, *sizes])
    null = np.mean([_correlations(s, flips[:, a:b]) for s, a, b in zip(sums_per_trial, edges[:-1], edges[1:])], axis=0)
    boot = []
    for s, size in zip(sums_per_trial, sizes):
        counts = rng.multinomial(size, np.full(size, 1 / size), size=resamples).astype(np.float64)
        weighted = np.stack([counts @ row for row in s])  # (5, resamples): resampled sums
        boot.append(_safe_r(weighted[0], weighted[2], weighted[4]) - _safe_r(weighted[1], weighted[3], weighted[4]))
    boot = np.mean(boot, axis=0)
    low, high = np.quantile(boot, [0.5 - CONFIDENCE / 2, 0.5 + CONFIDENCE / 2])
    return effect, float(low), float(high), _p_value(null, effect, exact), _min_p(sum(sizes), exact, resamples)



MEASURE_LABELS = {"masked": "masked r", "static": "static part", "moving": "moving part",
                  **{f"change_{k}": f"change over {k} frame{'s' if k > 1 else ''}" for k in CHANGE_LAGS}}


def compare(control: str, measure: str, real, control_frames, truths, *, block: int, seed: int = 0,
            resamples: int = N_RESAMPLES) -> Comparison:
    """One control on one measure; ``real``, ``control_frames``, ``truths``: evaluated frames per trial."""
    rng = np.random.default_rng([seed, MEASURES.index(measure), sum(map(ord, control))])
    if measure in BLOCK_MEASURES and min(len(signal(t, measure)) for t in truths) < 2:
        return Comparison(control, measure, 0.0, 0.0, tuple(0.0 for _ in truths), 0.0, float("nan"), float("nan"),
                          1.0, 1.0, "too few frames", 0, NOT_APPLICABLE)
    real_scores = [score(r, t, measure) for r, t in zip(real, truths)]
    control_scores = [score(c, t, measure) for c, t in zip(control_frames, truths)]
    if measure in TRIAL_MEASURES:
        effect, low, high, p, min_p = trial_test(real_scores, control_scores, rng, resamples)
        resampling, units = "trials", len(truths)
    else:
        block = block_length(real, control_frames, truths, measure, block)
        sums = [block_sums(r, t, c, measure, block) for r, c, t in zip(real, control_frames, truths)]
        effect, low, high, p, min_p = block_test(sums, rng, resamples)
        resampling, units = f"{block}-frame blocks", sum(s.shape[1] for s in sums)
    still = measure in BLOCK_MEASURES and all(np.sqrt(np.mean(signal(t, measure) ** 2)) < STILL_RMS for t in truths)
    return Comparison(
        control=control, measure=measure, real=float(np.mean(real_scores)), control_score=float(np.mean(control_scores)),
        per_trial_difference=tuple(float(a - b) for a, b in zip(real_scores, control_scores)), effect=effect,
        ci_low=low, ci_high=high, p_value=p, min_p=min_p, resampling=resampling, units=units,
        verdict=NOT_APPLICABLE if still else _decide(effect, p, min_p),
    )


@dataclass(frozen=True)
class ControlVerdict:
    """One control: every measure compared, and the verdict on the measures it is judged on."""

    control: str
    judged_on: tuple[str, ...]
    verdict: str
    comparisons: tuple[Comparison, ...]

    def judged(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.measure in self.judged_on]

    def sentence(self) -> str:
        parts = []
        for c in self.judged():
            label = MEASURE_LABELS[c.measure]
            if c.verdict == NOT_APPLICABLE:
                parts.append(f"{label}: not applicable (the stimulus does not move inside the mask)")
            elif c.verdict == CANNOT_TELL:
                parts.append(f"{label}: cannot tell with {c.units} {c.resampling} (smallest attainable p = {c.min_p:.3g})")
            else:
                parts.append(f"{label}: {c.effect:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}], p = {c.p_value:.2g}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"control": self.control, "judged_on": list(self.judged_on), "verdict": self.verdict,
                "sentence": self.sentence(), "comparisons": [c.to_dict() for c in self.comparisons]}


def _combine(verdicts: list[str]) -> str:
    """A control's verdict from its judged measures: the weakest one wins."""
    relevant = [v for v in verdicts if v != NOT_APPLICABLE]
    if not relevant:
        return NOT_APPLICABLE
    for weakest in (NOT_BEATEN, CANNOT_TELL):
        if weakest in relevant:
            return weakest
    return BEATEN


def control_verdicts(real_movies, controls: dict, truths, mask=None, *, frame_rate: float,
                     drop_frames: int = DROP_FRAMES, seed: int = 0) -> list[ControlVerdict]:
    """Verdicts for ``controls`` (``{name: movies per trial}``) against the real reconstructions."""
    def frames(movies):
        return [evaluated(m, mask, drop_frames=drop_frames) for m in movies]

    real, truth = frames(real_movies), frames(truths)
    block = max(1, int(round(BLOCK_SECONDS * frame_rate)))
    out = []
    for name, movies in controls.items():
        control = frames(movies)
        comparisons = tuple(compare(name, m, real, control, truth, block=block, seed=seed) for m in MEASURES)
        judged_on = JUDGED_ON.get(name, ("masked", "static", "moving"))
        verdict = _combine([c.verdict for c in comparisons if c.measure in judged_on])
        out.append(ControlVerdict(name, judged_on, verdict, comparisons))
    return out


@dataclass(frozen=True)
class OverallVerdict:
    verdict: str  # "beats every control", "does not beat every control" or "cannot tell"
    sentence: str
    trials: int

    @property
    def beats_controls(self) -> bool:
        return self.verdict == "beats every control"


def overall_verdict(verdicts: list[ControlVerdict], trials: int) -> OverallVerdict:
    if all(v.verdict == NOT_APPLICABLE for v in verdicts):
        return OverallVerdict("cannot tell", "no control applies to these trials" if verdicts else "no controls were run", trials)
    not_beaten = [v.control for v in verdicts if v.verdict == NOT_BEATEN]
    unclear = [v.control for v in verdicts if v.verdict == CANNOT_TELL]
    if not_beaten:
        return OverallVerdict("does not beat every control", f"does not beat: {', '.join(not_beaten)} (p < {ALPHA:g} not reached)", trials)
    if unclear:
        return OverallVerdict(
            "cannot tell",
            f"cannot tell for {', '.join(unclear)} with {trials} test trial(s): the smallest p this design can give "
            f"is not below {ALPHA:g} (what a trial shares over time, masked r and the static part, is tested over "
            f"trials and needs {TRIALS_NEEDED}; the moving part needs enough blocks); every other judged "
            f"comparison is beaten", trials)
    return OverallVerdict("beats every control", f"beats every control at p < {ALPHA:g}", trials)
