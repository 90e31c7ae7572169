"""Delivery and occurrence reads and provider-status moves written once for both stores:
their SQL differs only in the placeholder (``?`` on SQLite, ``%s`` on PostgreSQL; see
``shared/dialect.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .interface import DELIVERY_COLUMNS
from .rows import chunks, iter_dicts
from .shared.dialect import Statements


class DeliveryLookups(Statements):
    """Mixed into each store's deliveries; ``conn`` is that store's connection."""

    def insert_reply(self, row: Sequence[Any]) -> None:
        """Insert one non-campaign delivery (follow-up, keyword reply, agent reply), in
        DELIVERY_COLUMNS order."""
        cols = ", ".join(f'"{c}"' for c in DELIVERY_COLUMNS)
        self._execute(
            f"INSERT INTO deliveries ({cols}) VALUES ({self._marks(DELIVERY_COLUMNS)})", tuple(row)
        )

    def apply_status(
        self,
        provider_message_id: str,
        status: str,
        at: str,
        error: str | None = None,
        reason: str | None = None,
        *,
        from_states: Sequence[str],
    ) -> int:
        """Move the delivery with this provider message id to ``status``, never backwards.

        Returns how many deliveries changed (0 for an unknown id, a stale or repeated event).
        """
        sources = tuple(from_states)
        if not sources:
            return 0
        states = self._marks(sources)
        if status == "failed":
            cur = self._execute(
                f"UPDATE deliveries SET status = 'failed', error = coalesce(?, error), "
                f"reason = coalesce(?, reason, 'provider'), updated_at = ? "
                f"WHERE provider_message_id = ? AND status IN ({states})",
                (error, reason, at, provider_message_id, *sources),
            )
        else:
            cur = self._execute(
                f"UPDATE deliveries SET status = ?, updated_at = ?, "
                f"sent_at = CASE WHEN ? IN ('sent', 'delivered', 'read') "
                f"THEN coalesce(sent_at, ?) ELSE sent_at END "
                f"WHERE provider_message_id = ? AND status IN ({states})",
                (status, at, status, at, provider_message_id, *sources),
            )
        return int(cur.rowcount)

    def customer_of_sent_message(self, provider_message_id: str) -> str | None:
        """The customer a message with this provider id (an email's Message-ID) was sent to.

        Every Message-ID outreach writes is ``<DELIVERY-ID@domain>``, so the delivery id in it
        is tried too (the outbox records its own provider ids).
        """
        delivery_id = provider_message_id.strip("<> ").split("@")[0]
        row = self._execute(
            "SELECT customer_id FROM deliveries WHERE provider_message_id IN (?, ?) OR id = ? "
            "LIMIT 1",
            (provider_message_id, provider_message_id.strip("<> "), delivery_id),
        ).fetchone()
        return str(row[0]) if row else None

    def delivery_outcome(self, delivery_id: str) -> dict[str, Any] | None:
        """status, reason and error of one delivery."""
        row = self._execute(
            "SELECT status, reason, error, channel FROM deliveries WHERE id = ?", (delivery_id,)
        ).fetchone()
        if row is None:
            return None
        return {"status": row[0], "reason": row[1], "error": row[2], "channel": row[3]}

    def delivery_outcomes(self, delivery_ids: Iterable[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in chunks(list(delivery_ids)):
            cur = self._execute(
                "SELECT id, customer_id, channel, status, reason, error FROM deliveries "
                f"WHERE id IN ({self._marks(chunk)})",
                chunk,
            )
            out.extend(iter_dicts(cur))
        return out

    def delivery_status_counts(self, delivery_ids: Iterable[str]) -> dict[str, int]:
        """status → how many of these deliveries have it."""
        counts: dict[str, int] = {}
        for chunk in chunks(list(delivery_ids)):
            for status, n in self._execute(
                f"SELECT status, count(*) FROM deliveries WHERE id IN ({self._marks(chunk)}) "
                "GROUP BY status",
                chunk,
            ):
                counts[status] = counts.get(status, 0) + n
        return counts

    def occurrence_status(self, campaign: str, occurrence: str) -> str | None:
        row = self._execute(
            "SELECT status FROM occurrences WHERE campaign = ? AND occurrence = ?",
            (campaign, occurrence),
        ).fetchone()
        return str(row[0]) if row else None

    def known_occurrences(self, campaign: str) -> dict[str, str]:
        """occurrence → status for one campaign."""
        rows = self._execute(
            "SELECT occurrence, status FROM occurrences WHERE campaign = ?", (campaign,)
        )
        return dict(rows.fetchall())

    def count_due(self, now: str, channels: Sequence[str] | None = None) -> int:
        """How many deliveries a send pass at ``now`` would pick up (on ``channels``)."""
        sql = (
            "SELECT count(*) FROM deliveries WHERE status IN ('queued', 'deferred') "
            "AND not_before <= ?"
        )
        params: list[Any] = [now]
        if channels is not None:
            sql += f" AND channel IN ({self._marks(channels) or 'NULL'})"
            params.extend(channels)
        row = self._execute(sql, params).fetchone()
        return int(row[0])

    def occurrence_survey(self, campaign: str, occurrence: str) -> dict[str, Any] | None:
        row = self._execute(
            "SELECT survey FROM occurrences WHERE campaign = ? AND occurrence = ?",
            (campaign, occurrence),
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def summarize(
        self, keys: Iterable[tuple[str, str]]
    ) -> Iterator[tuple[str, str, dict[str, int]]]:
        """Per (campaign, occurrence): counts by status."""
        for campaign, occurrence in keys:
            by_status = dict(
                self._execute(
                    "SELECT status, count(*) FROM deliveries WHERE campaign = ? AND occurrence = ? "
                    "AND purpose = 'campaign' GROUP BY status",
                    (campaign, occurrence),
                ).fetchall()
            )
            yield campaign, occurrence, by_status

    def queue_rows(self, limit: int | None) -> Iterator[dict[str, Any]]:
        """Deliveries still to be sent, or whose fate is unknown, soonest first."""
        sql = (
            "SELECT d.id, d.campaign, d.occurrence, d.customer_id, d.channel, d.purpose, d.status, "
            "d.reason, d.not_before, d.attempts FROM deliveries d "
            "WHERE d.status IN ('queued', 'deferred', 'sending', 'unknown') "
            "ORDER BY d.status = 'unknown' DESC, d.not_before, d.id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return iter_dicts(self._execute(sql))

    def due_reply_ids(self, now: str, limit: int) -> list[str]:
        """Queued replies due by ``now``, oldest first (deliveries_due serves it)."""
        rows = self._execute(
            "SELECT id FROM deliveries WHERE status = 'queued' AND not_before <= ? "
            "AND purpose != 'campaign' ORDER BY not_before LIMIT ?",
            (now, limit),
        ).fetchall()
        return [str(row[0]) for row in rows]
