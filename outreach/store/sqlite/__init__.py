"""The embedded store: one SQLite file in WAL mode, reached through sqlite-utils.

``open_sqlite`` applies pending migrations and refuses a database written by a newer
outreach. Each concern of the interface is one class over the same connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlite_utils import Database

from ...errors import StoreBusy, StoreError
from ..interface import Store
from .migrations import migrations

BUSY_TIMEOUT_MS = 30_000

T = TypeVar("T")


class SqliteStore(Store):
    """An open workspace database file."""

    def __init__(self, db: Database, path: Path | None) -> None:
        from .consent import SqliteConsent
        from .conversations import SqliteConversations
        from .customers import SqliteCustomers
        from .deliveries import SqliteDeliveries
        from .mail import SqliteMail
        from .meta import SqliteMeta
        from .reports import SqliteReports

        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.path = path
        self.customers = SqliteCustomers(self)
        self.consent = SqliteConsent(self)
        self.deliveries = SqliteDeliveries(self)
        self.conversations = SqliteConversations(self)
        self.reports = SqliteReports(self)
        self.mail = SqliteMail(self)
        self.meta = SqliteMeta(self)

    @property
    def name(self) -> str:
        return self.path.name if self.path else "database"

    def applied_migrations(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE.

        IMMEDIATE takes the write lock up front, so two processes (``serve`` and ``run``)
        wait for each other through the busy timeout instead of failing with "database is
        locked" when a read transaction tries to become a write one.
        """
        if self.conn.in_transaction:
            with self.db.atomic():
                yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def poll_for_locks(self) -> None:
        # Take the write lock by polling (see when_unlocked), not SQLite's busy handler.
        self.conn.execute("PRAGMA busy_timeout = 0")

    def when_unlocked(self, work: Callable[[], T]) -> T:
        """Run a write transaction, retrying while another process holds the write lock.

        SQLite's own busy handler sleeps 25-100 ms between tries once it has waited a
        little, so against a ``run`` that commits every few milliseconds it keeps missing
        the short gaps between transactions and webhooks starve. Polling every millisecond
        or two catches them. A failed BEGIN IMMEDIATE has changed nothing, so the whole
        ``work`` is simply retried.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.0005
        while True:
            try:
                return work()
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if "locked" not in text and "busy" not in text:
                    # disk full, read-only file: nothing a retry mends
                    raise StoreError(f"{self.name}: {text}") from exc
                if time.monotonic() > deadline:
                    raise StoreBusy(f"{self.name}: {text}") from None
            time.sleep(pause)
            pause = min(pause * 1.5, 0.002)

    def check(self) -> None:
        try:
            self.conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.name}: {exc}") from None

    def use_large_cache(self) -> None:
        """64 MiB of page cache, for writing a large plan with its indexes in memory.

        Only the planner asks for it: a streaming export would otherwise fill the cache
        and grow its resident memory by as much.
        """
        self.conn.execute("PRAGMA cache_size = -65536")

    def close(self) -> None:
        self.conn.close()


def open_sqlite(path: Path | str | None) -> SqliteStore:
    """Open (creating if needed) and migrate the database at ``path``; None: in memory."""
    file = Path(path) if path is not None else None
    try:
        conn = sqlite3.connect(
            str(file) if file else ":memory:",
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if file is not None:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        db = Database(conn)
        store = SqliteStore(db, file)
        _migrate(store)
    except sqlite3.DatabaseError as exc:
        where = file.name if file else "database"
        raise StoreError(
            f"{where}: cannot open the database ({exc}); check that it is an outreach "
            "database and that its folder is writable"
        ) from None
    return store


def _migrate(store: SqliteStore) -> None:
    known = {m.name for m in migrations._migrations}
    applied = {m.name for m in migrations.applied(store.db)}
    newer = sorted(applied - known)
    if newer:
        raise StoreError(
            f"{store.name} was written by a newer outreach "
            f"(it has migration {newer[-1]}); upgrade outreach: pip install -U outreach"
        )
    if not migrations.pending(store.db):
        return
    # Two processes opening a new workspace at once must not both create tables.
    with store.write():
        migrations.apply(store.db)
