"""The PostgreSQL store: the same interface and guarantees as SQLite, for many processes on
many hosts (``pip install 'outreach[postgresql]'``).

One psycopg connection per open store, in autocommit mode, taken from the process's pool
for the URL (``connect.py``); ``write()`` is a transaction. Where SQLite serialises
writers with one lock, PostgreSQL lets them run side by side, so the guarded UPDATEs carry
the weight: a claim locks its rows with ``FOR UPDATE SKIP LOCKED``, and every state change
is still one UPDATE guarded by the old state.

Faults of the server are survived where that is safe. A lost session (a restart, a network
drop, a terminated backend) rolled back whatever it had not committed, and so do a
deadlock and a serialization failure: ``retrying`` takes a new connection (trying for up
to ``RECONNECT_S``) and runs the whole unit of work again. The one ambiguous moment is a
COMMIT whose answer never came; the transaction's id, asked just before, settles it on the
new connection (``pg_xact_status``), so committed work is never run twice. A read outside
any transaction is simply asked again.

The URL names the server; the password comes from libpq (``PGPASSWORD``, a passfile or a
service), never from ``outreach.toml``, and no message shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from ...errors import ConnectionLost, StoreBusy, StoreError
from ..interface import Store
from .connect import RECONNECT_S, CannotConnect, Connector, connection_lost, connector, reason
from .migrations import MIGRATIONS
from .sql import Connection

T = TypeVar("T")
MIGRATIONS_TABLE = "outreach_migrations"
# one advisory lock number for "migrating this database" (any constant will do)
_MIGRATION_LOCK = 0x6F757472  # "outr"
BUSY_TIMEOUT_S = 30.0
# the meta key ``store copy`` sets until its copy is verified
INCOMPLETE_COPY = "copy_incomplete"
# errors after which a whole transaction may simply be run again
RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
# sessions lost in a row under one unit of work before it gives up (each one came back)
MAX_LOSSES = 10


class PgStore(Store):
    """An open workspace database on a PostgreSQL server."""

    def __init__(self, source: Connector, conn: psycopg.Connection[Any], name: str) -> None:
        from .consent import PgConsent
        from .conversations import PgConversations
        from .customers import PgCustomers
        from .deliveries import PgDeliveries
        from .limits import PgLimits
        from .mail import PgMail
        from .meta import PgMeta
        from .reports import PgReports
        from .workers import PgWorkers

        self._source = source
        self._closed = False
        self.conn = Connection(conn, self._on_lost)
        self._name = name
        self.customers = PgCustomers(self)
        self.consent = PgConsent(self)
        self.deliveries = PgDeliveries(self)
        self.conversations = PgConversations(self)
        self.reports = PgReports(self)
        self.mail = PgMail(self)
        self.meta = PgMeta(self)
        self.workers = PgWorkers(self)
        self.limits = PgLimits(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection of the moment (a lost one is replaced)."""
        return self.conn.raw

    def applied_migrations(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = 'outreach' ORDER BY id"
            )
        ]

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction; nested uses become savepoints of the outer one.

        A lost session is ConnectionLost (nothing of the transaction was kept, unless it
        is found committed: then the block has simply succeeded)."""
        conn = self.conn
        if conn.depth:
            conn.depth += 1
            try:
                with conn.raw.transaction():
                    yield conn
            finally:
                conn.depth -= 1
            return
        if conn.raw.closed or conn.raw.broken:
            self._reconnect("the connection was closed")
        raw = conn.raw
        xid: str | None = None
        committing = False
        conn.depth = 1
        try:
            with raw.transaction():
                yield conn
                # what settles a COMMIT whose answer is lost; None: nothing was written
                row = raw.execute("SELECT pg_current_xact_id_if_assigned()::text").fetchone()
                xid = row[0] if row else None
                committing = True
        except psycopg.OperationalError as exc:
            if not connection_lost(exc, raw):
                raise
            if committing and xid is not None and self._committed(xid, exc):
                return
            raise self._lost(exc) from None
        finally:
            conn.depth = 0

    def retrying(self, work: Callable[[], T]) -> T:
        """Run ``work``, a whole unit of work, again after anything that rolled it back: a
        lost session (on a new connection), a deadlock or a serialization failure. Inside
        a transaction it runs once: the outermost unit is the one that can be re-run."""
        if self.conn.depth:
            return work()
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = 0.005
        losses = 0
        while True:
            try:
                return work()
            except RETRYABLE as exc:
                if time.monotonic() > deadline:
                    raise StoreBusy(f"{self.name}: {reason(exc)}") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
            except ConnectionLost as exc:
                losses += 1
                if losses > MAX_LOSSES:
                    raise
                self._reconnect(exc.why)

    def when_unlocked(self, work: Callable[[], T]) -> T:
        """``retrying``: on PostgreSQL, a writer is never waiting for one database lock."""
        return self.retrying(work)

    # -- lost sessions ----------------------------------------------------------------------

    def _lost(self, exc: BaseException) -> ConnectionLost:
        why = reason(exc)
        return ConnectionLost(
            f"{self.name}: the connection to the server was lost ({why}); "
            "run the command again once the server is back",
            why,
        )

    def _on_lost(self, exc: psycopg.Error, again: bool) -> None:
        """A statement found its session gone: reconnect for a read that may be asked again,
        or raise ConnectionLost for the unit of work to run again."""
        if not connection_lost(exc, self.conn.raw):
            raise exc
        if again:
            self._reconnect(reason(exc))
            return
        raise self._lost(exc) from None

    def _reconnect(self, why: str) -> None:
        """A new connection in place of the lost one, holding the session locks the lost
        one held; StoreError after RECONNECT_S, or when another process took a lock."""
        self._source.release(self.conn.raw, lost=True)
        try:
            self.conn.raw = self._source.acquire(patience=RECONNECT_S)
        except CannotConnect as exc:
            raise StoreError(
                f"{self.name}: the connection to the server was lost ({why}) and could not "
                f"be made again in {RECONNECT_S:.0f} s ({exc.why}); run the command again "
                "once the server is back"
            ) from None
        for key in self.conn.session_locks:
            # the server let the lost session's locks go: another process may hold one now
            row = self.conn.raw.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (row and row[0]):
                raise StoreError(
                    f"{self.name}: the connection to the server was lost ({why}) and another "
                    "process took over the planning lock it held; it plans the occurrence "
                    "now: run the command again to send"
                )

    def _committed(self, xid: str, exc: BaseException) -> bool:
        """Whether the transaction ``xid``, whose COMMIT went unanswered, committed."""
        unknown = StoreError(
            f"{self.name}: the connection was lost while committing ({reason(exc)}) and "
            "whether the commit happened cannot be told; see outreach queue before running "
            "the command again"
        )
        deadline = time.monotonic() + RECONNECT_S
        self._reconnect(reason(exc))
        while True:
            try:
                row = self.conn.raw.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()
            except psycopg.OperationalError as again:
                if not connection_lost(again, self.conn.raw) or time.monotonic() > deadline:
                    raise unknown from None
                self._reconnect(reason(again))  # lost once more: ask on another
                continue
            status = row[0] if row else None
            if status == "committed":
                return True
            if status == "aborted":
                return False
            if status != "in progress" or time.monotonic() > deadline:
                raise unknown
            time.sleep(0.05)  # the old session has not finished yet

    def poll_for_locks(self) -> None:
        """Nothing to tune: writers do not wait for one database lock here."""

    def check(self) -> None:
        try:
            self.conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self.name}: {reason(exc)}") from None

    def use_large_cache(self) -> None:
        """The server sizes its own cache."""

    def checkpoints_aside(self) -> AbstractContextManager[None]:
        """The server checkpoints on its own."""
        return nullcontext()

    def close(self) -> None:
        if not self._closed:  # once: the connection may be another store's by now
            self._closed = True
            # closed with a session lock held (a planner giving up): end the session, so
            # that nothing of the lock's work runs on a connection another store has now
            self._source.release(self.conn.raw, end=bool(self.conn.session_locks))


def is_postgresql_url(database: object) -> bool:
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


def display_name(url: str) -> str:
    """``postgresql://user@host:port/database`` without any password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    user = f"{info['user']}@" if info.get("user") else ""
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"postgresql://{user}{host}:{port}/{info.get('dbname') or ''}"


