"""Raw stacks: TIFF, BigTIFF, multi-file TIFF and HDF5, on the real recordings in ../shared."""

import hashlib

import numpy as np
import pytest
import tifffile

from movie_reconstruction import InputError
from movie_reconstruction.io.hdf5 import read_h5_stack
from movie_reconstruction.io.tiff import read_raw_stack


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def caiman_tif(shared_data):
    return shared_data / "twop" / "calcium_imaging.tif"


def test_real_tiff_is_lazy_and_complete(caiman_tif):
    before = digest(caiman_tif)
    stack = read_raw_stack(caiman_tif)
    assert stack.data.shape == (1000, 1, 1, 30, 40)
    assert stack.data.dtype == np.uint16
    assert stack.n_planes == 1 and stack.n_channels == 1
    assert "frame rate" in stack.missing_metadata  # not a ScanImage file: say what is absent
    assert not stack.scanimage
    movie = stack.movie()
    expected = tifffile.imread(caiman_tif)
    np.testing.assert_array_equal(movie[500:510].compute(), expected[500:510])
    assert movie.numblocks[0] > 1  # read in chunks, not all at once
    assert digest(caiman_tif) == before


def test_multifile_and_bigtiff(caiman_tif, tmp_path):
    frames = tifffile.imread(caiman_tif)
    folder = tmp_path / "session"
    folder.mkdir()
    # natural sort: file_2 comes before file_10
    for name, part in [("file_2.tif", frames[:300]), ("file_10.tif", frames[300:])]:
        tifffile.imwrite(folder / name, part, bigtiff=True)
    stack = read_raw_stack(folder, frame_rate=15.0)
    assert [p.name for p in stack.paths] == ["file_2.tif", "file_10.tif"]
    assert stack.frame_rate == 15.0 and "frame rate" not in stack.missing_metadata
    np.testing.assert_array_equal(stack.movie().compute(), frames)


def test_interleaved_planes(caiman_tif, tmp_path):
    frames = tifffile.imread(caiman_tif)[:200]
    path = tmp_path / "two_planes.tif"
    tifffile.imwrite(path, frames)
    stack = read_raw_stack(path, n_planes=2)
    assert stack.data.shape == (100, 2, 1, 30, 40)
    np.testing.assert_array_equal(stack.movie(plane=1).compute(), frames[1::2])
    with pytest.raises(InputError, match="not a whole number of frames"):
        read_raw_stack(path, n_planes=3)


def test_truncated_tiff_is_refused(caiman_tif, tmp_path):
    data = caiman_tif.read_bytes()
    cut = tmp_path / "truncated.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        read_raw_stack(cut)
    assert "truncated.tif" in str(info.value)
    assert "truncated" in info.value.problem or "unreadable" in info.value.problem


def test_not_a_tiff_and_empty_folder(tmp_path):
    bogus = tmp_path / "bogus.tif"
    bogus.write_bytes(b"this is not a tiff")
    with pytest.raises(InputError, match="bogus.tif: unreadable TIFF"):
        read_raw_stack(bogus)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: folder contains no TIFF files"):
        read_raw_stack(empty)
    with pytest.raises(InputError, match="file not found"):
        read_raw_stack(tmp_path / "missing.tif")


def test_allen_hdf5_stacks(shared_data):
    movie = read_h5_stack(shared_data / "twop" / "allen_movie_100.h5", frame_rate=30.0)
    assert movie.movie().shape == (100, 100, 100) and movie.metadata["hdf5_key"] == "data"
    registration = read_h5_stack(shared_data / "twop" / "allen_registration_test.h5")
    assert registration.metadata["hdf5_key"] == "input_frames"
    frames = registration.movie()[:5].compute()
    assert frames.shape == (5, 100, 100) and frames.std() > 0
    with pytest.raises(InputError, match="no dataset 'nope'"):
        read_h5_stack(shared_data / "twop" / "allen_movie_100.h5", key="nope")
