"""The reconstruction's response loss; a leaf module (it works on torch tensors without importing torch)."""

from __future__ import annotations


def poisson_nll(rates, responses, eps: float = 1e-6):
    """Per-trial mean Poisson negative log-likelihood (without the constant log y! term): ``(B,)``."""
    return (rates - responses * (rates + eps).log()).mean(dim=(1, 2))
