"""Untrusted .npy files: a suite2p folder from someone else must not be able to run code here.

Each payload below is a pickle whose loading would create a marker file; the tests check that
the marker never appears, whichever way the folder is read (library, CLI, napari reader), and
that the error names the file. Genuine suite2p-style object arrays must still load unchanged.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import os
import pickle
import subprocess
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pytest

from movie_reconstruction.errors import InputError
from movie_reconstruction.io.safe_npy import load_array, load_objects, load_record
from movie_reconstruction.io.suite2p_folder import read_suite2p_folder

from test_suite2p_folder import write_plane


class RunsOnLoad:
    """Pickles as ``call(*args)``: what an attacker puts into a .npy file."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker: Path) -> dict[str, RunsOnLoad]:
    return {
        "os.system": RunsOnLoad(os.system, f"touch '{marker}'"),
        "builtins.exec": RunsOnLoad(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": RunsOnLoad(subprocess.call, ["touch", str(marker)]),
    }


def plant(folder: Path, name: str, payload: RunsOnLoad) -> None:
    """Replace ``folder/name`` by a same-looking .npy file that carries ``payload``."""
    if name == "stat.npy":  # a ROI dict with one poisoned value, as stat.npy holds dicts
        value = np.array([{"ypix": np.arange(3), "xpix": np.arange(3), "lam": payload}], dtype=object)
    elif name in ("ops.npy", "settings.npy", "db.npy", "reg_outputs.npy", "detect_outputs.npy"):
        value = np.array({"fs": 30.0, "Ly": 20, "Lx": 30, "hook": payload}, dtype=object)
    else:  # iscell.npy, F.npy: an object array where numbers belong
        value = np.array([[payload, 1.0]], dtype=object)
    np.save(folder / name, value, allow_pickle=True)


@pytest.mark.parametrize("name", ["iscell.npy", "F.npy", "stat.npy", "settings.npy", "db.npy", "reg_outputs.npy"])
def test_poisoned_suite2p_file_is_refused_and_never_runs(tmp_path, name):
    write_plane(tmp_path / "suite2p" / "plane0")
    marker = tmp_path / "ran"
    plant(tmp_path / "suite2p" / "plane0", name, payloads(marker)["os.system"])
    with pytest.raises(InputError) as info:
        read_suite2p_folder(tmp_path / "suite2p")
    assert not marker.exists(), f"loading {name} ran the pickled command"
    assert str(info.value).startswith(str(tmp_path / "suite2p" / "plane0" / name))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "subprocess.call"])
def test_every_kind_of_payload_in_ops_npy_is_refused_by_name(tmp_path, kind):
    write_plane(tmp_path / "plane0", layout="0.x")
    marker = tmp_path / "ran"
    plant(tmp_path / "plane0", "ops.npy", payloads(marker)[kind])
    with pytest.raises(InputError, match=r"ops\.npy: refused: it holds a pickled reference to "):
        read_suite2p_folder(tmp_path / "plane0")
    assert not marker.exists()


def test_bare_pickle_named_like_an_array_is_refused(tmp_path):
    """np.load(allow_pickle=True) unpickles a file without the .npy header too."""
    write_plane(tmp_path / "plane0")
    marker = tmp_path / "ran"
    for name in ("iscell.npy", "stat.npy"):
        (tmp_path / "plane0" / name).write_bytes(pickle.dumps(payloads(marker)["os.system"]))
        with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: not a NumPy \.npy file"):
            read_suite2p_folder(tmp_path / "plane0")
        assert not marker.exists()
        write_plane(tmp_path / "fresh" / name)  # put a good file back for the next name
        (tmp_path / "fresh" / name / name).replace(tmp_path / "plane0" / name)


def test_napari_reader_refuses_a_poisoned_folder(tmp_path):
    from movie_reconstruction._napari_io import read_suite2p_output

    write_plane(tmp_path / "suite2p" / "plane0")
    marker = tmp_path / "ran"
    plant(tmp_path / "suite2p" / "plane0", "stat.npy", payloads(marker)["builtins.exec"])
    reader = read_suite2p_output(str(tmp_path / "suite2p"))
    assert reader is not None
    with pytest.raises(InputError, match=r"stat\.npy: refused"):
        reader(str(tmp_path / "suite2p"))
    assert not marker.exists()


