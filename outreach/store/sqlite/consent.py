"""The consent ledger on SQLite: append-only; the current consent is the latest row.
Reads written alike on both stores are in ``shared/consent.py``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..interface import ConsentLedger, ConsentRow
from ..rows import chunks, marks
from ..shared.consent import ConsentSql

if TYPE_CHECKING:
    import sqlite3

    from . import SqliteStore


class SqliteConsent(ConsentSql, ConsentLedger):
    """The consent ledger on SQLite (the triggers of m002 refuse any UPDATE or DELETE)."""

    store: SqliteStore
    conn: sqlite3.Connection

    def append_consent(self, rows: Iterable[ConsentRow]) -> int:
        """Append ledger rows; the caller holds the transaction. Returns how many."""
        cur = self.conn.executemany(
            "INSERT INTO consent (customer_id, channel, status, source, evidence, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            list(rows),
        )
        return cur.rowcount

    def current_consent_many(self, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """customer id → {channel: current status}, for many customers (a planner's batch)."""
        out: dict[str, dict[str, str]] = {}
        for chunk in chunks(ids):
            rows = self.conn.execute(
                "SELECT customer_id, channel, status, max(id) FROM consent "
                f"WHERE customer_id IN ({marks(chunk)}) GROUP BY customer_id, channel",
                chunk,
            )
            for customer_id, channel, status, _ in rows:
                out.setdefault(customer_id, {})[channel] = status
        return out

    def consent_summary(self) -> dict[str, dict[str, int]]:
        """channel → {status: customers} over current consent."""
        rows = self.conn.execute(
            "SELECT channel, status, count(*) FROM ("
            "  SELECT channel, status, max(id) FROM consent GROUP BY customer_id, channel"
            ") GROUP BY channel, status ORDER BY channel"
        )
        out: dict[str, dict[str, int]] = {}
        for channel, status, n in rows:
            out.setdefault(channel, {})[status] = n
        return out
