"""The PostgreSQL store: the same interface and guarantees as SQLite, for many processes on
many hosts (``pip install 'outreach[postgresql]'``).

One psycopg connection per open store, in autocommit mode; ``write()`` is a transaction.
Where SQLite serialises writers with one lock, PostgreSQL lets them run side by side, so
the guarded UPDATEs carry the weight: a claim locks its rows with ``FOR UPDATE SKIP
LOCKED``, and every state change is still one UPDATE guarded by the old state.

The URL names the server; the password comes from libpq (``PGPASSWORD``, a passfile or a
service), never from ``outreach.toml``, and no message shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from ...errors import StoreBusy, StoreError
from ..interface import Store
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


class PgStore(Store):
    """An open workspace database on a PostgreSQL server."""

    def __init__(self, conn: psycopg.Connection[Any], name: str) -> None:
        from .consent import PgConsent
        from .conversations import PgConversations
        from .customers import PgCustomers
        from .deliveries import PgDeliveries
        from .limits import PgLimits
        from .mail import PgMail
        from .meta import PgMeta
        from .reports import PgReports
        from .workers import PgWorkers

        self.raw = conn
        self.conn = Connection(conn)
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

    def applied_migrations(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = 'outreach' ORDER BY id"
            )
        ]

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction; nested uses become savepoints of the outer one."""
        with self.raw.transaction():
            yield self.conn

    def when_unlocked(self, work: Callable[[], T]) -> T:
        """Run ``work`` again after a serialization failure or deadlock (PostgreSQL rolled
        it back whole), for up to the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = 0.005
        while True:
            try:
                return work()
            except RETRYABLE as exc:
                if time.monotonic() > deadline:
                    raise StoreBusy(f"{self.name}: {exc}") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def poll_for_locks(self) -> None:
        """Nothing to tune: writers do not wait for one database lock here."""

    def check(self) -> None:
        try:
            self.conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self.name}: {_reason(exc)}") from None

    def use_large_cache(self) -> None:
        """The server sizes its own cache."""

    def close(self) -> None:
        self.raw.close()


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


def _reason(exc: BaseException) -> str:
    """The server's own reason, on one line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def open_postgresql(url: str, *, allow_incomplete: bool = False) -> PgStore:
    """Connect to the database at ``url`` and migrate it (refusing a newer one, and one
    that ``store copy`` has not finished, unless ``allow_incomplete``)."""
    name = display_name(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(
            f"{name}: cannot connect ({_reason(exc)}); check the server, the database name "
            "and the password (PGPASSWORD, ~/.pgpass or a service file)"
        ) from None
    store = PgStore(conn, name)
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
