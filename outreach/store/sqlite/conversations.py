"""Conversations on SQLite: one per customer, its messages, open surveys and responses,
and the listings and transcripts that agents read (the statements written alike on both
stores are in ``shared/conversations.py``).

Every writing method expects the caller to hold the write transaction (``store.write()``),
so that one inbound message, with everything it causes, commits or rolls back as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import Conversations
from ..rows import chunks, marks, rank_case
from ..shared.conversations import ConversationsSql

if TYPE_CHECKING:
    import sqlite3

    from . import SqliteStore


class SqliteConversations(ConversationsSql, Conversations):
    """Conversations on SQLite."""

    store: SqliteStore
    conn: sqlite3.Connection

    def hold_customers(self, customer_ids: Iterable[str]) -> bool:
        """Nothing to do: a write transaction holds the whole database (BEGIN IMMEDIATE)."""
        return True

    def merge_conversations(self, rows: Iterable[Sequence[Any]], ranks: Mapping[str, int]) -> None:
        """Merge a batch's news into conversations, in the UPDATE itself (see the interface).

        Written for the ingest hot path: numbered parameters (CONVERSATION_NEWS order) bound
        from tuples, CASE rather than function calls, the stored reason ranked only when
        both reasons are there."""
        self.conn.executemany(
            # SET reads the row as it was before this UPDATE, in every expression
            "UPDATE conversations SET status = 'open', "
            "needs_attention = CASE WHEN ?6 IS NULL THEN needs_attention ELSE 1 END, "
            "attention_reason = CASE WHEN ?6 IS NULL THEN attention_reason "
            f"WHEN needs_attention = 0 OR ?7 >= {rank_case(ranks).format('attention_reason')} "
            "THEN ?6 ELSE attention_reason END, "
            "last_inbound_channel = CASE WHEN ?2 >= last_inbound_at OR last_inbound_at IS NULL "
            "THEN ?3 ELSE last_inbound_channel END, "
            "last_inbound_at = CASE WHEN ?2 >= last_inbound_at OR last_inbound_at IS NULL "
            "THEN ?2 ELSE last_inbound_at END, "
            "auto_reply_until = CASE WHEN ?4 > auto_reply_until OR auto_reply_until IS NULL "
            "THEN ?4 ELSE auto_reply_until END, "
            "updated_at = CASE WHEN ?5 > updated_at THEN ?5 ELSE updated_at END WHERE id = ?1",
            rows,
        )

    def wrote_since(self, pairs: Iterable[tuple[str, str]], since: str) -> set[tuple[str, str]]:
        """Which (customer id, channel) pairs have an inbound message at or after ``since``."""
        by_channel: dict[str, list[str]] = {}
        for customer_id, channel in set(pairs):
            by_channel.setdefault(channel, []).append(customer_id)
        found: set[tuple[str, str]] = set()
        for channel, ids in by_channel.items():
            for chunk in chunks(ids):
                found.update(
                    (customer_id, channel)
                    for (customer_id,) in self.conn.execute(
                        "SELECT DISTINCT customer_id FROM messages WHERE direction = 'in' "
                        f"AND channel = ? AND at >= ? AND customer_id IN ({marks(chunk)})",
                        [channel, since, *chunk],
                    )
                )
        return found

    def ensure_conversation(self, customer_id: str, at: str) -> int:
        """The id of the customer's conversation, created when missing. Caller holds the txn."""
        row = self.conn.execute(
            "SELECT id FROM conversations WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        return int(row[0]) if row else self.create_conversation(customer_id, at)

    def create_conversation(self, customer_id: str, at: str) -> int:
        """Insert a conversation the caller knows is missing; returns its id.

        Caller holds the transaction."""
        cur = self.conn.execute(
            "INSERT INTO conversations (customer_id, status, needs_attention, "
            "created_at, updated_at)"
            " VALUES (?, 'open', 0, ?, ?)",
            (customer_id, at, at),
        )
        return int(cur.lastrowid or 0)

    def insert_message(self, **fields: Any) -> int | None:
        """Append one message; returns its id, or None when an inbound duplicate was ignored.

        ``fields``: conversation_id, customer_id, direction ('in'|'out'), channel, text, at, and
        optionally address, subject, external_id, delivery_id, campaign, author.
        """
        cols = list(fields)
        cur = self.conn.execute(
            f"INSERT OR IGNORE INTO messages ({', '.join(cols)}) VALUES ({marks(cols)})",
            tuple(fields.values()),
        )
        return int(cur.lastrowid or 0) if cur.rowcount else None

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
        at = rows[0]["at"]
        # Row by row, each customer's conversation found by the INSERT itself: looking a
        # batch's customers up with an id list first copied that list into a temporary
        # b-tree, twice when some were missing.
        self.conn.executemany(
            "INSERT INTO conversations (customer_id, status, needs_attention, created_at, "
            "updated_at) VALUES (?, 'open', 0, ?, ?) ON CONFLICT (customer_id) DO NOTHING",
            [(cid, at, at) for cid in dict.fromkeys(row["customer_id"] for row in rows)],
        )
        tokens = [
            ("reply", row["reply_token"], row["customer_id"])
            for row in rows
            if row.get("reply_token")
        ]
        if tokens:
            self.conn.executemany(
                "INSERT OR IGNORE INTO addresses (channel, address, customer_id) VALUES (?, ?, ?)",
                tokens,
            )
        self.conn.executemany(
            "INSERT INTO messages (conversation_id, customer_id, direction, channel, address, "
            "subject, text, delivery_id, campaign, author, at) "
            "SELECT id, ?1, 'out', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM conversations "
            "WHERE customer_id = ?1",
            [
                (
                    row["customer_id"],
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
