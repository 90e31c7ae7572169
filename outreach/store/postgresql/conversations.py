"""Conversations on PostgreSQL: one per customer, its messages, open surveys and responses,
and the listings and transcripts that agents read (the statements written alike on both
stores are in ``shared/conversations.py``).

Every writing method expects the caller to hold the write transaction (``store.write()``),
so that one inbound message, with everything it causes, commits or rolls back as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import Conversations
from ..rows import rank_case
from ..shared.conversations import ConversationsSql
from ..shared.dialect import POSTGRESQL
from .sql import columns, marks

if TYPE_CHECKING:
    from . import PgStore
    from .sql import Connection

# the first key of the advisory locks ``hold_customers`` takes ("conv"); two-key locks are a
# key space of their own, apart from the one-key lock that guards migrations
HOLD_CLASS = 0x636F6E76
HOLD_ALL = 0x616C6C21  # "all!": held shared by every batch, alone by a large one
HOLD_ONE_BY_ONE = 256  # customers a batch holds one lock each for


class PgConversations(ConversationsSql, Conversations):
    """Conversations on PostgreSQL."""

    dialect = POSTGRESQL
    store: PgStore
    conn: Connection

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
