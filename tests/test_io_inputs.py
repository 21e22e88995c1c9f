"""Stimulus movies and behaviour tables."""

import numpy as np
import pytest
import tifffile

from movie_reconstruction import InputError
from movie_reconstruction.io.behaviour import read_behaviour
from movie_reconstruction.io.movies import read_stimulus_movie


def test_real_video_to_grey_sensorium_size(shared_data):
    movie = read_stimulus_movie(shared_data / "movies" / "bikes.mp4", max_frames=40)
    assert movie.frames.shape == (40, 36, 64) and movie.frames.dtype == np.float32
    assert movie.frame_rate == pytest.approx(25.0)
    assert 0 <= movie.frames.min() and movie.frames.max() <= 255 and movie.frames.std() > 10
    # consecutive frames of a real video are similar; a scrambled decode would not be
    assert np.corrcoef(movie.frames[10].ravel(), movie.frames[11].ravel())[0, 1] > 0.8
    other = read_stimulus_movie(shared_data / "movies" / "realshort.mp4", size=(18, 32), fit="stretch")
    assert other.frames.shape[1:] == (18, 32)


def test_tiff_and_npy_movies_agree(shared_data, tmp_path):
    movie = read_stimulus_movie(shared_data / "movies" / "carphone_pristine.mp4", max_frames=12, size=(144, 176), fit="stretch")
    as_uint8 = np.round(movie.frames).astype(np.uint8)
    tifffile.imwrite(tmp_path / "movie.tif", as_uint8)
    np.save(tmp_path / "movie.npy", as_uint8.astype(np.float32) / 255.0)  # [0, 1] floats are scaled to 0..255
    from_tif = read_stimulus_movie(tmp_path / "movie.tif")
    from_npy = read_stimulus_movie(tmp_path / "movie.npy")
    assert from_tif.frames.shape == (12, 36, 64)
    np.testing.assert_allclose(from_tif.frames, from_npy.frames, atol=1e-3)
    # the 176x144 source is centre-cropped to 16:9, not stretched
    assert from_tif.frames.std() > 5


def test_bad_movies(tmp_path):
    with pytest.raises(InputError, match="unknown movie format"):
        (tmp_path / "movie.gif").write_bytes(b"GIF89a")
        read_stimulus_movie(tmp_path / "movie.gif")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="broken.mp4"):
        read_stimulus_movie(tmp_path / "broken.mp4")
    np.save(tmp_path / "nan.npy", np.full((3, 36, 64), np.nan, np.float32))
    with pytest.raises(InputError, match="nan.npy: movie frames contains .* NaN"):
        read_stimulus_movie(tmp_path / "nan.npy")


def test_behaviour_csv_with_aliases_and_own_clock(tmp_path):
    path = tmp_path / "running.csv"
    t = np.arange(0, 10, 0.01)
    np.savetxt(path, np.c_[t, np.sin(t), t * 0 + 3], delimiter=",", header="Timestamp,speed,pupil_area", comments="")
    table = read_behaviour(path)
    assert set(table.channels) == {"running", "pupil"}
    np.testing.assert_allclose(table.times, t)
    np.testing.assert_allclose(table.channels["running"], np.sin(t))


def test_behaviour_unknown_column_is_named(tmp_path):
    path = tmp_path / "behaviour.csv"
    path.write_text("time,running,lick_rate\n0,1,0\n0.1,2,1\n")
    with pytest.raises(InputError, match=r"behaviour.csv: unknown behaviour column 'lick_rate'"):
        read_behaviour(path)
    table = read_behaviour(path, columns={"lick_rate": None})
    assert list(table.channels) == ["running"]
    path.write_text("running,pupil\n1,2\n2,3\n")
    with pytest.raises(InputError, match="no time column"):
        read_behaviour(path)


def test_behaviour_npy_and_npz(tmp_path):
    data = np.zeros(5, dtype=[("time", "f8"), ("pupil_x", "f4"), ("pupil_y", "f4")])
    data["time"] = np.arange(5) * 0.2
    np.save(tmp_path / "eye.npy", data)
    assert set(read_behaviour(tmp_path / "eye.npy").channels) == {"pupil_x", "pupil_y"}
    np.savez(tmp_path / "run.npz", t=np.arange(5.0), running=np.ones(5))
    assert list(read_behaviour(tmp_path / "run.npz").channels) == ["running"]
    np.save(tmp_path / "plain.npy", np.c_[np.arange(5.0), np.ones(5)])
    with pytest.raises(InputError, match="needs column names"):
        read_behaviour(tmp_path / "plain.npy")
    table = read_behaviour(tmp_path / "plain.npy", names=["time", "running"])
    assert table.channels["running"].shape == (5,)
