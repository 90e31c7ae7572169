"""Customers on PostgreSQL: their attribute columns, extra addresses and audience selection
(lookups written alike on both stores are in ``shared/customers.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..interface import CUSTOMER_COLUMNS, Customers
from ..rows import iter_dicts, quote
from ..shared.customers import CustomersSql
from ..shared.dialect import POSTGRESQL
from . import audience
from .sql import marks, unit_of_work

if TYPE_CHECKING:
    from . import PgStore
    from .sql import Connection


class PgCustomers(CustomersSql, Customers):
    """Customers on PostgreSQL."""

    # An import remembers the ids it has seen (and their line) in a TEMP table rather than
    # a Python set: a million ids would cost ~100 MB of memory. A temporary table belongs
    # to this session (connection) alone.
    SCRATCH = "pg_temp.outreach_import_ids"
    dialect = POSTGRESQL
    store: PgStore
    conn: Connection

    def attribute_columns(self) -> list[str]:
        """The customer columns that came from import files (everything not built in)."""
        return [c for c in self.all_columns() if c not in CUSTOMER_COLUMNS]

    def all_columns(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = "
                "'customers' AND table_schema = current_schema() ORDER BY ordinal_position"
            )
        ]

    def _resolve(self, names: Sequence[str]) -> list[str]:
        """Each name as the column is spelled: names compare case-insensitively, as on
        SQLite ("Plan" is the column "plan")."""
        known = {c.lower(): c for c in self.all_columns()}
        return [known.get(n.lower(), n) for n in names]

    @unit_of_work
    def ensure_columns(self, names: Sequence[str]) -> None:
        """Add attribute columns that do not exist yet, as text (PostgreSQL columns have one
        type; an attribute may hold a number for one customer and a word for the next)."""
        existing = {c.lower() for c in self.all_columns()}
        with self.store.write() as conn:
            for name in names:
                if name.lower() not in existing:
                    conn.execute(
                        f"ALTER TABLE customers ADD COLUMN IF NOT EXISTS {quote(name)} TEXT"
                    )
                    existing.add(name.lower())

    def upsert_customers(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], at: str
    ) -> tuple[int, int]:
        """Insert or update customers in one statement per batch; returns (created, updated).

        A None value means "not given" and keeps what is stored: import never clears a field.
        The caller holds the transaction.
        """
        cols = self._resolve([c for c in columns if c not in ("created_at", "updated_at")])
        ids = [row[cols.index("id")] for row in rows]
        existing = self.existing_customer_ids(ids)
        names = ", ".join(quote(c) for c in [*cols, "created_at", "updated_at"])
        places = ", ".join("%s" for _ in range(len(cols) + 2))
        updates = ", ".join(
            f"{quote(c)} = coalesce(excluded.{quote(c)}, customers.{quote(c)})"
            for c in cols
            if c != "id"
        )
        sql = (
            f"INSERT INTO customers ({names}) VALUES ({places}) ON CONFLICT(id) DO UPDATE SET "
            f"{updates + ', ' if updates else ''}updated_at = excluded.updated_at, verified = 1"
        )
        self.conn.executemany(sql, [(*_text(row), at, at) for row in rows])
        updated = len(existing)
        return len(set(ids)) - updated, updated

    def get_customers(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Customers by id, fetched in chunks."""
        if not ids:
            return {}
        cur = self.conn.execute("SELECT * FROM customers WHERE id = ANY(%s)", (list(ids),))
        return {row["id"]: row for row in iter_dicts(cur)}

    def count_customers(self) -> dict[str, int]:
        row = self.conn.one("SELECT count(*), count(*) FILTER (WHERE verified = 0) FROM customers")
        return {"customers": row[0] - row[1], "unverified_contacts": row[1]}

    def user_addresses(self, channel: str, ids: Sequence[str]) -> dict[str, str]:
        """customer id → the platform user id that reaches them on ``channel`` (one each)."""
        found: dict[str, str] = {}
        for customer_id, address in self.conn.execute(
            "SELECT customer_id, address FROM addresses WHERE channel = %s "
            "AND customer_id = ANY(%s)",
            (channel, sorted(set(ids))),
        ):
            found.setdefault(customer_id, address)
        return found

    def create_contact(self, customer_id: str, fields: dict[str, Any], at: str) -> None:
        """Insert an unverified contact (someone who wrote in from an unknown address)."""
        cols = ["id", *self._resolve(list(fields)), "verified", "created_at", "updated_at"]
        self.conn.execute(
            f"INSERT INTO customers ({', '.join(quote(c) for c in cols)}) "
            f"VALUES ({marks(cols)}) ON CONFLICT DO NOTHING",
            (customer_id, *_text(list(fields.values())), 0, at, at),
        )

    def existing_customer_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored customers."""
        if not ids:
            return set()
        return {
            r[0]
            for r in self.conn.execute("SELECT id FROM customers WHERE id = ANY(%s)", (list(ids),))
        }

    def begin_import_scratch(self) -> None:
        """Start an empty list of the ids seen by this import (per connection, never on disk)."""
        self.conn.execute(f"DROP TABLE IF EXISTS {self.SCRATCH}")
        self.conn.execute(
            "CREATE TEMP TABLE outreach_import_ids (id TEXT PRIMARY KEY, line INTEGER NOT NULL)"
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


def _text(values: Sequence[Any]) -> list[Any]:
    """Attribute values as the text columns keep them (None stays None: "not given")."""
    return [v if v is None or isinstance(v, str) else str(v) for v in values]