def open_postgresql(url: str, *, allow_incomplete: bool = False) -> PgStore:
    """Connect to the database at ``url`` and migrate it (refusing a newer one, and one
    that ``store copy`` has not finished, unless ``allow_incomplete``)."""
    name = display_name(url)
    source = connector(url, name)
    store = PgStore(source, source.acquire(), name)
    try:
        _migrate(store)
        if not allow_incomplete:
            row = store.conn.execute(
                "SELECT value FROM meta WHERE key = %s", (INCOMPLETE_COPY,)
            ).fetchone()
            if row is not None:
                raise StoreError(
                    f"{name} holds an incomplete copy of {row[0]} (store copy stopped "
                    "half-way); drop and recreate it, then run outreach store copy again"
                )
    except psycopg.Error as exc:
        store.close()
        raise StoreError(f"{name}: {reason(exc)}") from None
    except BaseException:
        store.close()
        raise
    return store


def _migrate(store: PgStore) -> None:
    conn = store.conn
    with store.write():
        # two processes opening a new database at once must not both create tables
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }
        if tables and MIGRATIONS_TABLE not in tables:
            raise StoreError(
                f"{store.name}: this database holds tables of another application "
                f"({', '.join(sorted(tables)[:3])}…); give outreach an empty database of "
                "its own (createdb outreach)"
            )
        if MIGRATIONS_TABLE not in tables:
            conn.execute(
                f"CREATE TABLE {MIGRATIONS_TABLE} (id BIGINT GENERATED ALWAYS AS IDENTITY "
                "PRIMARY KEY, migration_set TEXT NOT NULL, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL, UNIQUE (migration_set, name))"
            )
        applied = set(store.applied_migrations())
        known = {name for name, _ in MIGRATIONS}
        newer = sorted(applied - known)
        if newer:
            raise StoreError(
                f"{store.name} was written by a newer outreach (it has migration "
                f"{newer[-1]}); upgrade outreach: pip install -U 'outreach[postgresql]'"
            )
        for migration_name, migrate in MIGRATIONS:
            if migration_name not in applied:
                migrate(store.raw)
                conn.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) "
                    "VALUES ('outreach', %s, to_char(now() AT TIME ZONE 'UTC', "
                    '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\'))',
                    (migration_name,),
                )
