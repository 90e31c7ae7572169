"""The connection as the PostgreSQL store's modules use it: str statements, ``%s`` marks.

The store builds statements from its own fragments and column names it has checked, and
passes every value as a parameter.
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

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> int:
        """Run ``sql`` once per row (psycopg pipelines them); how many rows changed in all."""
        cur = self.raw.cursor()
        cur.executemany(sql, rows)
        return max(cur.rowcount, 0)
