"""Encoder kinds: which code builds an encoder, keyed by the ``kind`` in its config.

A kind is registered with :func:`register_encoder` as a *factory*: a class (or any object)
with two callables,

- ``build(spec: EncoderSpec) -> encoder``: a new, untrained encoder for a recording (training);
- ``from_config(config: dict, *, neuron_ids) -> encoder``: the untrained encoder that a
  checkpoint's ``config`` describes (its weights are loaded into it afterwards).

The encoder's ``config`` must hold ``"kind": <the registered name>``; checkpoints store it and
:func:`~movie_reconstruction.model.load_encoder` rebuilds the encoder through that kind.
Checkpoints written before kinds existed have none and load as :data:`BUILTIN_KIND`.

The built-in kind (:class:`~movie_reconstruction.model.Encoder`) is registered on first
use, so that importing this module needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EncoderConfig, Normalization

BUILTIN_KIND = "dynamic-cnn"
_FACTORY_MEMBERS = ("build", "from_config")
_KINDS: dict[str, object] = {}


@dataclass(frozen=True)
class EncoderSpec:
    """What a new encoder for one recording is built from (see :func:`register_encoder`)."""

    n_neurons: int
    frame_shape: tuple[int, int]
    behavior_channels: tuple[str, ...]
    neuron_ids: np.ndarray
    normalization: Normalization  # input statistics of the training trials
    mean_response: np.ndarray  # (neurons,) each neuron's mean response on the training trials
    neuron_positions: np.ndarray | None = None  # (neurons, 2 or 3) ROI positions, when used
    # The built-in kind's architecture for the chosen preset; other kinds may read ``preset``
    # instead, or ignore both.
    architecture: EncoderConfig = EncoderConfig()
    preset: str | None = None
    # A pretrained core's tensors (``init_core``); a kind that cannot start from one raises ValueError.
    pretrained_core: dict | None = None


def register_encoder(kind: str, factory=None, *, replace: bool = False):
    """Register ``factory`` (see the module docstring) as the encoder kind ``kind``.

    Usable as a decorator: ``@register_encoder("my-kind")`` above a class. Registering a kind
    again with another factory raises :class:`ValueError` unless ``replace``. Returns the factory.
    """
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"an encoder kind must be a non-empty string, got {kind!r}")
    if factory is None:
        return lambda cls: register_encoder(kind, cls, replace=replace)
    lacking = [name for name in _FACTORY_MEMBERS if not callable(getattr(factory, name, None))]
    if lacking:
        raise TypeError(f"the factory of encoder kind {kind!r} has no callable {' or '.join(lacking)} "
                        "(it needs build(spec) and from_config(config, neuron_ids=...))")
    _register_builtin()
    known = _KINDS.get(kind)
    if known is not None and known is not factory and not replace:
        raise ValueError(f"encoder kind {kind!r} is already registered; pass replace=True to replace it")
    _KINDS[kind] = factory
    return factory


def encoder_factory(kind: str):
    """The factory registered as ``kind``; :class:`ValueError` naming the known kinds otherwise.
    Modules named in ``MOVIE_RECON_PLUGINS`` are imported before giving up."""
    from ..plugins import look_up

    _register_builtin()
    return look_up(_KINDS, kind, "encoder kind",
                   "register it with register_encoder in a plugin module: docs/architecture.md")


def encoder_kinds() -> tuple[str, ...]:
    """The registered kinds, the built-in one first."""
    _register_builtin()
    return tuple(_KINDS)


def kind_of(config: dict) -> str:
    """The kind an encoder config names; configs written before kinds existed are the built-in one."""
    return str(config.get("kind", BUILTIN_KIND))


def _register_builtin() -> None:
    if BUILTIN_KIND not in _KINDS:
        from .encoder import Encoder

        _KINDS[BUILTIN_KIND] = Encoder
