"""One writer per results folder: the ``.lock`` file.

A writer holds an OS lock (``fcntl.flock``) on ``RESULTS/.lock`` and writes its record into it
(pid, host, start time, command), so a second writer is refused with a message that names the
first. The kernel drops an ``flock`` when its process ends, however it ends, so a crashed or
killed run never blocks the folder: the next writer gets the lock, finds the record the dead
run left behind, says so (a :class:`StaleLockWarning`) and takes over.

Where ``fcntl`` is missing (Windows) the record alone is the lock: it is created exclusively,
and a record left by a process that no longer runs on this host is taken over. A record made
on another host cannot be checked from here; it is refused until someone removes it (the
message says how).

Within one process the lock is re-entrant for the thread that holds it (a whole run holds it,
and each stage it runs takes it again); another thread of the same process is refused, as
another process is.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import InputError, OutputError, RunWarning

try:  # POSIX
    import fcntl
except ImportError:  # Windows: the record alone is the lock
    fcntl = None

LOCK_FILE = ".lock"
RECORD_GRACE_SECONDS = 10.0  # without flock: how long an empty record counts as a writer starting up


class FolderBusy(InputError):
    """Another run is writing to this results folder."""


class StaleLockWarning(RunWarning):
    """A lock left by a run that ended without releasing it was taken over."""


class _Held:
    def __init__(self, fd: int, thread: int):
        self.fd, self.thread, self.depth = fd, thread, 1


_HELD: dict[Path, _Held] = {}  # resolved lock path -> the lock this process holds
_GUARD = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: Sequence[str] | None = None) -> Iterator[None]:
    """Hold the writer's lock of ``folder`` for the duration of the ``with`` block.

    Raises :class:`FolderBusy` (an :class:`InputError`) when another run holds it, and
    :class:`OutputError` when the folder cannot be written at all.
    """
    path = (Path(folder) / LOCK_FILE).absolute()
    with _GUARD:
        held = _HELD.get(path)
        if held is not None:
            if held.thread != threading.get_ident():
                raise FolderBusy(f"in use by another run in this process ({_describe(_read_record(path))}); "
                                 "wait for it to finish", folder)
            held.depth += 1
        else:
            _HELD[path] = _Held(_acquire(path, folder, command), threading.get_ident())
    try:
        yield
    finally:
        with _GUARD:
            held = _HELD[path]
            held.depth -= 1
            if held.depth == 0:
                del _HELD[path]
                _release(path, held.fd)


def holds_lock(folder: str | Path) -> bool:
    """Whether this thread holds the lock of ``folder``."""
    held = _HELD.get((Path(folder) / LOCK_FILE).absolute())
    return held is not None and held.thread == threading.get_ident()


def _acquire(path: Path, folder, command) -> int:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": list(command) if command is not None else list(sys.argv)}
    for _ in range(10):  # a competing writer may swap the file between our open and our lock
        taken = _acquire_with_flock(path, folder) if fcntl is not None else _acquire_exclusively(path, folder)
        if taken is None:
            continue
        fd, previous = taken
        try:
            if previous:
                warnings.warn(f"{folder}: took over a stale lock: {_describe(previous)} ended without releasing it "
                              "(check its results before trusting them; a re-run resumes)", StaleLockWarning,
                              stacklevel=4)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(record).encode())
            os.fsync(fd)
        except BaseException:
            _release(path, fd)  # a lock we cannot record is not kept: the folder stays usable
            raise
        return fd
    raise FolderBusy("could not take the folder's lock (other runs keep taking it)", folder)


def _open_lock_file(path: Path, folder, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        raise
    except OSError as exc:
        raise OutputError.from_os_error(exc, folder) from None


def _acquire_with_flock(path: Path, folder) -> tuple[int, dict | None] | None:
    """The locked file and the record a dead holder left in it; None to try again."""
    fd = _open_lock_file(path, folder, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FolderBusy(f"in use by another run ({_describe(_read_record(path))}); wait for it to finish, "
                             "or choose another results folder", folder) from None
        raise OutputError.from_os_error(exc, folder) from None
    try:  # the holder before us may have removed the file we opened: lock the one in the folder
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd, _read_fd(fd)  # we hold the flock, so whoever wrote a record here is gone


def _acquire_exclusively(path: Path, folder) -> tuple[int, dict | None] | None:
    """Without flock: create the record file exclusively, taking over a dead process's record."""
    fd = _acquire_exclusively_once(path, folder)
    if fd is not None:
        return fd, None
    record = _read_record(path)
    if record is None and _younger_than(path, RECORD_GRACE_SECONDS):
        # an empty record is a writer between creating the file and writing into it
        raise FolderBusy("in use by another run that is just starting; wait for it to finish, or choose another "
                         "results folder", folder)
    if record and not _is_dead(record):
        where = "" if record.get("host") == socket.gethostname() else \
            f"; if that run is over, delete {path}"
        raise FolderBusy(f"in use by another run ({_describe(record)}); wait for it to finish, or choose another "
                         f"results folder{where}", folder)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead run's record: taken over (the warning comes with our record)
    fd = _acquire_exclusively_once(path, folder)
    return None if fd is None else (fd, record if record is not None else {"unreadable": True})


def _acquire_exclusively_once(path: Path, folder) -> int | None:
    try:
        return _open_lock_file(path, folder, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return None


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def _release(path: Path, fd: int) -> None:
    if fcntl is None:
        # the record is the lock; Windows cannot delete a file that is still open
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        return
    # remove the record while still holding the flock, so that a record found later always
    # belongs to a run that did not finish
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(fd)


def _read_fd(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return _parse(b"".join(chunks))


def _read_record(path: Path) -> dict | None:
    try:
        return _parse(path.read_bytes())
    except OSError:
        return None


def _parse(data: bytes) -> dict | None:
    if not data.strip():
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"unreadable": True}
    return record if isinstance(record, dict) else {"unreadable": True}


def _describe(record: dict | None) -> str:
    if not record or record.get("unreadable"):
        return "a run whose lock record cannot be read"
    command = " ".join(str(c) for c in record.get("command") or []) or "?"
    return f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')}: {command}"


def _is_dead(record: dict) -> bool:
    """Whether the record's process is known to have ended (only checkable on this host)."""
    if record.get("unreadable"):
        return True
    if record.get("host") != socket.gethostname():
        return False
    return not pid_alive(int(record.get("pid", -1)))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:
        pass
    if os.name == "nt":  # os.kill would end the process on Windows: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
