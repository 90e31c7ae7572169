"""Customers on SQLite: their attribute columns, extra addresses and audience selection
(lookups written alike on both stores are in ``shared/customers.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import CUSTOMER_COLUMNS, Customers
from ..rows import chunks, iter_dicts, marks, quote
from ..shared.customers import CustomersSql
from . import audience

if TYPE_CHECKING:
    import sqlite3

    from . import SqliteStore


class SqliteCustomers(CustomersSql, Customers):
    """Customers on SQLite."""

    # An import remembers the ids it has seen (and their line) in a TEMP table rather than
    # a Python set: a million ids would cost ~100 MB of memory, the table a few pages of
    # cache.
    SCRATCH = "temp.outreach_import_ids"
    store: SqliteStore
    conn: sqlite3.Connection

    def attribute_columns(self) -> list[str]:
        """The customer columns that came from import files (everything not built in)."""
        return [c for c in self.all_columns() if c not in CUSTOMER_COLUMNS]

    def all_columns(self) -> list[str]:
        return [c.name for c in self.store.db["customers"].columns]

    def ensure_columns(self, names: Sequence[str]) -> None:
        """Add attribute columns that do not exist yet (untyped, so numbers stay numbers)."""
        # SQLite column names are case-insensitive: "Plan" is the column "plan".
        existing = {c.name.lower() for c in self.store.db["customers"].columns}
        with self.store.write() as conn:
            for name in names:
                if name.lower() not in existing:
                    conn.execute(f"ALTER TABLE customers ADD COLUMN {quote(name)}")
                    existing.add(name.lower())

    def upsert_customers(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], at: str
    ) -> tuple[int, int]:
        """Insert or update customers in one statement per batch; returns (created, updated).

        A None value means "not given" and keeps what is stored: import never clears a field.
        The caller holds the transaction.
        """
        cols = [c for c in columns if c not in ("created_at", "updated_at")]
        ids = [row[cols.index("id")] for row in rows]
        existing = self.existing_customer_ids(ids)
        names = ", ".join(quote(c) for c in [*cols, "created_at", "updated_at"])
        places = ", ".join("?" for _ in range(len(cols) + 2))
        updates = ", ".join(
            f"{quote(c)} = coalesce(excluded.{quote(c)}, customers.{quote(c)})"
            for c in cols
            if c != "id"
        )
        sql = (
            f"INSERT INTO customers ({names}) VALUES ({places}) ON CONFLICT(id) DO UPDATE SET "
            f"{updates + ', ' if updates else ''}updated_at = excluded.updated_at, verified = 1"
        )
        self.conn.executemany(sql, [(*row, at, at) for row in rows])
        updated = len(existing)
        return len(set(ids)) - updated, updated

    def get_customers(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Customers by id, fetched in chunks."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in chunks(ids):
            cur = self.conn.execute(f"SELECT * FROM customers WHERE id IN ({marks(chunk)})", chunk)
            out.update((row["id"], row) for row in iter_dicts(cur))
        return out

    def count_customers(self) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(verified = 0), 0) FROM customers"
        ).fetchone()
        return {"customers": row[0] - row[1], "unverified_contacts": row[1]}

    def user_addresses(self, channel: str, ids: Sequence[str]) -> dict[str, str]:
        """customer id → the platform user id that reaches them on ``channel`` (one each)."""
        found: dict[str, str] = {}
        for chunk in chunks(sorted(set(ids))):
            for customer_id, address in self.conn.execute(
                f"SELECT customer_id, address FROM addresses WHERE channel = ? "
                f"AND customer_id IN ({marks(chunk)})",
                [channel, *chunk],
            ):
                found.setdefault(customer_id, address)
        return found

    def create_contact(self, customer_id: str, fields: dict[str, Any], at: str) -> None:
        """Insert an unverified contact (someone who wrote in from an unknown address)."""
        cols = ["id", *fields, "verified", "created_at", "updated_at"]
        self.conn.execute(
            f"INSERT OR IGNORE INTO customers ({', '.join(quote(c) for c in cols)}) "
            f"VALUES ({marks(cols)})",
            (customer_id, *fields.values(), 0, at, at),
        )

    def existing_customer_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored customers."""
        found: set[str] = set()
        for chunk in chunks(ids):
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT id FROM customers WHERE id IN ({marks(chunk)})", chunk
                )
            )
        return found

    def begin_import_scratch(self) -> None:
        """Start an empty list of the ids seen by this import (per connection, never on disk)."""
        self.conn.execute(f"DROP TABLE IF EXISTS {self.SCRATCH}")
        self.conn.execute(
            f"CREATE TABLE {self.SCRATCH} (id TEXT PRIMARY KEY, line INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )

    def validate_where(self, where: str | None) -> None:
        audience.validate_where(self.store, where)

    def select_customers(
        self,
        where: str | None,
        *,
        limit: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        return audience.select_customers(self.store, where, limit=limit, columns=columns)
