"""Conversations on PostgreSQL: one per customer, its messages, open surveys and responses,
and the listings and transcripts that agents read.

Every writing method expects the caller to hold the write transaction (``store.write()``),
so that one inbound message, with everything it causes, commits or rolls back as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import Conversations
from ..rows import chunks, dicts, iter_dicts, one_dict, rank_case
from .sql import columns, marks

if TYPE_CHECKING:
    from . import PgStore

# the first key of the advisory locks ``hold_customers`` takes ("conv"); two-key locks are a
# key space of their own, apart from the one-key lock that guards migrations
HOLD_CLASS = 0x636F6E76
HOLD_ALL = 0x616C6C21  # "all!": held shared by every batch, alone by a large one
HOLD_ONE_BY_ONE = 256  # customers a batch holds one lock each for
_CONVERSATION_COLUMNS = (
    "id, customer_id, status, needs_attention, attention_reason, last_inbound_at, "
    "last_inbound_channel, auto_reply_until, created_at, updated_at"
)


class PgConversations(Conversations):
    """Conversations on PostgreSQL."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.conn = store.conn

    def get_conversation(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's conversation row, or None."""
        return one_dict(
            self.conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE customer_id = %s",
                (customer_id,),
            )
        )

    def update_conversation(self, conversation_id: int, **fields: Any) -> None:
        """Set columns of one conversation (``updated_at`` must be among them)."""
        assignments = ", ".join(f"{name} = %s" for name in fields)
        self.conn.execute(
            f"UPDATE conversations SET {assignments} WHERE id = %s",
            (*fields.values(), conversation_id),
        )

    def hold_customers(self, customer_ids: Iterable[str]) -> bool:
        """Transaction-level advisory locks, one per customer, taken in one order (sorted
        keys) so that two batches never wait for each other in a circle; released at
        commit or rollback. A batch holds them from before it reads its customers'
        conversations and surveys until it commits, so a ``serve`` replica handling the
        same customer waits and then reads what this one wrote.

        Each lock takes a slot of the server's shared lock table (about
        ``max_locks_per_transaction`` times the connections), so a batch of more than
        HOLD_ONE_BY_ONE customers (a ``replies ingest`` batch) takes one lock that holds
        everyone instead; every other batch takes that lock shared, beside its own."""
        ids = sorted(set(customer_ids))
        if not ids:
            return False
        if len(ids) > HOLD_ONE_BY_ONE:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s::integer, 0)", (HOLD_ALL,))
            return True
        self.conn.execute("SELECT pg_advisory_xact_lock_shared(%s::integer, 0)", (HOLD_ALL,))
        self.conn.execute(
            "SELECT count(pg_advisory_xact_lock(%s::integer, k)) FROM "
            "(SELECT DISTINCT hashtext(id) AS k FROM unnest(%s::text[]) AS id ORDER BY k) "
            "AS held",
            (HOLD_CLASS, ids),
        )
        return False

    def merge_conversations(self, rows: Iterable[Sequence[Any]], ranks: Mapping[str, int]) -> None:
        """Merge a batch's news into conversations, in the UPDATE itself (see the interface).

        A row another transaction is changing is waited for, then merged into as that one
        committed it (READ COMMITTED re-reads an updated row before changing it)."""
        stored_rank = rank_case(ranks).format("c.attention_reason")
        self.conn.executemany(
            # SET reads the row as it was before this UPDATE, in every expression
            "UPDATE conversations c SET status = 'open', "
            "needs_attention = CASE WHEN n.reason IS NULL THEN c.needs_attention ELSE 1 END, "
            "attention_reason = CASE WHEN n.reason IS NULL THEN c.attention_reason "
            f"WHEN c.needs_attention = 0 OR n.rank >= {stored_rank} "
            "THEN n.reason ELSE c.attention_reason END, "
            "last_inbound_channel = CASE WHEN c.last_inbound_at IS NULL "
            "OR n.at >= c.last_inbound_at THEN n.channel ELSE c.last_inbound_channel END, "
            "last_inbound_at = GREATEST(c.last_inbound_at, n.at), "
            "auto_reply_until = GREATEST(c.auto_reply_until, n.until), "
            "updated_at = GREATEST(c.updated_at, n.updated) "
            "FROM (VALUES (%s::bigint, %s::text, %s::text, %s::text, %s::text, %s::text, "
            "%s::integer)) AS n(id, at, channel, until, updated, reason, rank) "
            "WHERE c.id = n.id",
            rows,
        )

    def open_survey_candidates(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's latest sent survey deliveries, newest first, without a valid answer.

        The caller checks the message's time against ``sent_at`` and expiry
        (``sent_at + expires_seconds``).
        """
        cur = self.conn.execute(
            """
            SELECT d.id AS delivery_id, d.campaign, d.occurrence, d.sent_at, o.survey
            FROM deliveries d
            JOIN occurrences o ON o.campaign = d.campaign AND o.occurrence = d.occurrence
            WHERE d.customer_id = %s AND d.purpose = 'campaign'
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
        self.conn.execute(
            f"INSERT INTO survey_responses ({', '.join(cols)}) VALUES ({marks(cols)}) "
            "ON CONFLICT DO NOTHING",
            tuple(fields.values()),
        )

    def wrote_since(self, pairs: Iterable[tuple[str, str]], since: str) -> set[tuple[str, str]]:
        """Which (customer id, channel) pairs have an inbound message at or after ``since``."""
        by_channel: dict[str, list[str]] = {}
        for customer_id, channel in set(pairs):
            by_channel.setdefault(channel, []).append(customer_id)
        found: set[tuple[str, str]] = set()
        for channel, ids in by_channel.items():
            found.update(
                (customer_id, channel)
                for (customer_id,) in self.conn.execute(
                    "SELECT DISTINCT customer_id FROM messages WHERE direction = 'in' "
                    "AND channel = %s AND at >= %s AND customer_id = ANY(%s)",
                    (channel, since, ids),
                )
            )
        return found

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
            sql += " WHERE last_message_at >= %s"
            params.append(since)
        sql += " ORDER BY last_message_at DESC, customer_id"
        return iter_dicts(self.conn.execute(sql, params))

    def transcript(self, customer_id: str) -> list[dict[str, Any]]:
        """Every message of the customer's conversation, every channel, oldest first, with the
        survey answer it gave (if any)."""
        cur = self.conn.execute(
            """
            SELECT m.id, m.at, m.direction, m.channel, m.address, m.subject, m.text,
                   m.external_id, m.delivery_id, m.campaign, m.author, m.kind, m.details,
                   r.question AS survey_question, r.type AS survey_type, r.answer AS survey_answer,
                   r.score AS survey_score, r.valid AS survey_valid, r.campaign AS survey_campaign
            FROM messages m
            JOIN conversations c ON c.id = m.conversation_id
            LEFT JOIN survey_responses r ON r.message_id = m.id
            WHERE c.customer_id = %s
            ORDER BY m.at, m.id
            """,
            (customer_id,),
        )
        return dicts(cur)

    def conversations_for(self, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """customer id → conversation row, for many customers at once."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in chunks(sorted(set(customer_ids))):
            cur = self.conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations "
                f"WHERE customer_id IN ({marks(chunk)})",
                chunk,
            )
            out.update((item["customer_id"], item) for item in iter_dicts(cur))
        return out

    def survey_candidates_for(self, customer_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """``open_survey_candidates`` for many customers at once (customer id → rows)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for chunk in chunks(sorted(set(customer_ids))):
            cur = self.conn.execute(
                f"""
                SELECT customer_id, delivery_id, campaign, occurrence, sent_at, survey FROM (
                    SELECT d.customer_id, d.id AS delivery_id, d.campaign, d.occurrence,
                           d.sent_at, o.survey,
                           row_number() OVER (
                               PARTITION BY d.customer_id ORDER BY d.sent_at DESC, d.id DESC) AS n
                    FROM deliveries d
                    JOIN occurrences o ON o.campaign = d.campaign AND o.occurrence = d.occurrence
                    WHERE d.customer_id IN ({marks(chunk)}) AND d.purpose = 'campaign'
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

    def ensure_conversation(self, customer_id: str, at: str) -> int:
        """The id of the customer's conversation, created when missing. Caller holds the txn."""
        row = self.conn.execute(
            "SELECT id FROM conversations WHERE customer_id = %s", (customer_id,)
        ).fetchone()
        return int(row[0]) if row else self.create_conversation(customer_id, at)

    def create_conversation(self, customer_id: str, at: str) -> int:
        """Insert a conversation the caller knows is missing; returns its id.

        Caller holds the transaction."""
        (conversation_id,) = self.conn.one(
            "INSERT INTO conversations (customer_id, status, needs_attention, "
            "created_at, updated_at)"
            " VALUES (%s, 'open', 0, %s, %s)"
            # another process (a serve replica) may have just created it: its id then
            " ON CONFLICT (customer_id) DO UPDATE SET customer_id = excluded.customer_id"
            " RETURNING id",
            (customer_id, at, at),
        )
        return int(conversation_id)

    def insert_message(self, **fields: Any) -> int | None:
        """Append one message; returns its id, or None when an inbound duplicate was ignored.

        ``fields``: conversation_id, customer_id, direction ('in'|'out'), channel, text, at, and
        optionally address, subject, external_id, delivery_id, campaign, author.
        """
        cols = list(fields)
        cur = self.conn.execute(
            f"INSERT INTO messages ({', '.join(cols)}) VALUES ({marks(cols)}) "
            "ON CONFLICT DO NOTHING RETURNING id",
            tuple(fields.values()),
        )
        row = cur.fetchone()
        return int(row[0]) if row else None

    def record_outbound(
        self,
        rows: list[dict[str, Any]],
    ) -> None:
        """Append sent messages to their customers' conversations. Caller holds the txn.

        Each row: customer_id, channel, text, at, and optionally address, subject, delivery_id,
        campaign, author, and reply_token (the Reply-To token an email carried, remembered so
        that a reply to it finds its conversation). Written with one statement per kind of
        row, since a run records results in batches of hundreds.
        """
        conversations = self._conversation_ids({row["customer_id"] for row in rows}, rows[0]["at"])
        tokens = [
            (row["reply_token"], row["customer_id"]) for row in rows if row.get("reply_token")
        ]
        if tokens:
            self.conn.execute(
                "INSERT INTO addresses (channel, address, customer_id) "
                "SELECT 'reply', * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                columns(tokens, 2),
            )
        # outbound messages have no unique key to meet (only inbound ones do): COPY
        self.conn.copy_rows(
            "messages",
            (
                "conversation_id",
                "customer_id",
                "direction",
                "channel",
                "address",
                "subject",
                "text",
                "delivery_id",
                "campaign",
                "author",
                "at",
            ),
            [
                (
                    conversations[row["customer_id"]],
                    row["customer_id"],
                    "out",
                    row["channel"],
                    row.get("address"),
                    row.get("subject"),
                    row["text"],
                    row.get("delivery_id"),
                    row.get("campaign"),
                    row.get("author"),
                    row["at"],
                )
                for row in rows
            ],
        )

    def _conversation_ids(self, customer_ids: set[str], at: str) -> dict[str, int]:
        """customer → conversation id, creating the missing conversations (in one statement)."""
        found = self._existing_conversations(list(customer_ids))
        # in one order for every process: two senders creating overlapping sets of
        # conversations at once then wait for each other instead of deadlocking
        missing = sorted(cid for cid in customer_ids if cid not in found)
        if missing:
            found.update(
                self.conn.execute(
                    "INSERT INTO conversations (customer_id, status, needs_attention, "
                    "created_at, updated_at) SELECT id, 'open', 0, %s, %s "
                    "FROM unnest(%s::text[]) AS u(id) "
                    "ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id, id",
                    (at, at, missing),
                ).fetchall()
            )
            # another process created some of them a moment ago
            late = [cid for cid in missing if cid not in found]
            if late:
                found.update(self._existing_conversations(late))
        return found

    def _existing_conversations(self, customer_ids: list[str]) -> dict[str, int]:
        if not customer_ids:
            return {}
        return dict(
            self.conn.execute(
                "SELECT customer_id, id FROM conversations WHERE customer_id = ANY(%s)",
                (customer_ids,),
            ).fetchall()
        )

    def conversation_summary(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's conversation in brief (status, attention, message counts), or None."""
        cur = self.conn.execute(
            "SELECT c.id, c.status, c.needs_attention, c.attention_reason, c.last_inbound_at, "
            "c.last_inbound_channel, c.updated_at, "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages, "
            "(SELECT max(at) FROM messages m WHERE m.conversation_id = c.id) AS last_message_at "
            "FROM conversations c WHERE c.customer_id = %s",
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
        conversation = "(SELECT id FROM conversations WHERE customer_id = %s)"
        latest_in = self.conn.execute(
            f"SELECT subject, external_id FROM messages WHERE conversation_id = {conversation} "
            "AND channel = %s AND direction = 'in' ORDER BY at DESC, id DESC LIMIT 1",
            (customer_id, channel),
        ).fetchone()
        latest_out = self.conn.execute(
            f"SELECT subject, delivery_id FROM messages WHERE conversation_id = {conversation} "
            "AND channel = %s AND direction = 'out' AND subject IS NOT NULL "
            "AND delivery_id IS NOT NULL ORDER BY at DESC, id DESC LIMIT 1",
            (customer_id, channel),
        ).fetchone()
        thread: dict[str, Any] = {}
        if latest_in is not None:
            thread["in_subject"], thread["in_id"] = latest_in
        if latest_out is not None:
            thread["out_subject"], thread["out_delivery"] = latest_out
        return thread
