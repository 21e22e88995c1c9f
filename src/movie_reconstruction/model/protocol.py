"""What training, checkpoints and reconstruction need of an encoder, stated once.

An encoder is a ``torch.nn.Module`` with the members of :class:`EncoderModel`. The optional
members below have defaults, and this module is the one place that asks whether a model has
them (the rest of the package calls the functions here):

- ``prepare(video, behavior, changing) -> callable``: a forward pass ``video -> rates`` for
  one fixed behaviour and for movies that differ from ``video`` only where the boolean
  ``(H, W)`` map ``changing`` is true (reconstruction reuses what stays fixed). Default: the
  plain forward pass.
- ``param_groups(training) -> list[dict]``: AdamW parameter groups for a
  :class:`~movie_reconstruction.model.TrainConfig` (architecture-specific learning-rate
  factors, frozen parts). Default: :func:`default_param_groups`.
- ``history_frames``: how many frames (including the current one) can influence an output;
  training drops that many minus one at the start of each clip as burn-in. Default: 1.
- a keyword ``first_frame`` of ``forward``: rates from that frame on only (training skips the
  readout of its burn-in frames). Default: training slices the full output.
- ``neuron_ids``: ids of the predicted neurons, saved in checkpoints. Default: ``0..n-1``.
- ``predict(video, behavior)``: rates ``(neurons, T)`` of one trial from numpy arrays.
  Default: :func:`predict`. Scoring (``evaluate_encoder``) needs only this member, so a
  predictor that is no encoder (an oracle of the noise-free rates) can be scored too.

No torch import at module level.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError


@runtime_checkable
class EncoderModel(Protocol):
    """The encoder contract (docs/architecture.md, "Encoder contract").

    ``forward(video, behavior) -> rates``: ``video`` ``(B, T, H, W)`` in 0..255 grey levels,
    ``behavior`` ``(B, C, T)`` in recorded units, ``rates`` ``(B, n_neurons, T)``, non-negative
    and causal in time. ``config`` is a JSON-able dict from which the encoder's registered
    kind rebuilds it (its ``"kind"`` names that kind). ``readout_positions()`` gives the
    receptive-field centres ``(n_neurons, 2)`` as normalised ``(x, y)`` in [-1, 1].
    """

    frame_shape: tuple[int, int]
    n_neurons: int
    behavior_channels: tuple[str, ...]
    config: dict

    def forward(self, video: Any, behavior: Any) -> Any: ...

    def readout_positions(self) -> Any: ...


REQUIRED_MEMBERS: tuple[str, ...] = tuple(EncoderModel.__annotations__) + ("forward", "readout_positions")


def missing_members(model) -> list[str]:
    """The members of :class:`EncoderModel` that ``model`` lacks (empty when it meets the contract)."""
    return [name for name in REQUIRED_MEMBERS if not hasattr(model, name)]


def contract_problem(model) -> str | None:
    """Why ``model`` does not meet the encoder contract, in one line; None when it does."""
    import torch

    name = type(model).__name__
    if not isinstance(model, torch.nn.Module):
        return f"{name} is not a torch.nn.Module; it does not meet the encoder contract"
    missing = missing_members(model)
    if missing:
        return (f"{name} lacks {', '.join(repr(m) for m in missing)}; it does not meet the encoder contract "
                "(docs/architecture.md)")
    return None


def check_encoder(model, where=None, *, error=InputError) -> None:
    """Raise ``error`` unless ``model`` meets the encoder contract (a ``torch.nn.Module`` with
    every member of :class:`EncoderModel`). The message names what is missing and ``where``
    the model came from (a checkpoint folder, or an encoder kind)."""
    problem = contract_problem(model)
    if problem is None:
        return
    if error is InputError:
        raise InputError(problem, where)
    raise error(problem if where is None else f"{problem}: {where}")


# ------------------------------------------------------------------------------ optional members
def optional_member(model, name: str):
    """``model``'s optional member ``name``, or None when it has none."""
    return getattr(model, name, None)


def prepared_forward(model, video, behavior, changing):
    """``model.prepare(video, behavior, changing)`` where the model offers it, else None."""
    prepare = optional_member(model, "prepare")
    return prepare(video, behavior, changing) if prepare is not None else None


def default_param_groups(model, training) -> list[dict]:
    """Every trainable parameter at ``training.lr``; weight decay on matrices and kernels only."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": training.weight_decay, "lr": training.lr},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr": training.lr},
    ]


def param_groups(model, training) -> list[dict]:
    """AdamW parameter groups for ``model`` (its own ``param_groups`` where it has one), without empty groups."""
    own = optional_member(model, "param_groups")
    groups = own(training) if own is not None else default_param_groups(model, training)
    return [g for g in groups if g["params"]]


def history_frames(model) -> int:
    """How many frames (including the current one) can influence one output of ``model``."""
    frames = optional_member(model, "history_frames")
    return max(1, int(frames)) if frames is not None else 1


def reads_from_first_frame(model) -> bool:
    """Whether ``model.forward`` takes the keyword ``first_frame``."""
    return "first_frame" in inspect.signature(type(model).forward).parameters


def training_rates(step_model, model, video, behavior, first_frame: int):
    """Rates from ``first_frame`` on, by ``step_model`` (``model`` or its compiled form)."""
    if reads_from_first_frame(model):
        return step_model(video, behavior, first_frame=first_frame)
    return step_model(video, behavior)[:, :, first_frame:]


def predict(model, video: np.ndarray, behavior: np.ndarray) -> np.ndarray:
    """Rates ``(neurons, T)`` of any encoder for one trial given as numpy ``video (T, H, W)`` and
    ``behavior (C, T)``: in eval mode, without gradients, on the model's device, in one pass."""
    import torch

    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # Copies: trial arrays may be read-only memory maps.
            v = torch.tensor(np.asarray(video, dtype=np.float32), device=device)[None]
            bh = torch.tensor(np.asarray(behavior, dtype=np.float32), device=device)[None]
            return model(v, bh)[0].float().cpu().numpy()
    finally:
        model.train(was_training)


def predict_trial(model, video: np.ndarray, behavior: np.ndarray) -> np.ndarray:
    """Rates ``(neurons, T)`` for one trial: the model's own ``predict`` where it has one, else :func:`predict`."""
    own = optional_member(model, "predict")
    return own(video, behavior) if own is not None else predict(model, video, behavior)


def neuron_ids(model) -> np.ndarray:
    """``model.neuron_ids``, or ``0..n_neurons-1`` for a model without them."""
    ids = optional_member(model, "neuron_ids")
    return np.arange(int(model.n_neurons)) if ids is None else np.asarray(ids)
