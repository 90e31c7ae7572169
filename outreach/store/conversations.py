"""SQL for conversations and their messages (one conversation per customer)."""

from __future__ import annotations

from typing import Any

from . import Store, chunks, marks


def ensure_conversation(store: Store, customer_id: str, at: str) -> int:
    """The id of the customer's conversation, created when missing. Caller holds the txn."""
    row = store.conn.execute(
        "SELECT id FROM conversations WHERE customer_id = ?", (customer_id,)
    ).fetchone()
    return int(row[0]) if row else create_conversation(store, customer_id, at)


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
        f"VALUES ({marks(cols)})",
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
    that a reply to it finds its conversation). Written with one statement per kind of
    row, since a run records results in batches of hundreds.
    """
    conversations = _conversation_ids(store, {row["customer_id"] for row in rows}, rows[0]["at"])
    tokens = [
        ("reply", row["reply_token"], row["customer_id"]) for row in rows if row.get("reply_token")
    ]
    if tokens:
        store.conn.executemany(
            "INSERT OR IGNORE INTO addresses (channel, address, customer_id) VALUES (?, ?, ?)",
            tokens,
        )
    store.conn.executemany(
        "INSERT INTO messages (conversation_id, customer_id, direction, channel, address, "
        "subject, text, delivery_id, campaign, author, at) "
        "VALUES (?, ?, 'out', ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                conversations[row["customer_id"]],
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


def _conversation_ids(store: Store, customer_ids: set[str], at: str) -> dict[str, int]:
    """customer → conversation id, creating the missing conversations (in one statement)."""
    found = _existing_conversations(store, list(customer_ids))
    missing = [cid for cid in customer_ids if cid not in found]
    if missing:
        store.conn.executemany(
            "INSERT INTO conversations (customer_id, status, needs_attention, created_at, "
            "updated_at) VALUES (?, 'open', 0, ?, ?)",
            [(cid, at, at) for cid in missing],
        )
        found.update(_existing_conversations(store, missing))
    return found


def _existing_conversations(store: Store, customer_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(customer_ids):
        found.update(
            store.conn.execute(
                f"SELECT customer_id, id FROM conversations WHERE customer_id IN ({marks(chunk)})",
                chunk,
            ).fetchall()
        )
    return found
