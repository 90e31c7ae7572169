"""The workspace lock: only one ``run`` works on a workspace at a time (README "Exactly once").

An advisory ``flock`` on ``.outreach.lock`` in the workspace: the kernel releases it when
the process dies, however it dies, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockedError, local_write_error

LOCK_FILE = ".outreach.lock"


@contextmanager
def workspace_lock(root: Path, wait: float = 0) -> Iterator[int]:
    """Hold the run lock; raise LockedError at once, or after ``wait`` seconds.

    Yields the locked descriptor: a child process that inherits it holds the lock too,
    until both have ended.
    """
    path = root / LOCK_FILE
    deadline = time.monotonic() + wait
    while True:
        fd, created = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                    raise LockedError(
                        f"another outreach run (pid {holder}) is working on {root.name}; "
                        "wait for it to finish, or pass --wait SECONDS"
                    ) from None
            finally:
                os.close(fd)
            time.sleep(0.1)
            continue
        if not _still_the_file(fd, path):
            # a run that could not write its pid removed the file it had created: this
            # lock is on a file no one else will open
            os.close(fd)
            continue
        break
    try:
        _write_pid(fd, path, created)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _open(path: Path) -> tuple[int, bool]:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR), False
    except OSError as exc:
        raise local_write_error(exc, path) or exc from None


def _still_the_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _write_pid(fd: int, path: Path, created: bool) -> None:
    """The pid first, then cut what is left of a longer old one: a failed write (a full
    disk) leaves the old content whole, and a file created for it is removed again, so
    that the lock file is never left empty or half-written."""
    pid = str(os.getpid()).encode()
    try:
        if os.pwrite(fd, pid, 0) != len(pid):
            raise OSError(errno.ENOSPC, "short write")
        os.ftruncate(fd, len(pid))
    except OSError as exc:
        if created:
            path.unlink(missing_ok=True)
        raise local_write_error(exc, path) or exc from None
