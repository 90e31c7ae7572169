"""The consent ledger on PostgreSQL: append-only; the current consent is the latest row.
Reads written alike on both stores are in ``shared/consent.py``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..interface import ConsentLedger, ConsentRow
from ..shared.consent import ConsentSql
from ..shared.dialect import POSTGRESQL

if TYPE_CHECKING:
    from . import PgStore
    from .sql import Connection


class PgConsent(ConsentSql, ConsentLedger):
    """The consent ledger on PostgreSQL (the triggers of m002 refuse any UPDATE or DELETE)."""

    dialect = POSTGRESQL
    store: PgStore
    conn: Connection

    def append_consent(self, rows: Iterable[ConsentRow]) -> int:
        """Append ledger rows; the caller holds the transaction. Returns how many."""
        return self.conn.executemany(
            "INSERT INTO consent (customer_id, channel, status, source, evidence, recorded_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            list(rows),
        )

    def current_consent_many(self, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """customer id → {channel: current status}, for many customers (a planner's batch)."""
        out: dict[str, dict[str, str]] = {}
        if not ids:
            return out
        rows = self.conn.execute(
            "SELECT DISTINCT ON (customer_id, channel) customer_id, channel, status "
            "FROM consent WHERE customer_id = ANY(%s) ORDER BY customer_id, channel, id DESC",
            (list(ids),),
        )
        for customer_id, channel, status in rows:
            out.setdefault(customer_id, {})[channel] = status
        return out

    def consent_summary(self) -> dict[str, dict[str, int]]:
        """channel → {status: customers} over current consent."""
        rows = self.conn.execute(
            "SELECT channel, status, count(*) FROM ("
            "  SELECT DISTINCT ON (customer_id, channel) channel, status FROM consent"
            "  ORDER BY customer_id, channel, id DESC"
            ") AS current GROUP BY channel, status ORDER BY channel"
        )
        out: dict[str, dict[str, int]] = {}
        for channel, status, n in rows:
            out.setdefault(channel, {})[status] = n
        return out
