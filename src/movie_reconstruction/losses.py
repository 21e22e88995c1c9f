"""The loss table: how far predicted rates are from recorded responses, chosen by name.

Training (``TrainConfig.loss``) and reconstruction (``ReconstructionConfig.loss``) look their
loss up here, so both use the same definition. A loss is a function
``(rates, responses) -> (B,)``: ``rates`` and ``responses`` are ``(B, neurons, T)`` tensors,
and the result is each sample's mean over neurons and frames (training averages it over the
batch; reconstruction sums it over trials for the pixel gradient and reports its mean).

Built in: ``poisson`` (the default; the negative log-likelihood of Poisson counts, without the
constant ``log y!`` term) and ``mse`` (mean squared error). Add one with :func:`register_loss`
(from a plugin module for the command line: :mod:`movie_reconstruction.plugins`).

No torch import here: the functions only call tensor methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_LOSS = "poisson"
# Keeps log() finite where a rate is exactly zero. Reconstruction always used 1e-6; training
# used 1e-8 before it shared this table, which moved a short training run's losses and weights
# by about 1e-6 (relative), the measured size of the change (docs/architecture.md).
POISSON_EPS = 1e-6


def poisson_nll(rates, responses, eps: float = POISSON_EPS):
    """Per-sample mean Poisson negative log-likelihood (without the constant log y! term): ``(B,)``."""
    return (rates - responses * (rates + eps).log()).mean(dim=(1, 2))


def mean_squared_error(rates, responses):
    """Per-sample mean squared error between rates and responses: ``(B,)``."""
    return (rates - responses).pow(2).mean(dim=(1, 2))


@dataclass(frozen=True)
class Loss:
    """A named loss: ``loss(rates, responses) -> (B,)``."""

    name: str
    function: Callable
    description: str = ""

    def __call__(self, rates, responses):
        return self.function(rates, responses)


_LOSSES: dict[str, Loss] = {
    "poisson": Loss("poisson", poisson_nll, "Poisson negative log-likelihood (spike counts; the default)"),
    "mse": Loss("mse", mean_squared_error, "mean squared error (fluorescence-like responses)"),
}


def register_loss(name: str, function: Callable, *, description: str = "", replace: bool = False) -> Loss:
    """Add ``function`` to the table as ``name``. Registering a name again with another function
    raises :class:`ValueError` unless ``replace`` (so two plugins cannot silently disagree)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a loss name must be a non-empty string, got {name!r}")
    if not callable(function):
        raise TypeError(f"the loss {name!r} must be callable as function(rates, responses)")
    known = _LOSSES.get(name)
    if known is not None and known.function is not function and not replace:
        raise ValueError(f"a loss named {name!r} is already registered; pass replace=True to replace it")
    _LOSSES[name] = Loss(name, function, description)
    return _LOSSES[name]


def get_loss(name: str) -> Loss:
    """The loss registered as ``name``; :class:`ValueError` naming the known ones otherwise.
    Modules named in ``MOVIE_RECON_PLUGINS`` are imported before giving up."""
    from .plugins import look_up

    return look_up(_LOSSES, name, "loss", "a plugin module can add one: docs/architecture.md")


def loss_names() -> tuple[str, ...]:
    """The registered loss names, built-in first."""
    return tuple(_LOSSES)
