"""The connection as the PostgreSQL store's modules use it: str statements, ``%s`` marks.

The store builds statements from its own fragments and column names it has checked, and
passes every value as a parameter. A batch travels as one statement, never one per row:
rows as columns of arrays (``unnest``), lists of ids as one array (``= ANY(%s)``), new
rows with COPY. A statement per row costs the server a parse, plan and executor start
each (a run of 100,000 deliveries spent most of its time there), and its text is the
same whatever the batch size, so psycopg prepares it once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg

from ..rows import quote

P = ParamSpec("P")
R = TypeVar("R")
READ_TRIES = 3  # a read outside a transaction is asked this often across lost sessions


def marks(values: Sequence[object]) -> str:
    """``%s, %s, …``: one placeholder per value."""
    return ", ".join("%s" for _ in values)


def literals(values: Sequence[str]) -> str:
    """``'a', 'b'``: the store's own constants (delivery states) written into a statement,
    so that the planner can match them against a partial index's predicate (a parameter
    would hide them from a prepared, generic plan)."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values) or "NULL"


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as ``width`` lists of values, one per column: the arrays ``unnest`` reads."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def unit_of_work(method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """A store method that writes in a transaction of its own, made a unit of work: called
    outside any transaction, it is run again after a lost connection or a deadlock
    (``PgStore.retrying``); inside one, the caller's unit is the one re-run."""

    def run(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.store.retrying(lambda: method(self, *args, **kwargs))  # type: ignore[no-any-return]

    return functools.update_wrapper(run, method)


class Connection:
    """One psycopg connection in autocommit mode; ``transaction()`` groups statements.

    ``on_lost`` (the store's) is told when a statement finds the session gone: outside a
    transaction a read is simply asked again on the connection it puts in ``raw``;
    anything else is left to the unit of work that ran it (``PgStore.retrying``).
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        on_lost: Callable[[psycopg.Error, bool], None] | None = None,
    ) -> None:
        self.raw = conn
        self.on_lost = on_lost
        self.depth = 0  # transactions open on it (write() and its savepoints)
        # advisory locks of the session (planning): a lost session lost them, so a new one
        # takes them again before any work goes on (PgStore._reconnect)
        self.session_locks: list[int] = []

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        tries = 0
        while True:
            try:
                return self.raw.execute(sql, params)
            except psycopg.OperationalError as exc:
                tries += 1
                self._lost(exc, sql, again=tries < READ_TRIES)

    def one(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...]:
        """The one row a query always returns (an aggregate, a RETURNING)."""
        row = self.execute(sql, params).fetchone()
        if row is None:
            raise LookupError(f"no row from {sql[:60]}")
        return tuple(row)

    def copy_rows(self, table: str, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Append ``rows`` to ``table`` with COPY (the fastest way in: no statement per
        row); how many. A duplicate key fails the whole COPY."""
        n = 0
        sql = f"COPY {table} ({', '.join(quote(c) for c in names)}) FROM STDIN"
        try:
            with self.raw.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
        except psycopg.OperationalError as exc:
            self._lost(exc, "")
            raise  # not reached: a write is never asked again here
        return n

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> int:
        """Run ``sql`` once per row (psycopg pipelines them); how many rows changed in all."""
        cur = self.raw.cursor()
        try:
            cur.executemany(sql, rows)
        except psycopg.OperationalError as exc:
            self._lost(exc, "")
            raise  # not reached: a write is never asked again here
        return max(cur.rowcount, 0)

    def _lost(self, exc: psycopg.OperationalError, sql: str, *, again: bool = False) -> None:
        """Return (reconnected) when ``sql`` may simply be asked again; raise otherwise."""
        if self.on_lost is None:
            raise exc
        # a read outside a transaction changed nothing: the same question again is safe
        again = again and self.depth == 0 and sql.lstrip()[:6].upper() == "SELECT"
        self.on_lost(exc, again)
        if not again:
            raise exc
