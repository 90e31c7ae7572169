"""WAL checkpoints on a thread of their own, while a pass sends over the network.

In WAL mode SQLite copies the log back into the database file every thousand pages or so,
in the commit that crosses the mark (an automatic checkpoint, with an fsync): in a pass
sending 5,000 emails, 9 of its 185 commits took 4-12 ms instead of 1-2, and for that long
no session had its answer read. While a pass runs, its connection stops checkpointing
(``wal_autocheckpoint = 0``) and a thread on a connection of its own runs a passive
checkpoint every ``INTERVAL`` seconds. SQLite runs it without Python's lock, so it
does not hold up the event loop, and a passive checkpoint waits for no reader or writer: it
copies what it can, and the rest is copied by the next one.

Two passes may run at once on one connection (on two threads): the first to begin starts
the thread, the last to end stops it and gives the connection its automatic checkpoints back.
A checkpoint that fails (a full disk) is left to the next one, or to the automatic
checkpoints after the pass: the log only grows meanwhile, nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# seconds between two checkpoints while a pass runs: short enough that the log stays under
# the mark of another process's automatic checkpoints (at 0.5 s, `serve` beside a `run`
# found it over the mark and checkpointed in its own commits: 6 % fewer webhooks a second)
INTERVAL = 0.1
THREAD_NAME = "outreach-checkpoints"
log = logging.getLogger("outreach.store")


class Checkpoints:
    """The checkpoint thread of one connection, shared by the passes that run on it."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._lock = threading.Lock()
        self._users = 0
        self._automatic = 0  # the connection's own setting, given back after the last pass
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Checkpoint on the thread while the block runs."""
        with self._lock:
            if self._users == 0:
                self._start()  # counted once started: a pass it failed for holds nothing
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._end()

    def _start(self) -> None:
        self._automatic = int(self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        # a connection broken meanwhile (the pass's own error is on its way) has no use for it
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {self._automatic}")

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.debug("no checkpoint thread for %s: %s", self.path.name, exc)
            return
        try:
            while not self._stop.wait(INTERVAL):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    log.debug("checkpoint of %s: %s", self.path.name, exc)
        finally:
            conn.close()
