"""The connection as the PostgreSQL store's modules use it: str statements, ``%s`` marks.

The store builds statements from its own fragments and column names it has checked, and
passes every value as a parameter. A batch travels as one statement, never one per row:
rows as columns of arrays (``unnest``), lists of ids as one array (``= ANY(%s)``), new
rows with COPY. A statement per row costs the server a parse, plan and executor start
each (a run of 100,000 deliveries spent most of its time there), and its text is the
same whatever the batch size, so psycopg prepares it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg


def marks(values: Sequence[object]) -> str:
    """``%s, %s, …``: one placeholder per value."""
    return ", ".join("%s" for _ in values)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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


class Connection:
    """One psycopg connection in autocommit mode; ``transaction()`` groups statements."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        return self.raw.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...]:
        """The one row a query always returns (an aggregate, a RETURNING)."""
        row = self.raw.execute(sql, params).fetchone()
        if row is None:
            raise LookupError(f"no row from {sql[:60]}")
        return tuple(row)

    def copy_rows(self, table: str, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Append ``rows`` to ``table`` with COPY (the fastest way in: no statement per
        row); how many. A duplicate key fails the whole COPY."""
        n = 0
        sql = f"COPY {table} ({', '.join(quote(c) for c in names)}) FROM STDIN"
        with self.raw.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        return n

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> int:
        """Run ``sql`` once per row (psycopg pipelines them); how many rows changed in all."""
        cur = self.raw.cursor()
        cur.executemany(sql, rows)
        return max(cur.rowcount, 0)
