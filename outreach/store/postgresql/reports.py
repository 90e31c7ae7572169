"""Reads for exports, campaign reports and the workspace status on PostgreSQL: the
statements of ``shared/reports.py``, streamed through a server-side cursor."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import Reports
from ..shared.dialect import POSTGRESQL
from ..shared.reports import ReportsSql

if TYPE_CHECKING:
    from . import PgStore
    from .sql import Connection

BATCH = 2000
_CURSORS = itertools.count()


class PgReports(ReportsSql, Reports):
    """Reports on PostgreSQL."""

    dialect = POSTGRESQL
    store: PgStore
    conn: Connection

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        # A named (server-side) cursor sends BATCH rows at a time; it lives in a
        # transaction of its own, ended when the reader stops, early or not.
        raw = self.store.raw
        with raw.transaction(), raw.cursor(name=f"outreach_stream_{next(_CURSORS)}") as cur:
            cur.itersize = BATCH
            cur.execute(sql, tuple(params))
            yield from cur
