"""The result of a reconstruction (:class:`Reconstruction`), saved and loaded atomically; a leaf module."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .config import ReconstructionConfig


@dataclass
class Reconstruction:
    """The result of :func:`~.optimiser.reconstruct`.

    ``movies`` is ``(trials, T, H, W)`` float32 in 0..255: the ensemble average, blurred if
    asked. ``member_movies`` is ``(members, trials, T, H, W)`` before averaging and blurring
    (one member when gradients were averaged). ``loss_history`` is ``(steps,)`` mean loss (``config.loss``; Poisson
    NLL by default) per neuron and frame over trials and members; ``member_loss_history`` is
    ``(members, steps)``. ``mask`` is the transparency mask (alpha, ``(H, W)``) that was used.
    """

    movies: np.ndarray
    member_movies: np.ndarray
    loss_history: np.ndarray
    member_loss_history: np.ndarray
    config: Any  # ReconstructionConfig, or the settings of another loop (the benchmarks' windowed baseline)
    mask: np.ndarray
    trial_ids: np.ndarray
    iterations_run: int
    stopped_early: bool
    elapsed_s: float
    device: str
    extra: dict = field(default_factory=dict)

    @property
    def movie(self) -> np.ndarray:
        """The reconstructed movie ``(T, H, W)`` of a single-trial reconstruction."""
        if self.movies.shape[0] != 1:
            raise ValueError(f"this reconstruction holds {self.movies.shape[0]} trials; index .movies instead")
        return self.movies[0]

    def save(self, folder: str | Path) -> Path:
        """Write ``movies.npy``, ``member_movies.npy``, ``loss.npy``, ``mask.npy`` and
        ``reconstruction.json`` into ``folder`` atomically."""
        from .._atomic import atomic_path

        folder = Path(folder)
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            np.save(tmp / "movies.npy", self.movies.astype(np.float32))
            np.save(tmp / "member_movies.npy", self.member_movies.astype(np.float32))
            np.save(tmp / "loss.npy", self.member_loss_history.astype(np.float32))
            np.save(tmp / "mask.npy", self.mask.astype(np.float32))
            meta = {
                "config": self.config.to_dict(),
                "trial_ids": [int(i) for i in self.trial_ids],
                "iterations_run": self.iterations_run,
                "stopped_early": self.stopped_early,
                "elapsed_s": self.elapsed_s,
                "device": self.device,
                "extra": self.extra,
            }
            (tmp / "reconstruction.json").write_text(json.dumps(meta, indent=1, default=_json_default))
        return folder

    @classmethod
    def load(cls, folder: str | Path, config_type: type = ReconstructionConfig) -> Reconstruction:
        """Read a folder written by :meth:`save`; ``config_type`` is the settings class of the loop
        that made it (a :class:`ReconstructionConfig` unless another loop, such as a benchmark's, wrote it)."""
        folder = Path(folder)
        meta_path = folder / "reconstruction.json"
        if not meta_path.exists():
            raise InputError("not a saved reconstruction (reconstruction.json is missing)", folder)
        meta = json.loads(meta_path.read_text())
        config = dict(meta["config"])
        config["pixel_range"] = tuple(config["pixel_range"])
        losses = np.load(folder / "loss.npy")
        return cls(
            movies=np.load(folder / "movies.npy"),
            member_movies=np.load(folder / "member_movies.npy"),
            loss_history=losses.mean(0),
            member_loss_history=losses,
            config=config_type(**config),
            mask=np.load(folder / "mask.npy"),
            trial_ids=np.asarray(meta["trial_ids"]),
            iterations_run=int(meta["iterations_run"]),
            stopped_early=bool(meta["stopped_early"]),
            elapsed_s=float(meta["elapsed_s"]),
            device=str(meta["device"]),
            extra=meta.get("extra", {}),
        )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
