"""npe2 reader contributions. Plain functions returning layer-data tuples: no napari import."""

from __future__ import annotations

from pathlib import Path


def _is_sensorium_folder(path: Path) -> bool:
    return path.is_dir() and (path / "meta" / "trials" / "tiers.npy").is_file() and (path / "data" / "videos").is_dir()


def read_sensorium_folder(path):
    """Reader for a Sensorium 2023 mouse folder: shows each test trial's stimulus (or the first trial)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if not _is_sensorium_folder(path):
        return None

    def reader(_path):
        from .io.sensorium import read_sensorium

        recording = read_sensorium(path)
        picks = list(recording.indices("test")[:4]) or [0]
        layers = []
        for k in picks:
            trial = recording.trial(int(k))
            layers.append(
                (
                    trial.video,
                    {
                        "name": f"trial {trial.trial_id} · stimulus",
                        "colormap": "gray",
                        "contrast_limits": (0, 255),
                        "metadata": {"tier": trial.tier, "n_neurons": recording.n_neurons, "source": str(path)},
                    },
                    "image",
                )
            )
        return layers

    return reader
