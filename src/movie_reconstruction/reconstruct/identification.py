"""Identification: does each reconstruction pick out its own stimulus among many candidates?

For every test trial the reconstruction is scored (masked r, as :func:`.metrics.masked_correlation`)
against a pool of candidate movies: every test stimulus plus distractor segments of the same
length cut from media the encoders were not trained on. The rank of its own stimulus (1 = the
best match; ties count against it) gives top-1 and top-5 accuracy, against chance 1/K and 5/K.

The p-value tests H0: the reconstructions do not depend on which of the pooled movies was
shown, i.e. the test stimuli are exchangeable with the distractors. Then which pooled movie
belongs to which trial is a uniformly random one-to-one assignment, and the statistic (the sum
of the own stimuli's ranks) is compared with ``N_DRAWS`` random assignments. It is exact when
the distractors are drawn the way the test stimuli were (a simulated session's own generator);
with distractors from other media it is only as good as their resemblance to the test movies.

The same is done per 1 s segment (``SEGMENT_SECONDS``): every segment of every reconstruction
against every segment of every pooled movie, as frame-identification decoders report it.
Pure numpy/scipy; seeded and deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .metrics import DROP_FRAMES
from .statistics import evaluated

SEGMENT_SECONDS = 1.0
N_DRAWS = 20000
MIN_DISTRACTORS = 50


@dataclass(frozen=True)
class Identification:
    ranks: tuple[int, ...]  # per trial: rank of its own stimulus among `candidates` (1 = best)
    candidates: int
    top1: float
    top5: float
    chance_top1: float
    chance_top5: float
    p_value: float  # H0: test stimuli exchangeable with the distractors
    segment_top1: float
    segment_top5: float
    segment_candidates: int
    segment_chance_top1: float
    segment_chance_top5: float
    distractors: int
    distractor_source: str

    def to_dict(self) -> dict:
        return asdict(self)


def _standardised(rows: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit norm, so a dot product is a Pearson r (0 for constant rows)."""
    rows = rows - rows.mean(1, keepdims=True)
    norm = np.sqrt((rows * rows).sum(1, keepdims=True))
    return np.where(norm > 1e-9, rows / np.where(norm > 1e-9, norm, 1.0), 0.0).astype(np.float32)


def _segments(frames: np.ndarray, length: int) -> np.ndarray:
    """Evaluated frames ``(T, P)`` cut into whole segments, ``(segments, length * P)`` standardised."""
    count = len(frames) // length
    return _standardised(frames[: count * length].reshape(count, length * frames.shape[1]))


def _ranks(scores: np.ndarray) -> np.ndarray:
    """``ranks[i, k]``: 1 + how many other candidates score at least as well as k for row i."""
    from scipy.stats import rankdata

    return rankdata(-scores, method="max", axis=1).astype(np.int64)


def _assignment_p(ranks: np.ndarray, own: np.ndarray, rng: np.random.Generator) -> float:
    """One-sided p of the summed own ranks among random one-to-one assignments of pool to trials."""
    n, k = ranks.shape
    observed = ranks[np.arange(n), own].sum()
    draws = np.argsort(rng.random((N_DRAWS, k)), axis=1)[:, :n]
    null = ranks[np.arange(n)[None, :], draws].sum(1)
    return float((1 + np.sum(null <= observed)) / (1 + N_DRAWS))


def identify(reconstructions, stimuli, distractors, mask=None, *, frame_rate: float,
             drop_frames: int = DROP_FRAMES, seed: int = 0, distractor_source: str = "") -> Identification:
    """Identification of each trial's stimulus (and of each 1 s segment) among stimuli + distractors."""
    n_frames = np.asarray(stimuli[0]).shape[0]
    if any(np.asarray(m).shape[0] != n_frames for m in (*reconstructions, *stimuli)):
        raise ValueError("identification needs trials of equal length")
    usable = [d for d in distractors if np.asarray(d).shape[0] >= n_frames]
    pool = [*stimuli, *(np.asarray(d)[:n_frames] for d in usable)]
    length = max(1, min(int(round(SEGMENT_SECONDS * frame_rate)), n_frames - drop_frames))  # short trials: one segment

    recs = [evaluated(m, mask, drop_frames=drop_frames) for m in reconstructions]
    whole_recs = _standardised(np.stack([r.ravel() for r in recs]))
    seg_recs = np.concatenate([_segments(r, length) for r in recs])
    whole, segs = [], []
    for movie in pool:  # one candidate at a time keeps memory to a few movies
        frames = evaluated(movie, mask, drop_frames=drop_frames)
        whole.append(whole_recs @ _standardised(frames.ravel()[None])[0])
        segs.append(seg_recs @ _segments(frames, length).T)
    ranks = _ranks(np.stack(whole, 1))
    own = np.arange(len(recs))
    own_ranks = ranks[own, own]
    seg_ranks = _ranks(np.concatenate(segs, 1))
    seg_own = seg_ranks[np.arange(len(seg_ranks)), np.arange(len(seg_ranks))]
    k, k_seg = len(pool), seg_ranks.shape[1]
    return Identification(
        ranks=tuple(int(r) for r in own_ranks), candidates=k,
        top1=float(np.mean(own_ranks <= 1)), top5=float(np.mean(own_ranks <= 5)),
        chance_top1=1 / k, chance_top5=min(5, k) / k,
        p_value=_assignment_p(ranks, own, np.random.default_rng(seed)),
        segment_top1=float(np.mean(seg_own <= 1)), segment_top5=float(np.mean(seg_own <= 5)),
        segment_candidates=k_seg, segment_chance_top1=1 / k_seg, segment_chance_top5=min(5, k_seg) / k_seg,
        distractors=len(usable), distractor_source=distractor_source,
    )
