"""Shared fixtures. Tests that need ../shared fail in CI when it is missing, and skip elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOVIE_RECON_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Qt widgets are tested headless; napari's OpenGL canvas gets its context from the private Xvfb
# that tests/test_widgets.py starts when there is no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"shared test material not found at {path} (set MOVIE_RECON_SHARED to its folder)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real two-photon, CASCADE, movie and image files."""
    return _shared_path("data")


@pytest.fixture(scope="session")
def twin_dir() -> Path:
    """``../shared/twin``: the digital-twin checkpoint and its dataset script."""
    return _shared_path("twin")


@pytest.fixture(scope="session")
def tiny_twin_dataset(tmp_path_factory, twin_dir, shared_data) -> Path:
    """A small Sensorium-layout dataset written by the twin's own script (with noise-free rates)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("twin") / "mouse"
    cmd = [
        sys.executable, str(twin_dir / "make_twin_dataset.py"),
        "--checkpoint", str(twin_dir / "sensorium_sota_model.pth"),
        "--train-media", str(shared_data / "movies" / "bikes.mp4"), str(shared_data / "images" / "kodim03.png"),
        "--test-media", str(shared_data / "movies" / "cockatoo.mp4"),
        "--out", str(out), "--trials", "5", "--test-trials", "2", "--frames", "60",
        "--neurons", "120", "--seed", "3", "--save-rates",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return out
