"""Session manifests: one TOML file that names everything a lab session consists of.

Example (paths are relative to the manifest)::

    [session]
    name = "mouse12-2026-03-04"
    allow_outside_paths = false                          # true: paths may leave the manifest's folder

    [imaging]
    raw = ["raw/file_00001.tif", "raw/file_00002.tif"]   # files, or one folder
    frame_times = "timing/imaging_frame_times.npy"       # seconds, one per imaging frame (volume)
    plane_offsets = [0.0]                                # seconds after the frame time, per plane
    frame_rate = 30.0                                    # optional, else from the TIFF / timestamps
    suite2p = "suite2p"                                  # optional: an existing suite2p output folder

    [stimulus]
    movie = "stimulus/movie.mp4"                         # mp4/avi/webm, TIFF or NPY (T, H, W)
    frame_times = "timing/stimulus_frame_times.npy"      # seconds, one per stimulus frame shown
    trials = "timing/trials.csv"                         # trial_id,start_frame,n_frames,tier
    frame_rate = 30.0
    size = [36, 64]                                      # model frame size (H, W)
    allow_unshown_frames = false                         # true: the movie may run past the last timestamp

    [behaviour]
    files = ["behaviour/running.csv", "behaviour/pupil.csv"]   # each with its own time column
    method = "linear"                                    # or "interval"
    [behaviour.columns]                                  # optional renames; "" ignores a column
    wheel_speed = "running"

All timestamps share one clock (the rig's). Timestamps may be ``.npy`` or one-column ``.csv``/``.txt``.
A ``[sync]`` section (raw DAQ signals, see ``io/daq.py``) may replace the ``frame_times`` files.

Every path the manifest names must lie inside the manifest's folder (after following symbolic
links), so a manifest received from someone else cannot make us read, hash and report files from
elsewhere on this machine. ``allow_outside_paths = true`` in ``[session]`` lifts that; the paths
outside are then listed in the results' provenance. The files inside a named folder (``raw =
"raw"``) are not checked one by one: a link inside such a folder is followed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .daq import SyncSpec, parse_sync_section
from .timestamps import read_times  # noqa: F401 - also read from here (the napari reader, tests)

KNOWN_SECTIONS = {"session", "imaging", "stimulus", "behaviour", "sync", "ground_truth"}


@dataclass
class SessionManifest:
    path: Path
    name: str
    raw: list[Path]
    imaging_frame_times: Path | None  # None: from the [sync] section's frame clock
    stimulus_movie: Path
    stimulus_frame_times: Path | None  # None: from the [sync] section's vsync/photodiode
    trials: Path
    plane_offsets: list[float] = field(default_factory=lambda: [0.0])
    imaging_frame_rate: float | None = None
    suite2p: Path | None = None
    stimulus_frame_rate: float | None = None
    stimulus_size: tuple[int, int] = (36, 64)
    behaviour_files: list[Path] = field(default_factory=list)
    behaviour_method: str = "linear"
    behaviour_columns: dict[str, str | None] = field(default_factory=dict)
    sync: SyncSpec | None = None  # raw DAQ sync signals in place of timestamp files (io/daq.py)
    allow_unshown_frames: bool = False
    outside_paths: list[Path] = field(default_factory=list)  # named paths outside the folder (allowed explicitly)

    @property
    def folder(self) -> Path:
        return self.path.parent


def _flag(section: dict, key: str, where: str, manifest: Path) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise InputError(f"[{where}] {key} must be true or false, got {value!r}", manifest)
    return value


@dataclass
class _ManifestPaths:
    """Resolves the manifest's paths, keeping them inside its folder unless allowed otherwise."""

    manifest: Path
    base: Path  # the manifest's folder, resolved
    allow_outside: bool
    outside: list[Path] = field(default_factory=list)

    def existing(self, value, what: str) -> Path:
        # resolved first, so that neither "../" nor a symbolic link can lead out unnoticed
        resolved = (self.base / str(value)).resolve()
        if not resolved.is_relative_to(self.base):
            if not self.allow_outside:
                raise InputError(
                    f"{what} {value!r} lies outside the manifest's folder (at {resolved}); move it into {self.base}, "
                    "or set allow_outside_paths = true in [session]",
                    self.manifest,
                )
            self.outside.append(resolved)
        if not resolved.exists():
            raise InputError(f"{what} {value!r} does not exist (looked for {resolved})", self.manifest)
        return resolved


