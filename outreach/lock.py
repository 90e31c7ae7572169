"""The workspace lock: only one ``run`` works on a workspace at a time (SPEC §6).

An advisory ``flock`` on ``.outreach.lock`` in the workspace: the kernel releases it when
the process dies, however it dies, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockedError

LOCK_FILE = ".outreach.lock"


@contextmanager
def workspace_lock(root: Path, wait: float = 0) -> Iterator[int]:
    """Hold the run lock; raise LockedError at once, or after ``wait`` seconds.

    Yields the locked descriptor: a child process that inherits it holds the lock too,
    until both have ended.
    """
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                    raise LockedError(
                        f"another outreach run (pid {holder}) is working on {root.name}; "
                        "wait for it to finish, or pass --wait SECONDS"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the flock
