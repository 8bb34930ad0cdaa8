"""One save at a time into a model folder: an exclusive lock on a file beside it, and the leftovers of saves that
crashed removed before the next one writes.

Where the OS has ``flock`` (Linux, macOS) the lock is the kernel's: it ends with the process that held it, so a
crashed save never leaves a lock behind. Elsewhere the lock is the file's existence (created exclusively), and a
lock file naming a process that no longer runs on this host is taken over."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._errors import SaveInProgressError

try:
    import fcntl
except ImportError:  # no flock (Windows): the lock is the lock file's existence
    fcntl = None

#: How long a save waits for another save into the same folder to finish.
WAIT_SECONDS = 30.0
#: A lock file that names no process (its writer died before writing it) counts as stale after this long.
UNNAMED_LOCK_SECONDS = 60.0


@contextmanager
def exclusive_save(path: Path, wait_seconds: float | None = None) -> Iterator[str]:
    """Hold ``.NAME.lock`` beside ``path`` while saving; yields a token unique to this save for temporary names.

    A lock left by a process that no longer runs (on this host) is taken
    over; one held by a live process is waited for, then refused with
    :class:`SaveInProgressError`. Once the lock is held, the temporary
    folders of earlier saves (``.NAME.partial-*``, ``.NAME.old-*``) are
    removed: no other save can be using them.
    """
    lock = path.parent / f".{path.name}.lock"
    wait = WAIT_SECONDS if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    take = _take_flock if fcntl is not None else _take_exclusive_file
    while (fd := take(lock)) is None:
        if time.monotonic() >= deadline:
            holder = _holder(lock)
            who = f"process {holder[0]} on {holder[1]}" if holder else "another process"
            raise SaveInProgressError(
                f"another save into {path} is in progress ({who}); waited {wait:.0f} s. Save elsewhere or "
                f"try again; if no save is running, delete the lock file {lock}."
            ) from None
        time.sleep(0.05)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        for leftover in path.parent.glob(f".{path.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        olds = list(path.parent.glob(f".{path.name}.old-*"))
        if olds and not path.exists():  # a save killed between its two renames: put the previous model back
            os.replace(olds.pop(), path)
        for leftover in olds:
            shutil.rmtree(leftover, ignore_errors=True)
        yield f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    finally:
        _remove(lock)  # while still holding it: a waiter that then locks the removed file sees it is gone
        os.close(fd)


def _take_flock(lock: Path) -> int | None:
    """A descriptor of ``lock`` holding its exclusive ``flock``, or ``None`` while another process holds it."""
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:  # the holder we waited for removes the file as it lets go: a lock on that removed file guards nothing
        current = os.stat(lock).st_ino
    except FileNotFoundError:
        current = None
    if current != os.fstat(fd).st_ino:
        os.close(fd)
        return _take_flock(lock)
    return fd


def _take_exclusive_file(lock: Path) -> int | None:
    """A descriptor of a newly created ``lock``, or ``None`` while a live process's lock file exists."""
    while True:
        try:
            return os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            if not _stale(lock, _holder(lock)):
                return None
            _remove(lock)


def _holder(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, or ``None`` when it cannot be read yet."""
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _stale(lock: Path, holder: tuple[int, str] | None) -> bool:
    if holder is None:  # created but not written: its writer is mid-write, or died there
        try:
            return time.time() - lock.stat().st_mtime > UNNAMED_LOCK_SECONDS
        except OSError:
            return False  # removed meanwhile: the next attempt takes it
    pid, host = holder
    if host != socket.gethostname():
        return False  # a process on another machine (shared folder): its liveness cannot be checked
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def _remove(lock: Path) -> None:
    try:
        lock.unlink()
    except FileNotFoundError:
        pass
