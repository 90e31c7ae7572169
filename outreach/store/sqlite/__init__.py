"""The embedded store: one SQLite file in WAL mode, reached through sqlite-utils.

``open_sqlite`` applies pending migrations and refuses a database written by a newer
outreach. Each concern of the interface is one class over the same connection.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

from sqlite_utils import Database

from ...errors import DamagedStoreError, DiskFullError, OutreachError, StoreBusy, StoreError
from ..interface import Store
from .checkpoints import Checkpoints
from .migrations import migrations

BUSY_TIMEOUT_MS = 30_000
# PRAGMA quick_check reads every page: about 1.3 ms per MiB here (1.1 s for a database of
# a million customers and deliveries, twice the 0.5 s of a run that then has nothing to
# do). Up to this size it runs whenever the database is opened; beyond it SQLite's checks
# of each page a command reads still stop that command, and `outreach store check` (the
# full integrity_check) is the scheduled job for a large workspace.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
_LOW_SPACE_BYTES = 1024 * 1024  # below this, an I/O error while writing is a full disk

T = TypeVar("T")


class SqliteStore(Store):
    """An open workspace database file."""

    def __init__(self, db: Database, path: Path | None) -> None:
        from .consent import SqliteConsent
        from .conversations import SqliteConversations
        from .customers import SqliteCustomers
        from .deliveries import SqliteDeliveries
        from .limits import SqliteLimits
        from .mail import SqliteMail
        from .meta import SqliteMeta
        from .reports import SqliteReports
        from .workers import SqliteWorkers

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
        self.workers = SqliteWorkers(self)
        self.limits = SqliteLimits(self)
        self._checkpoints = Checkpoints(self.conn, path) if path is not None else None

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
        try:
            # inside the try: a signal handled the moment BEGIN returns (SIGTERM raises
            # SystemExit) must roll back too, or the write lock stays held while the
            # process unwinds, and every other process waits on it
            self.conn.execute("BEGIN IMMEDIATE")
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    @contextmanager
    def joined(self) -> Iterator[sqlite3.Connection]:
        """The caller's write transaction, else one of its own (``write``).

        For the steps of a send pass's claim-and-record transaction: without the savepoint a
        nested ``write`` takes (two statements more, each compiled anew, and every page
        changed after it copied to the statement journal). Whatever goes wrong in them
        propagates, and the caller's transaction rolls back whole.
        """
        if self.conn.in_transaction:
            yield self.conn
            return
        with self.write() as conn:
            yield conn

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

    def retrying(self, work: Callable[[], T]) -> T:
        """``work()``: nothing rolls a SQLite transaction back to be run again (a busy
        database is waited for at BEGIN IMMEDIATE, before anything was done)."""
        return work()

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

    def checkpoints_aside(self) -> AbstractContextManager[None]:
        """The WAL checkpoints on a thread while the block runs (``checkpoints.py``)."""
        return self._checkpoints.aside() if self._checkpoints else nullcontext()

    def close(self) -> None:
        self.conn.close()


def open_sqlite(path: Path | str | None, *, check: bool = True) -> SqliteStore:
    """Open (creating if needed) and migrate the database at ``path``; None: in memory.
    ``check=False``: no quick_check (a second connection of a process that has checked
    the file already)."""
    file = Path(path) if path is not None else None
    try:
        if file is not None:
            _create_or_refuse_empty(file)
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
        if check and file is not None and file.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            problems = quick_check(store)
            if problems:
                conn.close()
                raise damaged(file, problems[0])
        _migrate(store)
    except sqlite3.DatabaseError as exc:
        known = database_error(exc, file)
        if known is not None:
            raise known from None
        where = file.name if file else "database"
        raise StoreError(
            f"{where}: cannot open the database ({exc}); check that it is an outreach "
            "database and that its folder is writable"
        ) from None
    except OSError as exc:
        raise StoreError(f"{file}: cannot open the database ({exc.strerror})") from None
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


def _create_or_refuse_empty(file: Path) -> None:
    """Create a missing database whole (made under a temporary name, then linked into
    place), so that ``file`` never exists empty; refuse an existing empty file: it is a
    lost database (a full disk, a bad copy), not a new workspace."""
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        size = None
    if size == 0:
        wal = file.with_name(file.name + "-wal")
        if not (wal.exists() and wal.stat().st_size > 0):
            raise DamagedStoreError(
                f"{file}: the file is empty (0 bytes), not a database; restore it from your "
                "backup (see the README, Backups), or delete it to start an empty workspace"
            )
    if size is not None:
        return
    # unique per call: two threads of one process (serve's writer and reply sender) may
    # create the same missing database at once
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # kept in the file's header
            _migrate(SqliteStore(Database(conn), tmp))
        finally:
            conn.close()
        try:
            os.link(tmp, file)
        except FileExistsError:
            pass  # another process created it first, and theirs is as good
        except OSError:
            # no hard links on this file system: create it in place, as SQLite does
            # (a crash in between can then leave it empty)
            return
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def quick_check(store: SqliteStore) -> list[str]:
    """``PRAGMA quick_check``: the damage found (at most 20 lines); [] when sound."""
    return _check(store.conn, "quick_check(20)")


def integrity_check(path: Path) -> list[str]:
    """The full ``PRAGMA integrity_check`` of the database at ``path``, opened read-only
    (nothing is migrated or written); [] when sound."""
    if not path.exists():
        raise StoreError(f"{path}: no such database")
    _create_or_refuse_empty(path)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _check(conn, "integrity_check(100)")
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        known = database_error(exc, path)
        if isinstance(known, DamagedStoreError):
            return [str(exc)]
        raise known or StoreError(f"{path}: cannot read the database ({exc})") from None


def _check(conn: sqlite3.Connection, pragma: str) -> list[str]:
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}")]
    return [] if rows == ["ok"] else rows


def damaged(file: Path | None, detail: str) -> DamagedStoreError:
    """The one line for a damaged database, with the way out."""
    detail = " ".join(detail.replace("*** in database main ***", "").split())
    return DamagedStoreError(
        f"{file or 'database'}: the database is damaged ({detail}); stop writing to it and "
        "recover it (see the README, Backups: restore the latest backup, or sqlite3 .recover)"
        "; outreach store check lists the damage"
    )


def database_error(exc: sqlite3.Error, file: Path | None) -> OutreachError | None:
    """The one-line error for an SQLite failure the user must act on (a full disk, a
    damaged or read-only file); None for anything else (a bug, or busy: the caller's)."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    where = file if file is not None else "database"
    if code == sqlite3.SQLITE_FULL:
        return DiskFullError(where)
    if code == sqlite3.SQLITE_CORRUPT:
        return damaged(file, str(exc))
    if code == sqlite3.SQLITE_NOTADB:
        return DamagedStoreError(
            f"{file.name if file else 'database'}: cannot open the database ({exc}); check "
            "that it is an outreach database, or restore it (see the README, Backups)"
        )
    if code == sqlite3.SQLITE_IOERR:
        if file is not None and low_on_space(file):
            return DiskFullError(where)
        return StoreError(f"{where}: input/output error ({exc}); check the disk (dmesg)")
    if code == sqlite3.SQLITE_READONLY:
        return StoreError(
            f"{where}: the database is read-only ({exc}); check the file's "
            "permissions and that its file system is mounted read-write"
        )
    return None


def low_on_space(file: Path) -> bool:
    """Whether the file system holding ``file`` has (nearly) no room left."""
    try:
        stat = os.statvfs(file.parent)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < _LOW_SPACE_BYTES


def store_path(store: object) -> Path | None:
    """The file of a SQLite store (None for any other store): where its faults are."""
    return store.path if isinstance(store, SqliteStore) else None
