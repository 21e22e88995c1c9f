"""suite2p's per-plane pipeline, run in a worker thread: its log becomes progress events, a cancel
takes effect at the next stage boundary, and the marker records each finished stage."""

from __future__ import annotations

import copy
import logging
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..io.safe_npy import load_record
from ..progress import Progress
from .run_folder import write_marker

# suite2p announces each stage of ``pipeline`` with a line of dashes and the stage name.
_STAGE_BANNERS = {
    "REGISTRATION": "registration",
    "ROI DETECTION": "detection",
    "EXTRACTION": "extraction",
    "SPIKE DECONVOLUTION": "deconvolution",
    "ROI CLASSIFICATION": "classification",
    "ZSTACK ALIGN": "zstack",
}
_BANNER = re.compile(r"^-{5,}\s+([A-Z][A-Z ]+?)\s*$")
_TQDM_COUNT = re.compile(r"(\d+)/(\d+)\s*\[")


class ExtractionCancelled(Exception):
    """Raised inside suite2p's thread, at a stage boundary, when the job was cancelled."""


class _LogRelay(logging.Handler):
    """Forwards suite2p's log records from one worker thread onto a queue.

    When the job is cancelled, the next stage banner raises ExtractionCancelled in that
    thread: suite2p has saved the previous stage's files by then, and the next stage
    has not started writing.
    """

    def __init__(self, events: queue.Queue, cancel: threading.Event):
        super().__init__(level=logging.INFO)
        self.events = events
        self.cancel = cancel
        self.thread_id: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed suite2p log call must not break the run
            return
        banner = _BANNER.match(message)
        if banner and banner.group(1) in _STAGE_BANNERS and self.cancel.is_set():
            raise ExtractionCancelled(banner.group(1))
        self.events.put(("log", message))


def _run_in_thread(target, relay: _LogRelay, events: queue.Queue, stage_of: dict, plan: dict) -> Iterator[Progress]:
    """Run ``target()`` in a thread, yielding Progress events from suite2p's log until it ends.

    Closing the generator sets the cancel flag and waits for suite2p to reach its next stage
    boundary (where the relay raises) or to finish, so no file is left half-written.
    """
    result: dict[str, Any] = {}

    def work():
        relay.thread_id = threading.get_ident()
        try:
            result["value"] = target()
        except BaseException as exc:  # re-raised in the generator's thread
            result["error"] = exc
        finally:
            events.put(("done", None))

    thread = threading.Thread(target=work, name="suite2p", daemon=True)
    thread.start()
    try:
        while True:
            kind, message = events.get()
            if kind == "done":
                break
            banner = _BANNER.match(message)
            if banner and banner.group(1) in _STAGE_BANNERS:
                stage_of["stage"] = _STAGE_BANNERS[banner.group(1)]
                plan["step"] += 1
                yield Progress(stage_of["stage"], plan["step"], plan["total"], f"plane {plan['plane']}: {stage_of['stage']}")
                continue
            if message.startswith("-----------"):
                continue
            count = _TQDM_COUNT.search(message)
            metrics = {"batch": float(count.group(1)), "batches": float(count.group(2))} if count else {}
            yield Progress(stage_of["stage"], plan["step"], plan["total"], f"plane {plan['plane']}: {message.strip()}", metrics)
    except BaseException:
        relay.cancel.set()
        thread.join()
        raise
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def run_planes(staging: Path, settings: dict, nplanes: int, torch_device, identity: dict, stages: dict) -> Iterator[Progress]:
    import suite2p
    from suite2p.io import BinaryFile

    s2p_logger = logging.getLogger("suite2p")
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    relay = _LogRelay(events, cancel)
    old_level = s2p_logger.level
    if s2p_logger.getEffectiveLevel() > logging.INFO:
        s2p_logger.setLevel(logging.INFO)
    s2p_logger.addHandler(relay)
    per_plane = (1 if settings["run"]["do_registration"] else 0) + 4  # + detection, extraction, deconvolution, classification
    plan = {"step": 0, "total": nplanes * per_plane, "plane": 0}
    stage_of = {"stage": "registration"}
    try:
        for plane in range(nplanes):
            plan["plane"] = plane
            done = stages["planes"].setdefault(f"plane{plane}", [])
            if "complete" in done:
                plan["step"] += per_plane
                continue
            plane_dir = staging / f"plane{plane}"
            db = load_record(plane_dir / "db.npy")  # a resumed folder may come from elsewhere: data only
            plane_settings = copy.deepcopy(settings)

            if settings["run"]["do_registration"] and "registration" not in done:
                registration_only = copy.deepcopy(plane_settings)
                registration_only["run"]["do_detection"] = False
                # suite2p registers data.bin in place: until registration has finished, the
                # binary is neither raw nor registered, so a resumed run must rewrite it.
                done.append("registration started")
                write_marker(staging, identity, stages, complete=False)

                def register():
                    _pipeline(db, registration_only, True, torch_device, BinaryFile, suite2p)
                    # marked from suite2p's thread, so a cancel that waits for it still records it
                    done.append("registration")
                    write_marker(staging, identity, stages, complete=False)

                stage_of["stage"] = "registration"
                yield from _run_in_thread(register, relay, events, stage_of, plan)
            elif "registration" in done:
                plan["step"] += 1
            stage_of["stage"] = "detection"  # suite2p's preamble (classifier choice) comes before the banner
            outputs = yield from _run_in_thread(
                lambda: _pipeline(db, plane_settings, False, torch_device, BinaryFile, suite2p),
                relay, events, stage_of, plan,
            )
            _save_ops(db, plane_settings, plane_dir, outputs)
            done.append("complete")
            write_marker(staging, identity, stages, complete=False)
            plan["step"] = (plane + 1) * per_plane
    finally:
        s2p_logger.removeHandler(relay)
        s2p_logger.setLevel(old_level)


