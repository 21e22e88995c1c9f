"""suite2p's settings for one run: its defaults with our choices and the user's overrides, the
torch device, and the fallbacks a small frame needs."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from ..errors import InputError


def suite2p_settings(
    *,
    fs: float = 10.0,
    tau: float = 1.0,
    diameter: float | Sequence[float] = 12.0,
    threshold_scaling: float = 1.0,
    do_registration: bool = True,
    nonrigid: bool | None = None,
    device: str = "cpu",
    overrides: dict | None = None,
) -> dict:
    """A complete suite2p 1.x settings dict: ``suite2p.default_settings()`` changed in place.

    ``overrides`` is a nested dict with the same layout as suite2p's settings (e.g.
    ``{"detection": {"sparsery_settings": {"highpass_neuropil": 10}}}``); each leaf replaces
    the default, and a key suite2p does not know raises :class:`InputError` instead of being
    silently dropped.
    """
    import suite2p

    settings = suite2p.default_settings()
    settings["fs"] = float(fs)
    settings["tau"] = float(tau)
    diameters = np.atleast_1d(np.asarray(diameter, dtype=float))
    if diameters.size == 1:
        diameters = np.repeat(diameters, 2)
    if diameters.size != 2 or np.any(diameters <= 0):
        raise InputError(f"diameter must be one positive number or (dy, dx), got {diameter!r}")
    settings["diameter"] = [float(diameters[0]), float(diameters[1])]
    settings["detection"]["threshold_scaling"] = float(threshold_scaling)
    settings["run"]["do_registration"] = int(bool(do_registration))
    if nonrigid is not None:
        settings["registration"]["nonrigid"] = bool(nonrigid)
    settings["torch_device"] = str(device)
    if fs <= 0 or tau <= 0:
        raise InputError(f"fs and tau must be positive, got fs={fs!r}, tau={tau!r}")
    if overrides:
        _merge_known(settings, overrides, "settings")
    return settings


def small_fov_overrides(diameter: float = 6.0) -> dict:
    """Settings for a small, low-resolution field of view (tens of pixels across, cells of ``diameter`` px).

    suite2p's defaults assume ~512x512 frames with ~12-px cells. On a frame of a few dozen
    pixels its non-rigid registration blocks (128x128) do not fit, the ring of 350 neuropil
    pixels covers a large part of the frame, and sparsery's automatic estimate of the cell
    size can go wrong (it estimated 24 px for 5-px cells on a 40x48 test stack), so we set the
    spatial scale from ``diameter``: suite2p's scales 1, 2, 3, 4 mean cells of ~6, 12, 24, 48 px.
    Pass the result as ``settings=`` to :func:`extract_traces`; see docs/extraction.md.
    """
    scale = int(np.clip(np.round(np.log2(max(float(diameter), 1e-6) / 3.0)), 1, 4))
    return {
        "registration": {"nonrigid": False},
        "detection": {"sparsery_settings": {"spatial_scale": scale}},
        "extraction": {"min_neuropil_pixels": 100},
    }


def _merge_known(target: dict, changes: dict, where: str) -> None:
    for key, value in changes.items():
        if key not in target:
            known = ", ".join(sorted(map(str, target)))
            raise InputError(f"unknown suite2p setting {where}[{key!r}]; known keys: {known}")
        if isinstance(target[key], dict) and isinstance(value, dict):
            _merge_known(target[key], value, f"{where}[{key!r}]")
        else:
            target[key] = copy.deepcopy(value)


def pick_torch_device(preference: str | None):
    """CUDA when present (or asked for), else CPU: suite2p's own default is CUDA, which fails on CPU
    machines, and suite2p is not made for MPS, so "auto" does not pick it."""
    import torch

    from ..device import pick_device

    device = pick_device(preference)
    if preference in (None, "", "auto") and device.type == "mps":
        return torch.device("cpu")
    return device


def explicitly_set(settings: dict | None, section: str, key: str) -> bool:
    return bool(settings) and isinstance(settings.get(section), dict) and key in settings[section]


def fit_settings_to_frame(settings: dict, frame_shape: tuple[int, int], explicit_nonrigid: bool) -> list[str]:
    """suite2p 1.1's non-rigid registration fails when the frame holds a single block along
    either axis (a 128-px block on a frame of 128 px or less); fall back to rigid, and say so."""
    from suite2p.registration.nonrigid import make_blocks

    notes = []
    reg = settings["registration"]
    block = tuple(int(b) for b in reg["block_size"])
    if reg["nonrigid"]:
        nblocks = make_blocks(frame_shape[0], frame_shape[1], block_size=block)[2]
        if min(nblocks) < 2:
            if explicit_nonrigid:
                raise InputError(
                    f"non-rigid registration needs at least 2 blocks per axis, and {block}-px blocks on a "
                    f"{frame_shape} frame give {tuple(nblocks)}; set registration.block_size smaller or use nonrigid=False"
                )
            reg["nonrigid"] = False
            notes.append(
                f"frame {frame_shape} fits only {tuple(nblocks)} non-rigid blocks of {block} px: using rigid registration"
            )
    return notes
