"""The artifact index (issue 24): grid texture measured against known amounts."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from movie_reconstruction.errors import InputError
from movie_reconstruction.reconstruct.artifacts import artifact_index, power_shares, spatial_power
from movie_reconstruction.reconstruct.metrics import score_movie

T, H, W, DROP = 40, 24, 32, 30


def _smooth(seed=0, sigma=2.0):
    raw = np.random.default_rng(seed).normal(size=(T, H, W))
    movie = gaussian_filter(raw, sigma=(1.0, sigma, sigma), mode="wrap")
    return movie / movie.std() * 30 + 128


def _checkerboard(amplitude):
    rows, cols = np.indices((H, W))
    return amplitude * np.where((rows + cols) % 2, 1.0, -1.0)[None].repeat(T, 0)


def _energy(movie):
    """Spatial energy of the scored frames with each frame's mean removed (Parseval's side of the spectrum)."""
    frames = movie[DROP:] - movie[DROP:].mean(axis=(1, 2), keepdims=True)
    return float((frames**2).sum())


def test_smooth_movie_scores_one_and_no_nyquist_power():
    smooth = _smooth()
    same = artifact_index(smooth, smooth)
    assert same.artifact_index == pytest.approx(1.0)
    assert same.nyquist_share < 1e-3 and same.stimulus_nyquist_share < 1e-3
    # a second smooth movie of the same texture: as fine-grained as the stimulus, give or take
    other = artifact_index(_smooth(seed=1), _smooth(seed=2, sigma=1.0))
    assert other.nyquist_share < 1e-2 and other.artifact_index < 1.0


def test_checkerboard_raises_both_numbers_by_the_known_amount():
    # a stimulus with some fine structure, so that its high-frequency share is not ~0
    truth = _smooth(sigma=0.7)
    smooth = truth.copy()
    checker = _checkerboard(1.0)
    checker *= np.sqrt(_energy(smooth) / _energy(checker))  # as much energy as the movie: half the power
    scores = artifact_index(smooth + checker, truth)
    e_movie, e_checker = _energy(smooth), _energy(checker)
    clean_high, clean_nyquist = power_shares(spatial_power(smooth, drop_frames=DROP))
    # the checkerboard sits at (0.5, 0.5) cycles/px: above the cut-off and in the period-2 rows
    expected_high = (clean_high * e_movie + e_checker) / (e_movie + e_checker)
    expected_nyquist = (clean_nyquist * e_movie + e_checker) / (e_movie + e_checker)
    assert scores.nyquist_share == pytest.approx(expected_nyquist, abs=0.01)
    assert scores.nyquist_share == pytest.approx(0.5, abs=0.02)
    assert scores.high_frequency_share == pytest.approx(expected_high, abs=0.01)
    assert scores.artifact_index == pytest.approx(expected_high / clean_high, rel=0.03)
    assert scores.stimulus_nyquist_share == pytest.approx(clean_nyquist)
    assert artifact_index(smooth, truth).artifact_index == pytest.approx(1.0)


def test_odd_evaluation_box_is_cropped_so_period_two_is_exact():
    alpha = np.zeros((H, W), np.float32)
    alpha[3:14, 5:20] = 1.0  # an 11 x 15 box
    stripes = np.zeros((T, H, W)) + 100 * (np.arange(W) % 2)[None, None]
    assert artifact_index(128 + _checkerboard(20.0), _smooth(), alpha).nyquist_share == pytest.approx(1.0)
    assert artifact_index(stripes, _smooth(), alpha).nyquist_share == pytest.approx(1.0)
    with pytest.raises(InputError):
        artifact_index(stripes, _smooth(), np.zeros((H, W)))


def test_score_movie_reports_the_index():
    truth = _smooth(sigma=0.7)
    scores = score_movie(truth + _checkerboard(30.0), truth)
    assert scores.artifacts.artifact_index > 1.5 and scores.artifacts.nyquist_share > 0.1
    assert set(scores.artifacts.to_dict()) >= {"artifact_index", "nyquist_share", "stimulus_nyquist_share"}
