"""The data side of training: which trials train and which validate, the trials held in memory,
random training clips, and batched predictions over whole validation trials.

Split from :mod:`.train` so that the training loop reads apart from how its data is held.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ..errors import InputError
from .config import Normalization

VALIDATION_FALLBACK_FRACTION = 0.1


class TrialData:
    """Train/validation trials held in memory as float32 tensors (frames are small: 36x64)."""

    def __init__(self, recording, train_positions, validation_positions, hasher):
        import torch

        def load(positions):
            videos, responses, behavior = [], [], []
            for i in positions:
                trial = recording.trial(int(i))
                for array in (trial.video, trial.responses, trial.behavior):
                    hasher.update(np.ascontiguousarray(array).tobytes())
                # Copies: trial arrays may be read-only memory maps.
                videos.append(torch.from_numpy(np.array(trial.video, dtype=np.float32)))
                responses.append(torch.from_numpy(np.array(trial.responses, dtype=np.float32)))
                behavior.append(torch.from_numpy(np.array(trial.behavior, dtype=np.float32)))
            return videos, responses, behavior

        self.train = load(train_positions)
        self.validation = load(validation_positions)
        self.lengths = np.array([v.shape[0] for v in self.train[0]])

    def to(self, device):
        self.train = tuple([t.to(device) for t in part] for part in self.train)
        self.validation = tuple([t.to(device) for t in part] for part in self.validation)
        return self

    def normalization(self) -> Normalization:
        videos, _, behavior = self.train
        n = sum(v.numel() for v in videos)
        mean = sum(float(v.double().sum()) for v in videos) / n
        var = sum(float(((v.double() - mean) ** 2).sum()) for v in videos) / n
        b = np.concatenate([x.cpu().numpy() for x in behavior], axis=1)
        b_mean = b.mean(1)
        b_std = b.std(1)
        b_std = np.where(b_std > 1e-6, b_std, 1.0)
        return Normalization(
            video_mean=mean,
            video_std=max(math.sqrt(var), 1e-3),
            behavior_mean=tuple(float(v) for v in b_mean),
            behavior_std=tuple(float(v) for v in b_std),
        )

    def mean_response(self) -> np.ndarray:
        _, responses, _ = self.train
        total = sum(r.double().sum(1) for r in responses)
        return (total / float(self.lengths.sum())).cpu().numpy()

    def sample(self, rng: np.random.Generator, batch: int, clip: int):
        import torch

        videos, responses, behavior = self.train
        weights = self.lengths / self.lengths.sum()
        trials = rng.choice(len(videos), size=batch, p=weights)
        v, r, b = [], [], []
        for k in trials:
            start = int(rng.integers(0, self.lengths[k] - clip + 1))
            v.append(videos[k][start : start + clip])
            r.append(responses[k][:, start : start + clip])
            b.append(behavior[k][:, start : start + clip])
        return torch.stack(v), torch.stack(r), torch.stack(b)


def split_positions(recording):
    """Positions of the training and the validation trials; without a validation tier, the last
    tenth of the training trials (at least one) validates."""
    train = recording.indices("train")
    validation = recording.indices("validation")
    if train.size == 0:
        raise InputError("the recording has no training trials", recording.source)
    if validation.size == 0:
        n_val = max(1, int(round(VALIDATION_FALLBACK_FRACTION * train.size)))
        if train.size - n_val < 1:
            raise InputError("need at least two training trials when there is no validation tier", recording.source)
        train, validation = train[:-n_val], train[-n_val:]
    return train, validation


def hash_header(hasher, recording) -> None:
    """Feed what identifies the recording besides its trials (neurons, frame rate, channels) to ``hasher``."""
    hasher.update(np.ascontiguousarray(np.asarray(recording.neurons.ids).astype(str)).tobytes())
    hasher.update(repr((float(recording.frame_rate), tuple(recording.behavior_channels))).encode())


def prediction_groups(model, videos, behavior, eval_frames, autocast_ctx) -> Iterator[tuple[list[int], np.ndarray]]:
    """Eval-mode predictions for lists of trial tensors, batching trials of equal length: yields
    ``(trial indices, rates)`` one forward pass at a time, so that a caller can stop in between."""
    import torch

    order = sorted(range(len(videos)), key=lambda i: videos[i].shape[0])
    i = 0
    while i < len(order):
        t = videos[order[i]].shape[0]
        per_batch = max(1, eval_frames // max(t, 1))
        group = [order[i]]
        while i + len(group) < len(order) and len(group) < per_batch and videos[order[i + len(group)]].shape[0] == t:
            group.append(order[i + len(group)])
        with torch.no_grad(), autocast_ctx():
            rates = model(torch.stack([videos[k] for k in group]), torch.stack([behavior[k] for k in group]))
        yield group, rates.float().cpu().numpy()
        i += len(group)
