"""Connections to a PostgreSQL database: one small pool per URL and process, and what a
lost connection looks like.

Every store a process opens on a URL (``serve``'s request handler and its reply sender,
heartbeat threads) takes one connection from the same ``psycopg_pool.ConnectionPool`` and
holds it until it closes, so statements never wait for the pool; the pool checks a
connection before handing it out and discards broken ones, and a store whose connection
was lost hands it back and takes a fresh one (``Connector.acquire``).

The pool connects in its own thread and only logs why it could not, so the connections
it makes remember the server's reason: a URL that does not connect is one line naming the
server and that reason, at once on first use, after ``RECONNECT_S`` of tries after a loss.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
from typing import Any, Self

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import StoreError

RECONNECT_S = 30.0  # how long a store tries to get a connection back before it gives up
CONNECT_TIMEOUT_S = 10
POOL_SIZE = 8  # connections per process and URL; past that a store connects on its own
_POLL_S = 0.05
# a lost session: the server went away (class 08), or was shut down or restarted under
# it (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now)
_LOST_STATES = frozenset({"57P01", "57P02", "57P03"})

# url → (how many connection attempts have failed, the server's reason for the last one)
_failures: dict[str, tuple[int, str]] = {}
_connectors: dict[str, Connector] = {}
_discards = itertools.count()
# psycopg logs each failed attempt of the pool, and each rollback a lost session could
# not do; the store says what matters, in one line, itself
_psycopg_log = logging.getLogger("psycopg")
_psycopg_log.addHandler(logging.NullHandler())
_psycopg_log.propagate = False
_lock = threading.Lock()


class CannotConnect(StoreError):
    """No connection to the database could be made; ``why`` is the server's reason."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(
            f"{name}: cannot connect ({why}); check the server, the database name and the "
            "password (PGPASSWORD, ~/.pgpass or a service file)"
        )
        self.why = why


def reason(exc: BaseException) -> str:
    """The server's own reason, on one line (libpq's "connection to server at … failed:"
    preamble and its hint left out, as is the statement a server error quotes)."""
    diag = getattr(exc, "diag", None)
    text = " ".join(str(getattr(diag, "message_primary", None) or exc).split())
    for mark in ("FATAL: ", " failed: "):
        if mark in text:
            text = text.rsplit(mark, 1)[1]
            break
    return text.split(" Is the server running", 1)[0].strip() or type(exc).__name__


def connection_lost(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    """Whether ``exc`` means the session is gone (anything it had open was rolled back)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, pg_errors.QueryCanceled):
        return False  # a statement timeout: the session is still there
    state = exc.sqlstate
    if state is None:
        # no answer from the server at all: the socket failed under a statement or a
        # pipeline ("server closed the connection unexpectedly", "sending query failed");
        # the session cannot be trusted even where libpq has not marked it bad yet
        return True
    if state.startswith("08") or state in _LOST_STATES:
        return True
    return conn is not None and (conn.closed or conn.broken)


class _RememberingConnection(psycopg.Connection[Any]):
    """A connection that, when it cannot be made, leaves the reason for ``Connector``."""

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            with _lock:
                count, _ = _failures.get(conninfo, (0, ""))
                _failures[conninfo] = (count + 1, reason(exc))
            raise


def _discard_session(conn: psycopg.Connection[Any]) -> None:
    # The next store gets a clean session: no temp tables, settings, session locks or
    # prepared plans of the last one (a plan prepared before another session changed the
    # schema would fail). psycopg forgets its own list of prepared statements when it sees
    # DISCARD ALL succeed, but only for a statement text new to the connection: hence the
    # number.
    conn.execute(f"DISCARD ALL -- {next(_discards)}")


class Connector:
    """Connections to one database URL for this process."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            connection_class=_RememberingConnection,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            min_size=0,
            max_size=POOL_SIZE,
            check=ConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_S,
            max_idle=60.0,
            num_workers=1,
            name=name,
            open=True,
        )

    def acquire(self, patience: float = 0.0) -> psycopg.Connection[Any]:
        """A working connection; StoreError with the server's reason once ``patience``
        seconds of attempts have failed (0: after the first failed attempt)."""
        deadline = time.monotonic() + patience
        failed_before = _failures.get(self.url, (0, ""))[0]
        while True:
            try:
                return self.pool.getconn(timeout=_POLL_S)
            except PoolTimeout:
                pass
            failed, why = _failures.get(self.url, (0, ""))
            if failed > failed_before and time.monotonic() >= deadline:
                raise CannotConnect(self.name, why)
            stats = self.pool.get_stats()
            if stats["pool_size"] >= POOL_SIZE and not stats.get("pool_available"):
                # every pooled connection is taken: this store gets one of its own
                return self._connect_alone()
            if failed == failed_before and time.monotonic() >= deadline + CONNECT_TIMEOUT_S:
                raise CannotConnect(self.name, "no answer from the server")

    def _connect_alone(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise CannotConnect(self.name, reason(exc)) from None

    def release(
        self, conn: psycopg.Connection[Any], *, end: bool = False, lost: bool = False
    ) -> None:
        """Give a connection back, its session reset first, so that what the store held
        (session locks) is released when this returns, as when a connection of its own
        closes; ``end``: close it after the reset instead of keeping it (nothing may use
        it again); ``lost``: its session failed, close it without a word to the server. A
        broken one is discarded (the pool makes another when asked)."""
        pooled = getattr(conn, "_pool", None) is self.pool
        end = end or lost
        if not lost and not conn.closed and not conn.broken:
            try:
                _discard_session(conn)
            except Exception:  # a session in no state to be reset is not reused
                end = True
        if end:
            conn.close()
        if pooled:
            try:
                self.pool.putconn(conn)
                return
            except Exception:  # the pool is closing: just close the connection
                pass
        conn.close()


def connector(url: str, name: str) -> Connector:
    """This process's connections to ``url`` (made on first use)."""
    with _lock:
        found = _connectors.get(url)
        if found is None:
            found = _connectors[url] = Connector(url, name)
        return found


@atexit.register
def _close_pools() -> None:
    with _lock:
        pools = [c.pool for c in _connectors.values()]
        _connectors.clear()
    for pool in pools:
        pool.close(timeout=1.0)


def _forget_pools() -> None:
    # a forked child shares the parent's sockets and has none of its pool threads
    _connectors.clear()


os.register_at_fork(after_in_child=_forget_pools)
