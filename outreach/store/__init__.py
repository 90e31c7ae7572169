"""The embedded store: one SQLite file in WAL mode, reached through sqlite-utils.

All SQL of outreach lives in this package; the rest of the code calls its functions, so
that another store (PostgreSQL) can later stand beside this one. ``open_store`` applies
pending migrations and refuses a database written by a newer outreach.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlite_utils import Database

from ..errors import StoreError
from .migrations import migrations

BUSY_TIMEOUT_MS = 30_000

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = 900) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``, for ``IN (?, ?, …)`` queries: SQLite takes
    a bounded number of parameters per statement."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def marks(values: Sequence[object]) -> str:
    """``?, ?, …``: one placeholder per value."""
    return ", ".join("?" for _ in values)


class Store:
    """An open workspace database."""

    def __init__(self, db: Database, path: Path | None) -> None:
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.path = path

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

    def use_large_cache(self) -> None:
        """64 MiB of page cache, for writing a large plan with its indexes in memory.

        Only the planner asks for it: a streaming export would otherwise fill the cache
        and grow its resident memory by as much.
        """
        self.conn.execute("PRAGMA cache_size = -65536")

    def close(self) -> None:
        self.conn.close()


def open_store(path: Path | str | None) -> Store:
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
        store = Store(db, file)
        _migrate(store)
    except sqlite3.DatabaseError as exc:
        where = file.name if file else "database"
        raise StoreError(
            f"{where}: cannot open the database ({exc}); check that it is an outreach "
            "database and that its folder is writable"
        ) from None
    return store


def _migrate(store: Store) -> None:
    known = {m.name for m in migrations._migrations}
    applied = {m.name for m in migrations.applied(store.db)}
    newer = sorted(applied - known)
    if newer:
        raise StoreError(
            f"{store.path.name if store.path else 'database'} was written by a newer outreach "
            f"(it has migration {newer[-1]}); upgrade outreach: pip install -U outreach"
        )
    if not migrations.pending(store.db):
        return
    # Two processes opening a new workspace at once must not both create tables.
    with store.write():
        migrations.apply(store.db)
