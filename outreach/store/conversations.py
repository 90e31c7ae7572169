"""SQL for conversations and their messages (one conversation per customer)."""

from __future__ import annotations

from typing import Any

from . import Store


def ensure_conversation(store: Store, customer_id: str, at: str) -> int:
    """The id of the customer's conversation, created when missing. Caller holds the txn."""
    row = store.conn.execute(
        "SELECT id FROM conversations WHERE customer_id = ?", (customer_id,)
    ).fetchone()
    if row:
        return int(row[0])
    cur = store.conn.execute(
        "INSERT INTO conversations (customer_id, status, needs_attention, created_at, updated_at)"
        " VALUES (?, 'open', 0, ?, ?)",
        (customer_id, at, at),
    )
    return int(cur.lastrowid or 0)


def create_conversation(store: Store, customer_id: str, at: str) -> int:
    """Insert a conversation the caller knows is missing; returns its id. Caller holds the txn."""
    cur = store.conn.execute(
        "INSERT INTO conversations (customer_id, status, needs_attention, created_at, updated_at)"
        " VALUES (?, 'open', 0, ?, ?)",
        (customer_id, at, at),
    )
    return int(cur.lastrowid or 0)


def insert_message(store: Store, **fields: Any) -> int | None:
    """Append one message; returns its id, or None when an inbound duplicate was ignored.

    ``fields``: conversation_id, customer_id, direction ('in'|'out'), channel, text, at, and
    optionally address, subject, external_id, delivery_id, campaign, author.
    """
    cols = list(fields)
    cur = store.conn.execute(
        f"INSERT OR IGNORE INTO messages ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' for _ in cols)})",
        tuple(fields.values()),
    )
    return int(cur.lastrowid or 0) if cur.rowcount else None


def record_outbound(
    store: Store,
    rows: list[dict[str, Any]],
) -> None:
    """Append sent messages to their customers' conversations. Caller holds the txn.

    Each row: customer_id, channel, text, at, and optionally address, subject, delivery_id,
    campaign, author, and reply_token (the Reply-To token an email carried, remembered so
    that a reply to it finds its conversation).
    """
    from .customers import add_address

    for row in rows:
        row = dict(row)
        token = row.pop("reply_token", None)
        if token:
            add_address(store, "reply", token, row["customer_id"])
        conversation = ensure_conversation(store, row["customer_id"], row["at"])
        insert_message(store, conversation_id=conversation, direction="out", **row)
