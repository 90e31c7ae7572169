"""The consent ledger on PostgreSQL: append-only; the current consent is the latest row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import ConsentLedger, ConsentRow
from ..rows import chunks, dicts
from .sql import marks

if TYPE_CHECKING:
    from . import PgStore


class PgConsent(ConsentLedger):
    """The consent ledger on PostgreSQL (the triggers of m002 refuse any UPDATE or DELETE)."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.conn = store.conn

    def append_consent(self, rows: Iterable[ConsentRow]) -> int:
        """Append ledger rows; the caller holds the transaction. Returns how many."""
        return self.conn.executemany(
            "INSERT INTO consent (customer_id, channel, status, source, evidence, recorded_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            list(rows),
        )

    def current_consent_for(self, customer_id: str, channel: str) -> str | None:
        """The current status on one channel, or None when the ledger has nothing."""
        row = self.conn.execute(
            "SELECT status FROM consent WHERE customer_id = %s AND channel = %s "
            "ORDER BY id DESC LIMIT 1",
            (customer_id, channel),
        ).fetchone()
        return str(row[0]) if row else None

    def customers_with_history(self, ids: Sequence[str], channel: str) -> set[str]:
        """Which of ``ids`` have any ledger row on ``channel``."""
        found: set[str] = set()
        for chunk in chunks(ids):
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT DISTINCT customer_id FROM consent WHERE channel = %s "
                    f"AND customer_id IN ({marks(chunk)})",
                    [channel, *chunk],
                )
            )
        return found

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

    def consent_history(self, customer_id: str) -> list[dict[str, Any]]:
        """Every ledger row of a customer, oldest first."""
        cur = self.conn.execute(
            "SELECT channel, status, source, evidence, recorded_at FROM consent "
            "WHERE customer_id = %s ORDER BY id",
            (customer_id,),
        )
        return dicts(cur)

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
