"""Run the embarrassingly parallel work as Dask tasks: trials x ensemble members for
reconstruction, ensemble members for training (or one task for a snapshot ensemble).

The unit of work is a job generator of picklable arguments (:func:`reconstruct_member_job`,
:func:`train_member_job`, :func:`train_snapshots_job`), so the same task runs in this process
(``client=None``: the serial path, with live progress) or to the end on any ``dask.distributed``
cluster: a :class:`LocalCluster` sized to the machine by default, or an existing scheduler given
by address (for example one started with dask-jobqueue on SLURM).

What workers need:

- reconstruction tasks carry everything with them (the trial's arrays and the checkpoint's
  bytes), so any cluster works, shared filesystem or not;
- training tasks read the aligned recording from its folder (``results/recording``, Sensorium
  layout), which must be visible to the workers (a shared filesystem on a cluster); the
  trained checkpoint comes back as bytes and is written here, into the results folder.

Failures: every task is retried ``retries`` times (Dask also reschedules tasks of a worker
that died); a task that still fails is reported in :class:`TaskReport` while the finished
ones are kept. Bad input (:class:`~movie_reconstruction.errors.InputError`) is not retried:
it stops the run with its message.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .progress import Job
from .task_runner import DEFAULT_RETRIES, Task, TaskFailure, TaskReport, TasksFailed, run_tasks  # noqa: F401 - re-exported

# ------------------------------------------------------------------------------------ clusters
def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def local_cluster_size(memory_per_worker_gib: float = 2.0) -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per core,
    fewer if memory would run short (torch uses the worker's one thread; processes avoid the GIL)."""
    cores = available_cores()
    try:
        import psutil

        memory_gib = psutil.virtual_memory().total / 2**30
        cores = max(1, min(cores, int(memory_gib // memory_per_worker_gib)))
    except ImportError:
        pass
    return max(1, cores), 1


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = True,
) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` (an address like ``tcp://host:8786`` or a
    scheduler JSON file), or to a new :class:`LocalCluster` sized to the machine, closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            if str(scheduler).endswith(".json"):
                client = Client(scheduler_file=str(scheduler), timeout="30s")
            else:
                client = Client(str(scheduler), timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot connect to the Dask scheduler ({exc})", scheduler) from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    workers, threads = local_cluster_size()
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also pins glibc's mmap
    # threshold: every large tensor is then mapped and unmapped afresh, and torch ran 1.6x
    # slower in a worker than in this process (docs/distributed_speedup.md). Our clusters
    # start without it.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(
            n_workers=n_workers or workers,
            threads_per_worker=threads_per_worker or threads,
            processes=processes,
            dashboard_address=":0",
            silence_logs=40,  # logging.ERROR: a killed worker is handled, not shouted about
        )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# ------------------------------------------------------------------------------------ checkpoints
@dataclass(frozen=True)
class CheckpointBlob:
    """An encoder checkpoint folder as bytes, so that tasks can carry it to any worker."""

    name: str
    files: dict[str, bytes]
    sha256: str

    @classmethod
    def read(cls, folder: str | Path) -> CheckpointBlob:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError("encoder checkpoint folder not found", folder)
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        if "config.json" not in files:
            raise InputError("not an encoder checkpoint (config.json is missing)", folder)
        digest = hashlib.sha256()
        for name, data in files.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return cls(folder.name, files, digest.hexdigest())

    def write(self, folder: str | Path) -> Path:
        from ._atomic import atomic_path

        folder = Path(folder)
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            for name, data in self.files.items():
                (tmp / name).write_bytes(data)
        return folder


_ENCODERS: dict[str, Any] = {}  # per process: checkpoint hash -> loaded encoder


def load_blob(blob: CheckpointBlob, device="cpu"):
    """The encoder of a checkpoint blob (verified by ``load_encoder``), cached per process."""
    key = f"{blob.sha256}:{device}"
    if key not in _ENCODERS:
        from .model import load_encoder

        with tempfile.TemporaryDirectory(prefix="movie-recon-ckpt-") as tmp:
            folder = Path(tmp) / blob.name
            folder.mkdir()
            for name, data in blob.files.items():
                (folder / name).write_bytes(data)
            encoder = load_encoder(folder, device=device)
        encoder.checkpoint_path = None
        if len(_ENCODERS) > 16:
            _ENCODERS.clear()
        _ENCODERS[key] = encoder
    return _ENCODERS[key]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch threads (None: leave as is), restoring the previous count."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ reconstruction tasks
@dataclass
class MemberMovie:
    """One ensemble member's reconstruction of one trial (before averaging and blurring)."""

    movie: np.ndarray  # (T, H, W) float32
    losses: np.ndarray  # (steps,)
    iterations: int
    stopped_early: bool
    seconds: float
    device: str
    worker: str = ""


def reconstruct_member_job(
    blob: CheckpointBlob,
    trial,
    config,
    alpha: np.ndarray,
    *,
    neurons=None,
    device: str | None = "auto",
    threads: int | None = None,
) -> Job[MemberMovie]:
    """Reconstruct ``trial`` with one ensemble member: the reconstruction task (one trial, one
    member; its arguments are plain data, so it runs anywhere)."""
    from .reconstruct import reconstruct

    from .device import pick_device

    torch_device = pick_device(device)
    model = load_blob(blob, device="cpu")
    member_config = replace(config, blur_sigma=None, ensemble="average_movies")
    with torch_threads(threads):
        result = yield from reconstruct([model], [trial], member_config, mask=alpha, neurons=neurons, device=torch_device)
    return MemberMovie(
        movie=np.asarray(result.member_movies[0, 0], np.float32),
        losses=np.asarray(result.member_loss_history[0], np.float32),
        iterations=int(result.iterations_run),
        stopped_early=bool(result.stopped_early),
        seconds=float(result.elapsed_s),
        device=result.device,
        worker=_worker_name(),
    )


def combine_members(movies: Sequence[np.ndarray], config) -> np.ndarray:
    """The ensemble's movie: the members' mean, 3D-blurred as configured, clipped to the pixel range."""
    from .reconstruct.ensemble import combine_member_movies

    return combine_member_movies(movies, config.blur_sigma, config.pixel_range)


# ------------------------------------------------------------------------------------ training tasks
def train_member_job(
    recording_path: str | Path,
    seed: int,
    preset: str = "small",
    training: dict | None = None,
    *,
    device: str | None = "auto",
    threads: int | None = None,
    init_core=None,
    kind: str | None = None,
    stop=None,
) -> Job[CheckpointBlob]:
    """Train one ensemble member (of the registered encoder ``kind``; None: the built-in one) on
    the recording folder; returns its checkpoint as bytes. ``stop`` (this process only): an
    event that ends training early, keeping the best state."""
    from .io.sensorium import read_sensorium
    from .model import BUILTIN_KIND, TrainConfig, save_encoder
    from .model.train import train_encoder_within_memory

    recording = read_sensorium(recording_path)
    config = TrainConfig.preset(preset).replace(**(training or {})).replace(seed=int(seed))
    with torch_threads(threads):
        result = yield from train_encoder_within_memory(recording, preset, config, device=device, init_core=init_core,
                                                        kind=kind or BUILTIN_KIND, stop=stop)
    with tempfile.TemporaryDirectory(prefix="movie-recon-train-") as tmp:
        folder = save_encoder(result.encoder, Path(tmp) / "model", extra={"seed": int(seed), "worker": _worker_name()})
        return CheckpointBlob.read(folder)


def train_snapshots_job(
    recording_path: str | Path,
    seed: int,
    preset: str = "small",
    training: dict | None = None,
    members: int = 3,
    *,
    device: str | None = "auto",
    threads: int | None = None,
    init_core=None,
    kind: str | None = None,
    stop=None,
) -> Job[list[CheckpointBlob]]:
    """Train a snapshot ensemble of ``members`` in one run (``model.snapshots``) on the recording
    folder; returns the members' checkpoints as bytes, in order (fewer when ``stop`` ended the run
    early: the snapshots made so far, at least one). ``threads`` is capped at this machine's cores:
    the threads of several workers given to one task would otherwise oversubscribe a small machine."""
    from .io.sensorium import read_sensorium
    from .model import BUILTIN_KIND, TrainConfig, save_encoder
    from .model.train import train_encoder_within_memory

    recording = read_sensorium(recording_path)
    config = TrainConfig.preset(preset).replace(**(training or {})).replace(seed=int(seed))
    with torch_threads(min(threads, available_cores()) if threads else None):
        result = yield from train_encoder_within_memory(recording, preset, config, device=device, init_core=init_core,
                                                        kind=kind or BUILTIN_KIND, stop=stop, snapshots=int(members))
    blobs = []
    with tempfile.TemporaryDirectory(prefix="movie-recon-train-") as tmp:
        for k, member in enumerate(result.members or [result]):
            extra = {"seed": int(seed), "worker": _worker_name(), "ensemble_method": "snapshots"}
            blobs.append(CheckpointBlob.read(save_encoder(member.encoder, Path(tmp) / f"model_{k}", extra=extra)))
    return blobs


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"
