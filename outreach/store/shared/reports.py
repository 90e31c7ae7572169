"""Reads for exports, campaign reports and the workspace status, written once for both
stores; each streams an export its own way (``_stream``).

Everything here reads; nothing writes. Exports are generators over one cursor, so that
memory stays flat however many rows there are. Reports aggregate in SQL over the covering
index ``deliveries_report``, so a campaign of a million deliveries is counted without
bringing a row into Python.

On SQLite hot queries name their index (``INDEXED BY``): the planner, notably after
``ANALYZE``, picked ``deliveries_due`` for the status count and took five times as long,
and a missing index should fail loudly rather than quietly turn into a table scan.

Times are compared as the UTC ISO 8601 text the store keeps (``clock.iso``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..interface import SENT_STATUSES
from ..rows import iter_dicts
from .dialect import TableStatements


class ReportsSql(TableStatements):
    """Mixed into each store's reports, which streams with ``_stream``."""

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql`` (in this engine's placeholders), a batch at a time."""
        raise NotImplementedError  # each store streams its own way

    def _latest_campaign(self) -> str:
        # An inbound message without a survey response is attributed to the campaign of
        # the customer's latest campaign delivery sent before it. One seek per message in
        # the covering index deliveries_sent: cheap enough to do while streaming.
        return (
            f"(SELECT d.campaign FROM deliveries d{self.dialect.indexed_by('deliveries_sent')} "
            "WHERE d.customer_id = m.customer_id AND d.purpose = 'campaign' "
            "AND d.sent_at <= m.at ORDER BY d.sent_at DESC LIMIT 1)"
        )

    def iter_replies(
        self, *, campaign: str | None, since: str | None, until: str | None
    ) -> Iterator[tuple[Any, ...]]:
        """One tuple per inbound message, in REPLY_COLUMNS order, oldest first."""
        where, params = _time_filter(since, until)
        sql = (
            "SELECT m.at AS received_at, m.customer_id, c.name AS customer_name, m.channel, "
            f"coalesce(sr.campaign, m.campaign, {self._latest_campaign()}) AS campaign, "
            "sr.question, CASE WHEN sr.valid = 1 THEN sr.answer END AS answer, m.text, "
            "m.conversation_id, m.id AS message_id, m.external_id, coalesce(m.kind, 'text'), "
            "m.details "
            "FROM messages m "
            "LEFT JOIN customers c ON c.id = m.customer_id "
            "LEFT JOIN survey_responses sr ON sr.message_id = m.id "
            f"WHERE m.direction = 'in'{where}"
        )
        if campaign is not None:
            sql = f"SELECT * FROM ({sql}) AS r WHERE campaign = ?"
            params.append(campaign)
        sql += " ORDER BY received_at, message_id"
        return self._stream(self._sql(sql), params)

    def iter_conversation_messages(
        self, *, campaign: str | None, since: str | None, until: str | None
    ) -> Iterator[tuple[Any, ...]]:
        """One tuple per message, both directions, in CONVERSATION_COLUMNS order.

        ``campaign`` keeps the whole transcripts of the customers that campaign was planned
        for (agent replies carry no campaign, and a transcript with holes helps nobody).
        """
        where, params = _time_filter(since, until)
        if campaign is not None:
            where += (
                " AND m.customer_id IN (SELECT customer_id FROM deliveries "
                "WHERE campaign = ? AND purpose = 'campaign')"
            )
            params.append(campaign)
        sql = (
            "SELECT m.conversation_id, m.customer_id, c.name, m.direction, m.channel, m.at, "
            "m.subject, m.text, "
            "coalesce(m.campaign, sr.campaign, d.campaign, "
            f"CASE WHEN m.direction = 'in' THEN {self._latest_campaign()} END), "
            "m.delivery_id, m.id, coalesce(m.external_id, d.provider_message_id), "
            "coalesce(m.kind, 'text'), m.details "
            "FROM messages m "
            "LEFT JOIN customers c ON c.id = m.customer_id "
            "LEFT JOIN deliveries d ON d.id = m.delivery_id "
            "LEFT JOIN survey_responses sr ON sr.message_id = m.id "
            f"WHERE 1 = 1{where} ORDER BY m.conversation_id, m.at, m.id"
        )
        return self._stream(self._sql(sql), params)

    def campaign_in_store(self, campaign: str) -> bool:
        """Whether the database knows the campaign (an occurrence or a delivery)."""
        row = self._execute(
            "SELECT EXISTS (SELECT 1 FROM occurrences WHERE campaign = ?) "
            "OR EXISTS (SELECT 1 FROM deliveries WHERE campaign = ? AND purpose = 'campaign')",
            (campaign, campaign),
        ).fetchone()
        return bool(row[0])

    def stored_campaigns(self) -> list[str]:
        """Names of every campaign in the database."""
        rows = self._execute(
            "SELECT campaign FROM occurrences UNION "
            "SELECT DISTINCT campaign FROM deliveries WHERE purpose = 'campaign' "
            "AND campaign IS NOT NULL ORDER BY 1"
        )
        return [r[0] for r in rows]

    def occurrences(self, campaign: str) -> list[dict[str, Any]]:
        """The campaign's occurrences, oldest first: occurrence, kind, status, audience, survey."""
        cur = self._execute(
            "SELECT occurrence, kind, status, audience, survey FROM occurrences "
            "WHERE campaign = ? ORDER BY occurrence",
            (campaign,),
        )
        out = []
        for occurrence, kind, status, audience, survey in cur:
            out.append(
                {
                    "occurrence": occurrence,
                    "kind": kind,
                    "status": status,
                    "audience": audience,
                    "survey": json.loads(survey) if survey else None,
                }
            )
        return out

    def delivery_figures(self, campaign: str, occurrence: str | None) -> dict[str, Any]:
        """Deliveries by status, skips and failures by reason, and the first send time."""
        scope, params = _scope(campaign, occurrence)
        report = self.dialect.indexed_by("deliveries_report")
        by_status: dict[str, int] = {}
        first_sent: str | None = None
        for status, n, first in self._execute(
            f"SELECT status, count(*), min(sent_at) FROM deliveries{report} "
            f"WHERE {scope} GROUP BY status",
            params,
        ):
            by_status[status] = n
            if first is not None and (first_sent is None or first < first_sent):
                first_sent = first
        skipped = dict(
            self._execute(
                "SELECT coalesce(reason, 'unknown'), count(*) FROM deliveries"
                f"{report} WHERE {scope} AND status = 'skipped' "
                "GROUP BY 1 ORDER BY 2 DESC, 1",
                params,
            )
        )
        failed = dict(
            self._execute(
                "SELECT coalesce(nullif(reason, ''), nullif(error, ''), 'unknown'), count(*) "
                f"FROM deliveries{report} WHERE {scope} AND status = 'failed' "
                "GROUP BY 1 ORDER BY 2 DESC, 1",
                params,
            )
        )
        return {
            "by_status": by_status,
            "skipped": skipped,
            "failed": failed,
            "first_sent": first_sent,
        }

    def opted_out_after(self, campaign: str, occurrence: str | None, first_sent: str) -> int:
        """Customers of the campaign with a consent revocation recorded at or after first_sent."""
        scope, params = _scope(campaign, occurrence, "d")
        row = self._execute(
            "SELECT count(DISTINCT c.customer_id) FROM consent c"
            f"{self.dialect.indexed_by('consent_revocations')} "
            "WHERE c.status = 'opted_out' AND c.recorded_at >= ? AND EXISTS ("
            f"SELECT 1 FROM deliveries d{self.dialect.indexed_by('deliveries_sent')} "
            f"WHERE d.customer_id = c.customer_id AND {scope})",
            [first_sent, *params],
        ).fetchone()
        return int(row[0])

    def replied_deliveries(self, campaign: str, occurrence: str | None, first_sent: str) -> int:
        """Sent deliveries after which the customer wrote in.

        Each inbound message since the first send is attributed to the latest delivery of this
        campaign sent to its customer before it; with a recurring campaign a reply therefore
        counts for the occurrence it followed, not for every earlier one. The per-message
        probe reads only the index deliveries_sent and yields the delivery's row key.
        """
        statuses = ", ".join(f"'{s}'" for s in SENT_STATUSES)
        key = self.dialect.row_key
        latest = (
            f"SELECT d.{key} FROM deliveries d{self.dialect.indexed_by('deliveries_sent')} "
            "WHERE d.customer_id = m.customer_id AND d.purpose = 'campaign' AND d.sent_at <= m.at "
            f"AND d.campaign = ? AND d.status IN ({statuses}) ORDER BY d.sent_at DESC LIMIT 1"
        )
        sql = (
            f"SELECT count(DISTINCT x.did) FROM (SELECT ({latest}) AS did FROM messages m "
            "WHERE m.direction = 'in' AND m.at >= ? "
            # an out-of-office is not a reply (README: Email replies)
            "AND NOT EXISTS (SELECT 1 FROM email_messages e WHERE e.message_id = m.id "
            "AND e.kind = 'auto_reply')) x"
        )
        params: list[Any] = [campaign, first_sent]
        if occurrence is not None:
            sql += f" JOIN deliveries o ON o.{key} = x.did WHERE o.occurrence = ?"
            params.append(occurrence)
        else:
            sql += " WHERE x.did IS NOT NULL"
        row = self._execute(sql, params).fetchone()
        return int(row[0])

    def survey_answers(
        self, campaign: str, occurrence: str | None
    ) -> list[tuple[str | None, int | None, int]]:
        """(answer, score, count) over the last valid answer of each delivery."""
        sql = (
            "SELECT answer, score, count(*) FROM survey_responses WHERE id IN ("
            "SELECT max(id) FROM survey_responses WHERE campaign = ? AND valid = 1"
        )
        params: list[Any] = [campaign]
        if occurrence is not None:
            sql += " AND occurrence = ?"
            params.append(occurrence)
        sql += " GROUP BY delivery_id) GROUP BY answer, score ORDER BY score, answer"
        return [(a, s, int(n)) for a, s, n in self._execute(sql, params)]

    def planned_occurrences(self) -> dict[str, dict[str, Any]]:
        """campaign → {planned, missed, last} over the occurrences table."""
        out: dict[str, dict[str, Any]] = {}
        for campaign, planned, missed, last in self._execute(
            "SELECT campaign, sum(CASE WHEN status = 'planned' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN status = 'missed' THEN 1 ELSE 0 END), max(occurrence) "
            "FROM occurrences GROUP BY campaign ORDER BY campaign"
        ):
            out[campaign] = {"planned": planned, "missed": missed, "last": last}
        return out

    def queue_figures(self) -> dict[str, Any]:
        """Counts of queued, deferred, sending and unknown deliveries; the next not_before."""
        counts = dict.fromkeys(("queued", "deferred", "sending", "unknown"), 0)
        for status, n in self._execute(
            "SELECT status, count(*) FROM deliveries "
            "WHERE status IN ('queued', 'deferred', 'sending', 'unknown') GROUP BY status"
        ):
            counts[status] = n
        row = self._execute(
            "SELECT min(not_before) FROM deliveries WHERE status IN ('queued', 'deferred')"
        ).fetchone()
        return {**counts, "next_not_before": row[0]}

    def attention_figures(self, limit: int = 10) -> dict[str, Any]:
        """Conversations needing attention: how many, by reason, and the longest waiting."""
        by_reason = dict(
            self._execute(
                "SELECT coalesce(attention_reason, 'reply'), count(*) FROM conversations "
                "WHERE needs_attention = 1 GROUP BY 1 ORDER BY 2 DESC, 1"
            )
        )
        cur = self._execute(
            "SELECT v.customer_id, c.name AS customer_name, v.attention_reason AS reason, "
            "v.last_inbound_channel AS channel, "
            "v.last_inbound_at FROM conversations v LEFT JOIN customers c ON c.id = v.customer_id "
            "WHERE v.needs_attention = 1 ORDER BY v.updated_at, v.id LIMIT ?",
            (limit,),
        )
        oldest = list(iter_dicts(cur))
        return {"total": sum(by_reason.values()), "by_reason": by_reason, "oldest": oldest}


def _time_filter(since: str | None, until: str | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if since is not None:
        sql += " AND m.at >= ?"
        params.append(since)
    if until is not None:
        sql += " AND m.at < ?"
        params.append(until)
    return sql, params


def _scope(campaign: str, occurrence: str | None, alias: str = "") -> tuple[str, list[Any]]:
    p = f"{alias}." if alias else ""
    sql = f"{p}campaign = ? AND {p}purpose = 'campaign'"
    params: list[Any] = [campaign]
    if occurrence is not None:
        sql += f" AND {p}occurrence = ?"
        params.append(occurrence)
    return sql, params