def load_manifest(path: str | Path) -> SessionManifest:
    """Parse and check a session manifest; every named file must exist."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.toml"))
        if len(candidates) != 1:
            raise InputError(f"expected one session manifest (*.toml) in the folder, found {len(candidates)}", path)
        path = candidates[0]
    if not path.exists():
        raise InputError("manifest not found", path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid TOML ({exc})", path) from None
    loose = sorted(k for k, v in spec.items() if not isinstance(v, dict))
    if loose:
        raise InputError(f"key(s) {loose} stand outside any section; put them in their section (for example [session])", path)
    unknown = set(spec) - KNOWN_SECTIONS
    if unknown:
        raise InputError(f"unknown section(s) {sorted(unknown)}; expected {sorted(KNOWN_SECTIONS)}", path)

    def section(name: str) -> dict:
        if name not in spec or not isinstance(spec[name], dict):
            raise InputError(f"missing [{name}] section", path)
        return spec[name]

    def need(sec: dict, key: str, where: str):
        if key not in sec:
            raise InputError(f"[{where}] needs '{key}'", path)
        return sec[key]

    paths = _ManifestPaths(path, path.parent.resolve(), _flag(spec.get("session", {}), "allow_outside_paths", "session", path))
    existing = paths.existing

    imaging, stimulus = section("imaging"), section("stimulus")
    raw_spec = imaging.get("raw", [])
    raw = [existing(p, "raw imaging file") for p in ([raw_spec] if isinstance(raw_spec, str) else raw_spec)]
    suite2p = existing(imaging["suite2p"], "suite2p folder") if "suite2p" in imaging else None
    if not raw and suite2p is None:
        raise InputError("[imaging] needs 'raw' (files or a folder) or 'suite2p' (an output folder)", path)
    behaviour = spec.get("behaviour", {})
    files = behaviour.get("files", behaviour.get("file", []))
    files = [files] if isinstance(files, str) else files
    sync = parse_sync_section(spec["sync"], existing, path) if isinstance(spec.get("sync"), dict) else None

    def timestamps(sec: dict, where: str, roles: tuple[str, ...]) -> Path | None:
        if sync is not None and any(getattr(sync, r) for r in roles) and "frame_times" not in sec:
            return None  # the sync signals give these times
        return existing(need(sec, "frame_times", where), f"{where} timestamps")

    size = tuple(int(v) for v in stimulus.get("size", (36, 64)))
    if len(size) != 2 or min(size) <= 0:
        raise InputError(f"[stimulus] size must be [height, width], got {stimulus.get('size')}", path)
    return SessionManifest(
        path=path,
        name=str(spec.get("session", {}).get("name", path.stem)),
        raw=raw,
        imaging_frame_times=timestamps(imaging, "imaging", ("frame_clock",)),
        plane_offsets=[float(v) for v in imaging.get("plane_offsets", [0.0])],
        imaging_frame_rate=imaging.get("frame_rate"),
        suite2p=suite2p,
        stimulus_movie=existing(need(stimulus, "movie", "stimulus"), "stimulus movie"),
        stimulus_frame_times=timestamps(stimulus, "stimulus", ("vsync", "photodiode")),
        trials=existing(need(stimulus, "trials", "stimulus"), "trial table"),
        stimulus_frame_rate=stimulus.get("frame_rate"),
        stimulus_size=size,
        behaviour_files=[existing(p, "behaviour file") for p in files],
        behaviour_method=str(behaviour.get("method", "linear")),
        behaviour_columns={k: (v or None) for k, v in behaviour.get("columns", {}).items()},
        sync=sync,
        allow_unshown_frames=_flag(stimulus, "allow_unshown_frames", "stimulus", path),
        outside_paths=paths.outside,
    )
