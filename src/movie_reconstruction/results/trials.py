"""The reconstructed trials of a results folder: ``reconstructions/trial_{id}/``, each written at
once (its folder appears complete or not at all) and read back as a :class:`TrialResult`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _atomic
from .._json import jsonable
from ..errors import InputError
from .layout import RECONSTRUCTIONS, TRIAL_JSON, parse_json, read_json, utc_timestamp


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


class TrialFiles:
    """The trial folders of a :class:`~movie_reconstruction.results.ResultsFolder` (mixed into it)."""

    path: Path

    def trial_dir(self, trial_id: int) -> Path:
        return self.path / RECONSTRUCTIONS / f"trial_{int(trial_id):04d}"

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
            meta = parse_json(data, meta_path)
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
            "written": utc_timestamp(),
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
        return trial_from(folder, meta)


def trial_from(folder: Path, meta: dict) -> TrialResult:
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


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    if not path.is_file():
        raise InputError("file not found", path)
    try:
        return np.asarray(tifffile.imread(path), np.float32)
    except Exception as exc:  # tifffile raises several types for broken files
        raise InputError(f"not a readable TIFF ({exc})", path) from None
