"""Device choice: CUDA, then MPS, then CPU, unless the user says otherwise.

Mixed precision is used only on CUDA, where it helps; on CPU and MPS we stay in float32.
"""

from __future__ import annotations

import contextlib

from .errors import InputError


def pick_device(preference: str | None = "auto"):
    """Return a ``torch.device``. ``preference`` is ``auto``/``None``, ``cpu``, ``cuda``, ``cuda:1`` or ``mps``."""
    import torch

    if preference in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise InputError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {preference!r} was asked for, but CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {preference!r} was asked for, but MPS is not available on this machine")
    return device


def autocast(device):
    """bf16/fp16 autocast on CUDA, a no-op elsewhere."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def describe(device) -> str:
    """A human-readable device name for logs and widgets."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device running out of memory (CUDA's error class, or MPS's message)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def release_device_memory(device) -> None:
    """Give cached blocks back after an out-of-memory error, so that a smaller retry can fit."""
    import gc

    import torch

    gc.collect()
    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.empty_cache()