def test_cli_build_refuses_a_poisoned_suite2p_folder(tmp_path, capsys):
    from movie_reconstruction.cli import EXIT_INPUT, main

    from test_manifest import write_session

    manifest = write_session(tmp_path / "session")
    write_plane(tmp_path / "s2p" / "suite2p" / "plane0")
    marker = tmp_path / "ran"
    plant(tmp_path / "s2p" / "suite2p" / "plane0", "iscell.npy", payloads(marker)["os.system"])
    code = main(["build", str(manifest), "-o", str(tmp_path / "out"), "--suite2p", str(tmp_path / "s2p" / "suite2p")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_INPUT
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and "iscell.npy" in err and "refused" in err


def _suite2p_like_values() -> np.ndarray:
    """What suite2p 0.x/1.x and edited settings put into stat.npy / ops.npy, in one object array."""
    roi = {
        "ypix": np.arange(5, dtype=np.int32), "xpix": np.arange(5, dtype=np.int64), "lam": np.ones(5, np.float32),
        "med": [2, 2], "npix": np.int64(5), "compact": np.float32(1.1), "radius": np.float64(2.5), "inmerge": 0,
        "soma_crop": np.ones(5, bool), "overlap": np.zeros(5, np.bool_), "skew": np.float64("nan"),
    }
    ops = {
        "fs": 30.0, "nplanes": 1, "save_path0": "/data/m1", "filelist": ["a.tif", "b.tif"], "badframes": None,
        "date_proc": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        "day": datetime.date(2024, 5, 1), "meanImg": np.random.default_rng(0).random((4, 5)).astype(np.float32),
        "yrange": (1, 3), "shape": slice(0, 4), "c": 1 + 2j, "flags": {1, 2}, "frozen": frozenset({"x"}),
        "ordered": collections.OrderedDict(a=1), "n": range(3), "bytes": b"\x00\x01", "path": Path("/data/m1"),
        "win_path": PureWindowsPath(r"C:\data\m1"), "posix": PurePosixPath("/x"), "nested": {"registration": {"nonrigid": True}},
        "structured": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i2")]), "labels": np.array(["cell", "npil"]),
        "stamp": np.datetime64("2024-05-01T12:30"), "flag": np.bool_(True), "name": np.str_("plane0"),
    }
    return np.array([roi, ops, [1, (2, 3)], None, "text", 4.5], dtype=object)


def assert_same(a, b, where="value"):
    """Equal in type and content, all the way down (NaN equals NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                assert_same(x, y, f"{where}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (float, np.floating)) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("protocol", [3, 4, 5])  # np.save writes 3; other writers may use a newer one
def test_genuine_object_arrays_load_unchanged(tmp_path, protocol):
    values = _suite2p_like_values()
    path = tmp_path / "stat.npy"
    write_npy(path, values, protocol)
    assert_same(load_objects(path), np.load(path, allow_pickle=True))
    record_path = tmp_path / "ops.npy"
    np.save(record_path, values[1], allow_pickle=True)
    assert_same(load_record(record_path), values[1])


def write_npy(path: Path, values: np.ndarray, protocol: int) -> None:
    """What np.save writes, with the pickle protocol chosen (NumPy 1.x used 3, NumPy 2 uses 4)."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(values))
        pickle.dump(values, fh, protocol=protocol)


def test_files_written_by_numpy_1_still_load(tmp_path):
    """NumPy 1.x pickles name numpy.core.multiarray where NumPy 2 writes numpy._core.multiarray."""
    path = tmp_path / "stat.npy"
    write_npy(path, _suite2p_like_values()[:1], protocol=3)  # protocol 3 names globals as plain text lines
    data = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data and b"numpy._core" not in data
    assert load_objects(path)[0]["lam"].tolist() == [1.0] * 5


def test_plain_arrays_load_without_pickles_and_objects_are_refused(tmp_path):
    np.save(tmp_path / "F.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(load_array(tmp_path / "F.npy"), np.arange(6).reshape(2, 3))
    np.save(tmp_path / "iscell.npy", np.array([[1.0, 0.9]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"iscell\.npy: refused: it holds pickled Python objects"):
        load_array(tmp_path / "iscell.npy")
    np.save(tmp_path / "stat.npy", np.arange(3))
    with pytest.raises(InputError, match="expected a saved dict"):
        load_record(tmp_path / "stat.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "F.npy").read_bytes()[:-5])
    with pytest.raises(InputError, match=r"cut\.npy: cannot read"):
        load_array(tmp_path / "cut.npy")
