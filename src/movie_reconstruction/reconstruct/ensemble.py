"""The ensemble's movie from its members' movies: average, 3D blur, clip; a leaf module.

One function for every loop that runs members separately (:func:`~.optimiser.reconstruct`,
the distributed per-member tasks' :func:`movie_reconstruction.distributed.combine_members`
and the paper's windowed baseline in ``benchmarks/windowed_baseline.py``), so that their
movies are combined the same way.
"""

from __future__ import annotations

import numpy as np


def blur_movies(movies: np.ndarray, sigma: float | None) -> np.ndarray:
    """3D Gaussian blur over (frames, rows, columns) of each movie in ``(..., T, H, W)``."""
    if not sigma:
        return movies
    from scipy.ndimage import gaussian_filter

    flat = movies.reshape((-1,) + movies.shape[-3:])
    out = np.stack([gaussian_filter(m, sigma=sigma, mode="nearest") for m in flat])
    return out.reshape(movies.shape).astype(np.float32)


def combine_member_movies(member_movies, blur_sigma: float | None, pixel_range: tuple[float, float]) -> np.ndarray:
    """The members' mean movie(s), 3D-blurred with ``blur_sigma`` and clipped to ``pixel_range``, as float32.

    ``member_movies`` is ``(members, ..., T, H, W)``: an array, or a sequence of the members' arrays.
    """
    stacked = np.stack([np.asarray(m, np.float32) for m in member_movies])
    return np.clip(blur_movies(stacked.mean(0), blur_sigma), *pixel_range).astype(np.float32)
