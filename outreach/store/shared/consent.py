"""The consent ledger's reads that both stores write alike (the ledger is append-only; the
current consent is the latest row)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rows import chunks, dicts
from .dialect import TableStatements


class ConsentSql(TableStatements):
    """Mixed into each store's consent ledger."""

    def current_consent_for(self, customer_id: str, channel: str) -> str | None:
        """The current status on one channel, or None when the ledger has nothing."""
        row = self._execute(
            "SELECT status FROM consent WHERE customer_id = ? AND channel = ? "
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
                for r in self._execute(
                    f"SELECT DISTINCT customer_id FROM consent WHERE channel = ? "
                    f"AND customer_id IN ({self._marks(chunk)})",
                    [channel, *chunk],
                )
            )
        return found

    def consent_history(self, customer_id: str) -> list[dict[str, Any]]:
        """Every ledger row of a customer, oldest first."""
        cur = self._execute(
            "SELECT channel, status, source, evidence, recorded_at FROM consent "
            "WHERE customer_id = ? ORDER BY id",
            (customer_id,),
        )
        return dicts(cur)
