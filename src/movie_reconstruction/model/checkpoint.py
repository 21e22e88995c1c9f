"""Encoder checkpoints: a folder with ``weights.safetensors`` and ``config.json``.

``config.json`` holds the encoder's own config (whose ``kind`` names the registered encoder kind
that rebuilds it: :mod:`.registry`; none means the built-in kind), the neuron ids, the input normalisation, the hash of
the data the model was trained on, the training metrics, and the SHA-256 of the weights file.
The weights file's metadata holds the SHA-256 of the config (without that field), so editing
either file is detected. Loading reads JSON and safetensors only: nothing is ever unpickled.
Writing is atomic: the folder appears complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from .._json import jsonable
from ..errors import InputError

FORMAT = "movie-reconstruction-encoder"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


def _canonical(config: dict) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8")


def save_encoder(encoder, path: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``encoder`` to the checkpoint folder ``path`` (replacing an existing one atomically)."""
    from safetensors.torch import save

    from .. import __version__

    from .protocol import check_encoder, neuron_ids
    from .registry import encoder_factory, kind_of

    path = Path(path)
    check_encoder(encoder, error=TypeError)
    encoder_config = dict(encoder.config)
    try:  # a checkpoint that no registered kind can rebuild would be written in vain
        encoder_factory(kind_of(encoder_config))
    except ValueError as exc:
        raise ValueError(f"cannot save {type(encoder).__name__}: {exc}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    ids = neuron_ids(encoder)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder": encoder_config,
        "neuron_ids": ids.tolist(),
        "neuron_ids_dtype": ids.dtype.str,
        "data_hash": getattr(encoder, "data_hash", None),
        "training_metrics": jsonable(getattr(encoder, "training_metrics", {})),
        "extra": jsonable(extra or {}),
    }
    config = jsonable(config)
    weights = save(state, metadata={"format": FORMAT, "config_sha256": hashlib.sha256(_canonical(config)).hexdigest()})
    config["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    with atomic_path(path) as tmp:
        tmp.mkdir()
        (tmp / WEIGHTS_FILE).write_bytes(weights)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return path


def read_checkpoint_config(path: str | Path) -> dict:
    """The checkpoint's JSON config (not verified against the weights; :func:`load_encoder` does that)."""
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not path.is_dir() or not config_path.is_file():
        raise InputError(f"not an encoder checkpoint: expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE}", path)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"checkpoint config is not valid JSON ({exc})", config_path) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"not an encoder checkpoint config (format is not {FORMAT!r})", config_path)
    if config.get("format_version") != FORMAT_VERSION:
        raise InputError(f"unsupported checkpoint version {config.get('format_version')!r}", config_path)
    return config


def verify_checkpoint(path: str | Path) -> tuple[dict, bytes]:
    """``(config, weights bytes)`` of a checkpoint whose two files match the hashes each holds
    of the other; :class:`InputError` naming the file for a missing, corrupt or tampered one.
    Needs no torch (``movie-recon info`` checks checkpoints with it)."""
    from safetensors import SafetensorError

    path = Path(path)
    config = read_checkpoint_config(path)
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise InputError(f"checkpoint weights {WEIGHTS_FILE} are missing", path)
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != config.get("weights_sha256"):
        raise InputError("checkpoint weights do not match the hash in config.json (modified or corrupt)", weights_path)
    try:
        with _safe_open_bytes(weights_path, "numpy") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, ValueError, OSError) as exc:
        raise InputError(f"not a readable safetensors file ({exc})", weights_path) from None
    body = {k: v for k, v in config.items() if k != "weights_sha256"}
    if metadata.get("config_sha256") != hashlib.sha256(_canonical(body)).hexdigest():
        raise InputError("config.json does not match the hash stored with the weights (modified or corrupt)", path / CONFIG_FILE)
    return config, weights


def load_encoder(path: str | Path, recording=None, *, device="cpu"):
    """Load an encoder checkpoint, verifying both files; with ``recording``, also check it fits.

    The encoder is rebuilt by the kind its config names (:mod:`.registry`). Raises
    :class:`InputError` for a missing, corrupt or tampered checkpoint, one of a kind that is not
    registered, one whose encoder does not meet the encoder contract (:mod:`.protocol`), or one
    whose neurons, frame size or behaviour channels differ from ``recording``'s.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .protocol import check_encoder
    from .registry import encoder_factory, kind_of

    path = Path(path)
    config, weights = verify_checkpoint(path)
    try:
        state = load(weights)
    except (SafetensorError, ValueError, OSError) as exc:
        raise InputError(f"not a readable safetensors file ({exc})", path / WEIGHTS_FILE) from None

    ids = np.asarray(config["neuron_ids"], dtype=np.dtype(config.get("neuron_ids_dtype", "<i8")))
    kind = kind_of(config["encoder"])
    try:
        factory = encoder_factory(kind)
    except ValueError as exc:
        raise InputError(f"cannot rebuild this checkpoint's encoder: {exc}", path) from None
    try:
        encoder = factory.from_config(config["encoder"], neuron_ids=ids)
        encoder.load_state_dict(state, strict=True)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputError(f"checkpoint weights do not fit its architecture ({str(exc).splitlines()[0]})", path) from None
    check_encoder(encoder, path)
    encoder.data_hash = config.get("data_hash")
    encoder.training_metrics = config.get("training_metrics", {})
    encoder.checkpoint_path = path
    encoder.eval()
    encoder.to(torch.device(device) if isinstance(device, str) else device)
    if recording is not None:
        check_compatible(encoder, recording, path)
    return encoder


def _safe_open_bytes(path: Path, framework: str = "pt"):
    from safetensors import safe_open

    return safe_open(str(path), framework=framework)


def check_compatible(encoder, recording, where=None) -> None:
    """Raise :class:`InputError` unless ``encoder`` was made for ``recording``'s neurons, frames and behaviour."""
    from .protocol import neuron_ids

    where = where or getattr(encoder, "checkpoint_path", None)
    ids = np.asarray(recording.neurons.ids)
    if ids.shape[0] != encoder.n_neurons:
        raise InputError(
            f"the encoder predicts {encoder.n_neurons} neurons but the recording has {ids.shape[0]}", where
        )
    mine = neuron_ids(encoder)
    if ids.astype(str).tolist() != mine.astype(str).tolist():
        first = int(np.flatnonzero(ids.astype(str) != mine.astype(str))[0])
        raise InputError(
            f"neuron ids differ from the recording's (first at position {first}: encoder {mine[first]!r}, "
            f"recording {ids[first]!r})",
            where,
        )
    if tuple(recording.frame_shape) != tuple(encoder.frame_shape):
        raise InputError(
            f"the encoder takes {encoder.frame_shape[0]}x{encoder.frame_shape[1]} frames but the recording has "
            f"{recording.frame_shape[0]}x{recording.frame_shape[1]}",
            where,
        )
    if tuple(recording.behavior_channels) != tuple(encoder.behavior_channels):
        raise InputError(
            f"the encoder expects behaviour channels {list(encoder.behavior_channels)} but the recording has "
            f"{list(recording.behavior_channels)}",
            where,
        )
