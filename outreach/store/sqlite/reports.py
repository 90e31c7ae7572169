"""Reads for exports, campaign reports and the workspace status on SQLite: the statements
of ``shared/reports.py``, streamed with ``fetchmany``."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import Reports
from ..shared.reports import ReportsSql

if TYPE_CHECKING:
    from . import SqliteStore

BATCH = 2000


class SqliteReports(ReportsSql, Reports):
    """Reports on SQLite."""

    store: SqliteStore
    conn: sqlite3.Connection

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        # A cursor of its own, so that another query on the connection cannot reset it.
        cur = self.conn.cursor()
        cur.arraysize = BATCH
        cur.execute(sql, tuple(params))
        try:
            while batch := cur.fetchmany():
                yield from batch
        finally:
            # A reader that stops early (a closed pipe) may finalize this after the
            # connection is closed; there is nothing left to release then.
            with contextlib.suppress(sqlite3.ProgrammingError):
                cur.close()
