"""The installed package: light import, console script, napari manifest (from the wheel too)."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "suite2p", "napari", "qtpy", "PyQt6", "PySide6", "magicgui", "dask", "cellpose", "pynwb", "h5py")


def test_import_stays_light():
    code = (
        "import sys, json, movie_reconstruction, movie_reconstruction.align, movie_reconstruction.io.manifest, "
        "movie_reconstruction.io.sensorium, movie_reconstruction.io.tiff, movie_reconstruction.io.movies, "
        "movie_reconstruction.io.behaviour, movie_reconstruction.cli, movie_reconstruction._napari_io, "
        "movie_reconstruction.sync, movie_reconstruction.io.daq, movie_reconstruction.io.nwb; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_console_script_help():
    out = subprocess.run(["movie-recon", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "movie-recon" in out.stdout
    out = subprocess.run(["movie-recon"], capture_output=True, text=True)
    assert out.returncode == 2


def test_npe2_finds_and_validates_the_manifest():
    from npe2 import PluginManager, PluginManifest

    manifest = PluginManifest.from_distribution("napari-movie-reconstruction")
    assert manifest.name == "napari-movie-reconstruction"
    assert manifest == PluginManifest.from_file(REPO / "napari.yaml")
    pm = PluginManager()
    pm.discover()
    assert pm.get_manifest("napari-movie-reconstruction").display_name == "Movie Reconstruction"
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-movie-reconstruction"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_wheel_carries_the_manifest(tmp_path):
    pytest.importorskip("hatchling")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert zf.read("movie_reconstruction/napari.yaml") == (REPO / "napari.yaml").read_bytes()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "movie_reconstruction:napari.yaml" in entry_points
    assert "movie-recon = movie_reconstruction.cli:main" in entry_points


def test_sensorium_reader_contribution(tiny_twin_dataset, tmp_path):
    from movie_reconstruction._napari_io import read_sensorium_folder

    assert read_sensorium_folder(str(tmp_path)) is None
    reader = read_sensorium_folder(str(tiny_twin_dataset))
    layers = reader(str(tiny_twin_dataset))
    assert [kind for _data, _kwargs, kind in layers] == ["image", "image", "points"]  # two trials and their captions
    assert list(layers[2][1]["features"]["text"]) == ["trial 5 · stimulus", "trial 6 · stimulus"]
    data, kwargs, kind = layers[0]
    assert kind == "image" and data.shape == (60, 36, 64) and kwargs["name"] == "trial 5 · stimulus"
