"""Conversations' statements that both stores write alike: reading a conversation, its
messages and open surveys, the listings and transcripts agents read, and the small writes
of one message's effects (the caller holds the write transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..rows import chunks, dicts, iter_dicts, one_dict
from .dialect import TableStatements

CONVERSATION_COLUMNS = (
    "id, customer_id, status, needs_attention, attention_reason, last_inbound_at, "
    "last_inbound_channel, auto_reply_until, created_at, updated_at"
)


class ConversationsSql(TableStatements):
    """Mixed into each store's conversations."""

    def get_conversation(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's conversation row, or None."""
        return one_dict(
            self._execute(
                f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE customer_id = ?",
                (customer_id,),
            )
        )

    def update_conversation(self, conversation_id: int, **fields: Any) -> None:
        """Set columns of one conversation (``updated_at`` must be among them)."""
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._execute(
            f"UPDATE conversations SET {assignments} WHERE id = ?",
            (*fields.values(), conversation_id),
        )

    def open_survey_candidates(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's latest sent survey deliveries, newest first, without a valid answer.

        The caller checks the message's time against ``sent_at`` and expiry
        (``sent_at + expires_seconds``).
        """
        cur = self._execute(
            """
            SELECT d.id AS delivery_id, d.campaign, d.occurrence, d.sent_at, o.survey
            FROM deliveries d
            JOIN occurrences o ON o.campaign = d.campaign AND o.occurrence = d.occurrence
            WHERE d.customer_id = ? AND d.purpose = 'campaign'
              AND d.status IN ('sent', 'delivered', 'read')
              AND d.sent_at IS NOT NULL
              AND o.survey IS NOT NULL
              AND NOT EXISTS (
                  SELECT 1 FROM survey_responses r WHERE r.delivery_id = d.id AND r.valid = 1)
            ORDER BY d.sent_at DESC, d.id DESC
            LIMIT 5
            """,
            (customer_id,),
        )
        return dicts(cur)

    def insert_survey_response(self, **fields: Any) -> None:
        """One survey_responses row (message_id, delivery_id, customer_id, campaign, occurrence,
        question, type, answer, score, valid, recorded_at)."""
        cols = list(fields)
        self._execute(
            f"{self.dialect.insert_or_ignore} INTO survey_responses ({', '.join(cols)}) "
            f"VALUES ({self._marks(cols)}){self.dialect.or_ignore}",
            tuple(fields.values()),
        )

    def list_conversations(
        self, *, needs_attention: bool = False, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Conversations with their customer's name and last message, most recent first."""
        where = ["1 = 1"]
        params: list[Any] = []
        if needs_attention:
            where.append("c.needs_attention = 1")
        sql = f"""
            SELECT c.customer_id, cu.name, cu.verified, c.status, c.needs_attention,
                   c.attention_reason, c.last_inbound_at, c.last_inbound_channel,
                   m.at AS last_message_at, m.channel AS last_channel,
                   m.direction AS last_direction
            FROM conversations c
            JOIN customers cu ON cu.id = c.customer_id
            LEFT JOIN messages m ON m.id = (
                SELECT id FROM messages WHERE conversation_id = c.id ORDER
                BY at DESC, id DESC LIMIT 1)
            WHERE {" AND ".join(where)}
        """
        sql = f"SELECT * FROM ({sql}) AS listed"
        if since is not None:
            sql += " WHERE last_message_at >= ?"
            params.append(since)
        sql += " ORDER BY last_message_at DESC, customer_id"
        return iter_dicts(self._execute(sql, params))

    def transcript(self, customer_id: str) -> list[dict[str, Any]]:
        """Every message of the customer's conversation, every channel, oldest first, with the
        survey answer it gave (if any)."""
        cur = self._execute(
            """
            SELECT m.id, m.at, m.direction, m.channel, m.address, m.subject, m.text,
                   m.external_id, m.delivery_id, m.campaign, m.author, m.kind, m.details,
                   r.question AS survey_question, r.type AS survey_type, r.answer AS survey_answer,
                   r.score AS survey_score, r.valid AS survey_valid, r.campaign AS survey_campaign
            FROM messages m
            JOIN conversations c ON c.id = m.conversation_id
            LEFT JOIN survey_responses r ON r.message_id = m.id
            WHERE c.customer_id = ?
            ORDER BY m.at, m.id
            """,
            (customer_id,),
        )
        return dicts(cur)

    def conversations_for(self, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """customer id → conversation row, for many customers at once."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in chunks(sorted(set(customer_ids))):
            cur = self._execute(
                f"SELECT {CONVERSATION_COLUMNS} FROM conversations "
                f"WHERE customer_id IN ({self._marks(chunk)})",
                chunk,
            )
            out.update((item["customer_id"], item) for item in iter_dicts(cur))
        return out

    def survey_candidates_for(self, customer_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """``open_survey_candidates`` for many customers at once (customer id → rows)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for chunk in chunks(sorted(set(customer_ids))):
            cur = self._execute(
                f"""
                SELECT customer_id, delivery_id, campaign, occurrence, sent_at, survey FROM (
                    SELECT d.customer_id, d.id AS delivery_id, d.campaign, d.occurrence,
                           d.sent_at, o.survey,
                           row_number() OVER (
                               PARTITION BY d.customer_id ORDER BY d.sent_at DESC, d.id DESC) AS n
                    FROM deliveries d
                    JOIN occurrences o ON o.campaign = d.campaign AND o.occurrence = d.occurrence
                    WHERE d.customer_id IN ({self._marks(chunk)}) AND d.purpose = 'campaign'
                      AND d.status IN ('sent', 'delivered', 'read')
                      AND d.sent_at IS NOT NULL
                      AND o.survey IS NOT NULL
                      AND NOT EXISTS (
                          SELECT 1 FROM survey_responses r
                          WHERE r.delivery_id = d.id AND r.valid = 1)
                ) AS latest WHERE n <= 5
                ORDER BY customer_id, sent_at DESC, delivery_id DESC
                """,
                chunk,
            )
            for item in iter_dicts(cur):
                out.setdefault(item.pop("customer_id"), []).append(item)
        return out

    def conversation_summary(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's conversation in brief (status, attention, message counts), or None."""
        cur = self._execute(
            "SELECT c.id, c.status, c.needs_attention, c.attention_reason, c.last_inbound_at, "
            "c.last_inbound_channel, c.updated_at, "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages, "
            "(SELECT max(at) FROM messages m WHERE m.conversation_id = c.id) AS last_message_at "
            "FROM conversations c WHERE c.customer_id = ?",
            (customer_id,),
        )
        out = one_dict(cur)
        if out is None:
            return None
        out["needs_attention"] = bool(out["needs_attention"])
        return out

    def email_thread(self, customer_id: str, channel: str) -> dict[str, Any]:
        """What a reply on ``channel`` answers. Read through the conversation's own index,
        so a reply costs two short lookups whatever the size of the table."""
        conversation = "(SELECT id FROM conversations WHERE customer_id = ?)"
        latest_in = self._execute(
            f"SELECT subject, external_id FROM messages WHERE conversation_id = {conversation} "
            "AND channel = ? AND direction = 'in' ORDER BY at DESC, id DESC LIMIT 1",
            (customer_id, channel),
        ).fetchone()
        latest_out = self._execute(
            f"SELECT subject, delivery_id FROM messages WHERE conversation_id = {conversation} "
            "AND channel = ? AND direction = 'out' AND subject IS NOT NULL "
            "AND delivery_id IS NOT NULL ORDER BY at DESC, id DESC LIMIT 1",
            (customer_id, channel),
        ).fetchone()
        thread: dict[str, Any] = {}
        if latest_in is not None:
            thread["in_subject"], thread["in_id"] = latest_in
        if latest_out is not None:
            thread["out_subject"], thread["out_delivery"] = latest_out
        return thread