def _pipeline(db: dict, settings: dict, run_registration: bool, torch_device, BinaryFile, suite2p):
    """One call of suite2p's per-plane pipeline on the plane's binaries (like suite2p's run_plane)."""
    import contextlib
    from datetime import datetime

    settings = copy.deepcopy(settings)
    settings["date_proc"] = datetime.now().astimezone()
    Ly, Lx, n_frames = db["Ly"], db["Lx"], db["nframes"]
    with contextlib.ExitStack() as files:
        f_reg = files.enter_context(BinaryFile(Ly=Ly, Lx=Lx, filename=db["reg_file"], n_frames=n_frames, write=True))
        f_reg_chan2 = None
        if db["nchannels"] > 1:
            f_reg_chan2 = files.enter_context(BinaryFile(Ly=Ly, Lx=Lx, filename=db["reg_file_chan2"], n_frames=n_frames, write=True))
        try:
            return suite2p.pipeline(
                db["save_path"], f_reg, None, f_reg_chan2, None, run_registration, settings,
                badframes=np.zeros(n_frames, bool), stat=None, device=torch_device, Zstack=None,
            )
        except ValueError as exc:
            if "no ROIs were found" not in str(exc):
                raise
    # An empty plane is a result, not a failure: keep the registration and report no cells.
    logging.getLogger("suite2p.movie_recon").warning(
        "no ROIs found in plane %s; try a lower threshold_scaling, another diameter or tau*fs", db.get("iplane", 0)
    )
    reg_path = Path(db["save_path"]) / "reg_outputs.npy"
    reg_outputs = load_record(reg_path) if reg_path.exists() else None
    return (reg_outputs, None, None, None, None, None, None, None, None, None, None, {})


def _save_ops(db: dict, settings: dict, plane_dir: Path, outputs) -> None:
    """ops.npy as suite2p's run_plane writes it, for the suite2p GUI and older readers."""
    reg_outputs, detect_outputs, stat, F = outputs[0], outputs[1], outputs[2], outputs[3]
    plane_times = outputs[-1]
    if F is None:  # suite2p stops after detection when it finds no ROI; write the empty results it skips
        empty = np.zeros((0, int(db["nframes"])), np.float32)
        for name in ("F.npy", "Fneu.npy", "spks.npy"):
            np.save(plane_dir / name, empty)
        np.save(plane_dir / "iscell.npy", np.zeros((0, 2)))
        if stat is None or not (plane_dir / "stat.npy").exists():
            np.save(plane_dir / "stat.npy", np.zeros(0, dtype=object))
    ops = {**db, **settings, **(reg_outputs or {}), **(detect_outputs or {})}
    ops["plane_times"] = plane_times
    np.save(plane_dir / "ops.npy", ops)
