"""Loading suite2p output folders (0.x ops.npy layout and 1.x settings/db/reg_outputs layout)."""

from __future__ import annotations

import numpy as np
import pytest

from movie_reconstruction.errors import InputError
from movie_reconstruction.io.suite2p_folder import read_suite2p_folder

LY, LX, FRAMES = 20, 30, 50


def _stat(centres):
    stat = []
    for y, x in centres:
        ypix, xpix = np.meshgrid(np.arange(y - 1, y + 2), np.arange(x - 1, x + 2), indexing="ij")
        lam = np.ones(9, np.float32)
        lam[4] = 3.0
        stat.append({"ypix": ypix.ravel(), "xpix": xpix.ravel(), "lam": lam, "npix": 9})
    return np.array(stat, dtype=object)


def write_plane(folder, *, layout="1.x", probs=(0.9, 0.2, 0.6), plane=0, nplanes=1, fs=8.0, drop=()):
    folder.mkdir(parents=True)
    n = len(probs)
    rng = np.random.default_rng(plane)
    F = rng.random((n, FRAMES)).astype(np.float32) + np.arange(n)[:, None]
    files = {
        "F.npy": F,
        "Fneu.npy": F * 0.5,
        "spks.npy": F * 2,
        "stat.npy": _stat([(5, 5), (10, 15), (15, 25)][:n]),
        "iscell.npy": np.stack([np.array(probs) > 0.5, probs], axis=1).astype(np.float64),
    }
    mean = rng.random((LY, LX)).astype(np.float32)
    max_proj = rng.random((LY - 2, LX - 2)).astype(np.float32)
    if layout == "1.x":
        files["settings.npy"] = np.array({"fs": fs, "tau": 1.0, "registration": {"nonrigid": False}}, dtype=object)
        files["db.npy"] = np.array({"Ly": LY, "Lx": LX, "nplanes": nplanes, "iplane": plane, "nframes": FRAMES}, dtype=object)
        files["reg_outputs.npy"] = np.array({"meanImg": mean, "yrange": [1, LY - 1], "xrange": [1, LX - 1]}, dtype=object)
        files["detect_outputs.npy"] = np.array({"max_proj": max_proj}, dtype=object)
    else:
        files["ops.npy"] = np.array(
            {"fs": fs, "Ly": LY, "Lx": LX, "nplanes": nplanes, "meanImg": mean, "max_proj": max_proj,
             "yrange": [1, LY - 1], "xrange": [1, LX - 1]},
            dtype=object,
        )
    for name, value in files.items():
        if name not in drop:
            np.save(folder / name, value, allow_pickle=True)
    return F, mean, max_proj


@pytest.mark.parametrize("layout", ["1.x", "0.x"])
def test_reads_one_plane_folder_with_threshold(tmp_path, layout):
    F, mean, max_proj = write_plane(tmp_path / "plane0", layout=layout)
    (traces,) = read_suite2p_folder(tmp_path / "plane0", cell_threshold=0.5)
    assert traces.roi_index.tolist() == [0, 2]
    np.testing.assert_allclose(traces.F, F[[0, 2]])
    np.testing.assert_allclose(traces.Fneu, F[[0, 2]] * 0.5)
    np.testing.assert_allclose(traces.spks, F[[0, 2]] * 2)
    np.testing.assert_allclose(traces.cell_probability, [0.9, 0.6], rtol=1e-6)
    assert traces.frame_rate == 8.0 and traces.frame_shape == (LY, LX)
    np.testing.assert_array_equal(traces.mean_image, mean)
    # the cropped max projection is put back where suite2p cut it from
    np.testing.assert_array_equal(traces.max_projection[1:-1, 1:-1], max_proj)
    labels = traces.labels()
    assert labels.shape == (LY, LX)
    assert labels[5, 5] == 1 and labels[15, 25] == 2 and labels[10, 15] == 0
    np.testing.assert_allclose(traces.centroids, [[5, 5], [15, 25]], atol=1e-5)

    assert read_suite2p_folder(tmp_path / "plane0", cell_threshold=0.1)[0].n_cells == 3
    # None: suite2p's (or the curator's) own iscell column
    assert read_suite2p_folder(tmp_path / "plane0", cell_threshold=None)[0].roi_index.tolist() == [0, 2]


def test_root_with_planes_gives_one_traces_per_plane_with_offsets(tmp_path):
    for plane in range(3):
        write_plane(tmp_path / "suite2p" / f"plane{plane}", plane=plane, nplanes=3, fs=5.0)
    for root in (tmp_path, tmp_path / "suite2p"):
        planes = read_suite2p_folder(root)
        assert [t.plane for t in planes] == [0, 1, 2]
        np.testing.assert_allclose([t.plane_offset for t in planes], [0, 1 / 15, 2 / 15])


@pytest.mark.parametrize("missing", ["F.npy", "Fneu.npy", "spks.npy", "stat.npy", "iscell.npy"])
def test_missing_file_is_a_clear_input_error(tmp_path, missing):
    write_plane(tmp_path / "plane0", drop=(missing,))
    with pytest.raises(InputError, match=missing.replace(".", r"\.")):
        read_suite2p_folder(tmp_path / "plane0")


def test_missing_settings_is_a_clear_input_error(tmp_path):
    write_plane(tmp_path / "plane0", drop=("settings.npy", "db.npy", "reg_outputs.npy", "detect_outputs.npy"))
    with pytest.raises(InputError, match="ops.npy"):
        read_suite2p_folder(tmp_path / "plane0")


def test_mismatched_lengths_are_input_errors(tmp_path):
    write_plane(tmp_path / "a" / "plane0")
    np.save(tmp_path / "a" / "plane0" / "iscell.npy", np.ones((2, 2)))
    with pytest.raises(InputError, match="iscell.npy has shape"):
        read_suite2p_folder(tmp_path / "a")

    write_plane(tmp_path / "b" / "plane0")
    np.save(tmp_path / "b" / "plane0" / "Fneu.npy", np.ones((3, FRAMES - 1), np.float32))
    with pytest.raises(InputError, match="Fneu.npy has shape"):
        read_suite2p_folder(tmp_path / "b")

    write_plane(tmp_path / "c" / "plane0")
    np.save(tmp_path / "c" / "plane0" / "stat.npy", _stat([(5, 5)]), allow_pickle=True)
    with pytest.raises(InputError, match="stat.npy has 1 ROIs"):
        read_suite2p_folder(tmp_path / "c")


def test_not_a_suite2p_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no suite2p output"):
        read_suite2p_folder(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        read_suite2p_folder(tmp_path / "nowhere")
