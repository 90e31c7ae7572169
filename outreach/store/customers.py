"""SQL for customers, their attribute columns and extra addresses."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..errors import NotFoundError
from . import Store, chunks, marks
from .migrations import CUSTOMER_COLUMNS


def attribute_columns(store: Store) -> list[str]:
    """The customer columns that came from import files (everything not built in)."""
    return [c.name for c in store.db["customers"].columns if c.name not in CUSTOMER_COLUMNS]


def ensure_columns(store: Store, names: Sequence[str]) -> None:
    """Add attribute columns that do not exist yet (untyped, so numbers stay numbers)."""
    # SQLite column names are case-insensitive: "Plan" is the column "plan".
    existing = {c.name.lower() for c in store.db["customers"].columns}
    with store.write() as conn:
        for name in names:
            if name.lower() not in existing:
                conn.execute(f"ALTER TABLE customers ADD COLUMN {_quote(name)}")
                existing.add(name.lower())


def upsert_customers(
    store: Store, columns: Sequence[str], rows: Sequence[Sequence[Any]], at: str
) -> tuple[int, int]:
    """Insert or update customers in one statement per batch; returns (created, updated).

    A None value means "not given" and keeps what is stored: import never clears a field.
    The caller holds the transaction.
    """
    cols = [c for c in columns if c not in ("created_at", "updated_at")]
    ids = [row[cols.index("id")] for row in rows]
    existing = _existing_ids(store.conn, ids)
    names = ", ".join(_quote(c) for c in [*cols, "created_at", "updated_at"])
    marks = ", ".join("?" for _ in range(len(cols) + 2))
    updates = ", ".join(
        f"{_quote(c)} = coalesce(excluded.{_quote(c)}, customers.{_quote(c)})"
        for c in cols
        if c != "id"
    )
    sql = (
        f"INSERT INTO customers ({names}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET "
        f"{updates + ', ' if updates else ''}updated_at = excluded.updated_at, verified = 1"
    )
    store.conn.executemany(sql, [(*row, at, at) for row in rows])
    updated = len(existing)
    return len(set(ids)) - updated, updated


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(ids):
        found.update(
            r[0]
            for r in conn.execute(f"SELECT id FROM customers WHERE id IN ({marks(chunk)})", chunk)
        )
    return found


def get_customer(store: Store, customer_id: str) -> dict[str, Any] | None:
    """One customer as a dict of every column, or None."""
    cur = store.conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def require_customer(
    store: Store, customer_id: str, *, see: str = "outreach customers list"
) -> dict[str, Any]:
    """``get_customer``, or NotFoundError naming the command that lists the known ones."""
    customer = get_customer(store, customer_id)
    if customer is None:
        raise NotFoundError(f'customer "{customer_id}" does not exist; see {see}')
    return customer


def get_customers(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Customers by id, fetched in chunks."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids):
        cur = store.conn.execute(f"SELECT * FROM customers WHERE id IN ({marks(chunk)})", chunk)
        names = [d[0] for d in cur.description]
        for row in cur:
            out[row[0]] = dict(zip(names, row, strict=True))
    return out


def count_customers(store: Store) -> dict[str, int]:
    row = store.conn.execute(
        "SELECT count(*), coalesce(sum(verified = 0), 0) FROM customers"
    ).fetchone()
    return {"customers": row[0] - row[1], "unverified_contacts": row[1]}


def find_customer_by_address(store: Store, channel: str, kind: str, address: str) -> str | None:
    """The id of the customer known by ``address`` on ``channel``.

    ``kind`` is how the channel addresses people: ``email``, ``phone`` or ``user`` (a
    platform's own user id, kept in ``addresses``).
    """
    row = store.conn.execute(
        "SELECT customer_id FROM addresses WHERE channel = ? AND address = ?", (channel, address)
    ).fetchone()
    if row:
        return str(row[0])
    if kind in ("email", "phone"):
        sql = (
            "SELECT id FROM customers WHERE lower(email) = lower(?)"
            if kind == "email"
            else "SELECT id FROM customers WHERE phone = ?"
        )
        row = store.conn.execute(sql + " ORDER BY verified DESC, created_at LIMIT 1", (address,))
        found = row.fetchone()
        if found:
            return str(found[0])
    return None


def user_addresses(store: Store, channel: str, ids: Sequence[str]) -> dict[str, str]:
    """customer id → the platform user id that reaches them on ``channel`` (one each)."""
    found: dict[str, str] = {}
    for chunk in chunks(sorted(set(ids))):
        for customer_id, address in store.conn.execute(
            f"SELECT customer_id, address FROM addresses WHERE channel = ? "
            f"AND customer_id IN ({marks(chunk)})",
            [channel, *chunk],
        ):
            found.setdefault(customer_id, address)
    return found


def add_address(store: Store, channel: str, address: str, customer_id: str) -> None:
    """Remember that ``customer_id`` is reached as ``address`` on ``channel``."""
    store.conn.execute(
        "INSERT OR IGNORE INTO addresses (channel, address, customer_id) VALUES (?, ?, ?)",
        (channel, address, customer_id),
    )


def create_contact(store: Store, customer_id: str, fields: dict[str, Any], at: str) -> None:
    """Insert an unverified contact (someone who wrote in from an unknown address)."""
    cols = ["id", *fields, "verified", "created_at", "updated_at"]
    store.conn.execute(
        f"INSERT OR IGNORE INTO customers ({', '.join(_quote(c) for c in cols)}) "
        f"VALUES ({marks(cols)})",
        (customer_id, *fields.values(), 0, at, at),
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def existing_customer_ids(store: Store, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are stored customers."""
    return _existing_ids(store.conn, ids)


# An import remembers the ids it has seen (and their line) in a TEMP table rather than a
# Python set: a million ids would cost ~100 MB of memory, the table a few pages of cache.
_SCRATCH = "temp.outreach_import_ids"


def begin_import_scratch(store: Store) -> None:
    """Start an empty list of the ids seen by this import (per connection, never on disk)."""
    store.conn.execute(f"DROP TABLE IF EXISTS {_SCRATCH}")
    store.conn.execute(
        f"CREATE TABLE {_SCRATCH} (id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
    )


def import_ids_seen(store: Store, ids: Sequence[str]) -> dict[str, int]:
    """id → line of its first appearance, for those of ``ids`` this import has seen."""
    found: dict[str, int] = {}
    for chunk in chunks(ids):
        found.update(
            (r[0], r[1])
            for r in store.conn.execute(
                f"SELECT id, line FROM {_SCRATCH} WHERE id IN ({marks(chunk)})", chunk
            )
        )
    return found


def remember_import_ids(store: Store, rows: Sequence[tuple[str, int]]) -> None:
    """Add (id, line) pairs to this import's list."""
    store.conn.executemany(f"INSERT OR IGNORE INTO {_SCRATCH} (id, line) VALUES (?, ?)", rows)


def end_import_scratch(store: Store) -> None:
    """Forget this import's list of ids."""
    store.conn.execute(f"DROP TABLE IF EXISTS {_SCRATCH}")


def conversation_summary(store: Store, customer_id: str) -> dict[str, Any] | None:
    """The customer's conversation in brief (status, attention, message counts), or None."""
    cur = store.conn.execute(
        "SELECT c.id, c.status, c.needs_attention, c.attention_reason, c.last_inbound_at, "
        "c.last_inbound_channel, c.updated_at, "
        "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages, "
        "(SELECT max(at) FROM messages m WHERE m.conversation_id = c.id) AS last_message_at "
        "FROM conversations c WHERE c.customer_id = ?",
        (customer_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    out = dict(zip([d[0] for d in cur.description], row, strict=True))
    out["needs_attention"] = bool(out["needs_attention"])
    return out


def change_phone(store: Store, customer_id: str, phone: str, at: str) -> None:
    """Give a customer a new phone number (a WhatsApp number change). Caller holds the txn;
    the conversation keeps the old and new number as the record of the change."""
    store.conn.execute(
        "UPDATE customers SET phone = ?, updated_at = ? WHERE id = ?", (phone, at, customer_id)
    )
