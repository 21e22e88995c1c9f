"""What produced a results folder: ``provenance.json`` (inputs with their hashes, software versions,
seeds, settings, device and per-stage timings) and the hashes that tell runs apart."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import __version__
from .._json import jsonable
from ..errors import InputError, OutputError
from .layout import FORMAT, FORMAT_VERSION, PROVENANCE, read_json, utc_timestamp, write_json


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_inputs(paths: Iterable[tuple[str, str | Path]]) -> list[dict]:
    """``[(role, path)]`` -> records with size and SHA-256 (folders: every file inside, sorted)."""
    records = []
    for role, path in paths:
        path = Path(path)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                records.append(_file_record(role, file))
        elif path.exists():
            records.append(_file_record(role, path))
        else:
            raise InputError("input not found", path)
    return records


def _file_record(role: str, path: Path) -> dict:
    return {"role": role, "path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def software_versions() -> dict[str, str]:
    versions = {"napari-movie-reconstruction": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", "scipy", "torch", "suite2p", "dask", "distributed", "tifffile", "safetensors", "matplotlib"):
        module = sys.modules.get(name)
        if module is None:
            try:
                from importlib.metadata import version

                versions[name] = version(name)
            except Exception:  # not installed
                continue
        else:
            versions[name] = str(getattr(module, "__version__", "?"))
    return versions


def identity_hash(data) -> str:
    """A short stable hash of a JSON-able description (used to tell runs with other settings apart)."""
    text = json.dumps(jsonable(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ProvenanceFile:
    """``provenance.json`` of a :class:`~movie_reconstruction.results.ResultsFolder` (mixed into it)."""

    path: Path

    def _start_provenance(self, command: Sequence[str] | None) -> None:
        if (self.path / PROVENANCE).exists():
            self.provenance()  # checks the format
            return
        now = utc_timestamp()
        try:
            write_json(
                self.path / PROVENANCE,
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "created": now,
                    "updated": now,
                    "versions": software_versions(),
                    "command": list(command) if command is not None else None,
                    "inputs": [],
                    "seeds": {},
                    "settings": {},
                    "device": None,
                    "timings_s": {},
                    "stages": {},
                },
            )
        except OSError as exc:
            raise OutputError.from_os_error(exc, self.path) from None

    def provenance(self) -> dict:
        data = read_json(self.path / PROVENANCE)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a results provenance file (format is not {FORMAT!r})", self.path / PROVENANCE)
        return data

    def record(
        self,
        stage: str,
        *,
        seconds: float | None = None,
        settings: dict | None = None,
        seeds: dict | None = None,
        inputs: list[dict] | None = None,
        device: str | None = None,
        **extra,
    ) -> None:
        """Merge what a stage did into ``provenance.json`` (atomically)."""
        data = self.provenance()
        data["updated"] = utc_timestamp()
        data["versions"] = software_versions()
        if seconds is not None:  # summed over runs: a resumed stage adds the time it spent
            data["timings_s"][stage] = round(float(data["timings_s"].get(stage, 0.0)) + float(seconds), 3)
        if settings is not None:
            data["settings"][stage] = settings
        if seeds:
            data["seeds"].update(seeds)
        if inputs:
            known = {(r["role"], r["path"]) for r in data["inputs"]}
            data["inputs"] += [r for r in inputs if (r["role"], r["path"]) not in known]
        if device is not None:
            data["device"] = device
        data["stages"][stage] = {"finished": utc_timestamp(), **extra}
        write_json(self.path / PROVENANCE, data)
