"""Pretrained cores: the one bundled with the package, or one taken from any encoder checkpoint.

Readouts are per neuron and belong to one mouse; the core (the movie -> feature maps part) is
what transfers. A core file is a safetensors file of the core's tensors whose metadata holds
the core's architecture (JSON) and its provenance. See ``weights/PROVENANCE.md`` for how the
bundled core was made (``benchmarks/encoder_pretrain_core.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import atomic_path
from ..errors import InputError
from .config import EncoderConfig

CORE_FORMAT = "movie-reconstruction-core"
BUNDLED_CORE = "twin_core_small.safetensors"


def bundled_core_path() -> Path:
    """Path of the pretrained core shipped inside the package."""
    return Path(__file__).with_name("weights") / BUNDLED_CORE


def save_core(encoder, path: str | Path, provenance: dict | None = None) -> Path:
    """Write ``encoder``'s core (weights + architecture + provenance) to a safetensors file, atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in encoder.core.state_dict().items()}
    metadata = {
        "format": CORE_FORMAT,
        "architecture": json.dumps(encoder.architecture.to_dict(), sort_keys=True),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(save(state, metadata=metadata))
    return path


def load_core_weights(source) -> tuple[dict, EncoderConfig]:
    """``(core state_dict, architecture)`` from ``"bundled"``, a core ``.safetensors`` file, or an
    encoder checkpoint folder."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if isinstance(source, str) and source == "bundled":
        source = bundled_core_path()
        if not source.is_file():
            raise InputError("the bundled pretrained core is missing from this installation", source)
    path = Path(source)
    if path.is_dir():
        from .checkpoint import load_encoder

        from .encoder import Encoder

        encoder = load_encoder(path)
        if not isinstance(encoder, Encoder):
            raise InputError(f"holds a {encoder.config.get('kind')!r} encoder, which has no core to start from", path)
        return {k: v.clone() for k, v in encoder.core.state_dict().items()}, encoder.architecture
    if not path.is_file():
        raise InputError("pretrained core not found", path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, ValueError, OSError) as exc:
        raise InputError(f"not a readable safetensors file ({exc})", path) from None
    if metadata.get("format") != CORE_FORMAT:
        raise InputError(f"not a pretrained core (metadata format is not {CORE_FORMAT!r})", path)
    try:
        architecture = EncoderConfig.from_dict(json.loads(metadata["architecture"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"pretrained core has no valid architecture in its metadata ({exc})", path) from None
    return state, architecture


def core_provenance(source="bundled") -> dict:
    """The provenance record stored with a core file."""
    from safetensors import safe_open

    path = bundled_core_path() if source == "bundled" else Path(source)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return json.loads(metadata.get("provenance", "{}"))
