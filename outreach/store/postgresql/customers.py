"""Customers on PostgreSQL: their attribute columns, extra addresses and audience selection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import NotFoundError
from ..interface import CUSTOMER_COLUMNS, Customers
from ..rows import chunks, iter_dicts, one_dict
from . import audience
from .sql import marks, quote, unit_of_work

if TYPE_CHECKING:
    from . import PgStore


# An import remembers the ids it has seen (and their line) in a TEMP table rather than a
# Python set: a million ids would cost ~100 MB of memory. A temporary table belongs to
# this session (connection) alone.
_SCRATCH = "pg_temp.outreach_import_ids"


class PgCustomers(Customers):
    """Customers on PostgreSQL."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.conn = store.conn

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

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """One customer as a dict of every column, or None."""
        return one_dict(self.conn.execute("SELECT * FROM customers WHERE id = %s", (customer_id,)))

    def require_customer(
        self, customer_id: str, *, see: str = "outreach customers list"
    ) -> dict[str, Any]:
        """``get_customer``, or NotFoundError naming the command that lists the known ones."""
        customer = self.get_customer(customer_id)
        if customer is None:
            raise NotFoundError(f'customer "{customer_id}" does not exist; see {see}')
        return customer

    def get_customers(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Customers by id, fetched in chunks."""
        if not ids:
            return {}
        cur = self.conn.execute("SELECT * FROM customers WHERE id = ANY(%s)", (list(ids),))
        return {row["id"]: row for row in iter_dicts(cur)}

    def count_customers(self) -> dict[str, int]:
        row = self.conn.one("SELECT count(*), count(*) FILTER (WHERE verified = 0) FROM customers")
        return {"customers": row[0] - row[1], "unverified_contacts": row[1]}

    def find_customer_by_address(self, channel: str, kind: str, address: str) -> str | None:
        """The id of the customer known by ``address`` on ``channel``.

        ``kind`` is how the channel addresses people: ``email``, ``phone`` or ``user`` (a
        platform's own user id, kept in ``addresses``).
        """
        row = self.conn.execute(
            "SELECT customer_id FROM addresses WHERE channel = %s AND address = %s",
            (channel, address),
        ).fetchone()
        if row:
            return str(row[0])
        if kind in ("email", "phone"):
            sql = (
                "SELECT id FROM customers WHERE lower(email) = lower(%s)"
                if kind == "email"
                else "SELECT id FROM customers WHERE phone = %s"
            )
            row = self.conn.execute(sql + " ORDER BY verified DESC, created_at LIMIT 1", (address,))
            found = row.fetchone()
            if found:
                return str(found[0])
        return None

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

    def add_address(self, channel: str, address: str, customer_id: str) -> None:
        """Remember that ``customer_id`` is reached as ``address`` on ``channel``."""
        self.conn.execute(
            "INSERT INTO addresses (channel, address, customer_id) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (channel, address, customer_id),
        )

    def create_contact(self, customer_id: str, fields: dict[str, Any], at: str) -> None:
        """Insert an unverified contact (someone who wrote in from an unknown address)."""
        cols = ["id", *self._resolve(list(fields)), "verified", "created_at", "updated_at"]
        self.conn.execute(
            f"INSERT INTO customers ({', '.join(quote(c) for c in cols)}) "
            f"VALUES ({marks(cols)}) ON CONFLICT DO NOTHING",
            (customer_id, *_text(list(fields.values())), 0, at, at),
        )

    def change_phone(self, customer_id: str, phone: str, at: str) -> None:
        # the conversation keeps the old and new number as the record of the change
        self.conn.execute(
            "UPDATE customers SET phone = %s, updated_at = %s WHERE id = %s",
            (phone, at, customer_id),
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
        self.conn.execute(f"DROP TABLE IF EXISTS {_SCRATCH}")
        self.conn.execute(
            "CREATE TEMP TABLE outreach_import_ids (id TEXT PRIMARY KEY, line INTEGER NOT NULL)"
        )

    def import_ids_seen(self, ids: Sequence[str]) -> dict[str, int]:
        """id → line of its first appearance, for those of ``ids`` this import has seen."""
        found: dict[str, int] = {}
        for chunk in chunks(ids):
            found.update(
                (r[0], r[1])
                for r in self.conn.execute(
                    f"SELECT id, line FROM {_SCRATCH} WHERE id IN ({marks(chunk)})", chunk
                )
            )
        return found

    def remember_import_ids(self, rows: Sequence[tuple[str, int]]) -> None:
        """Add (id, line) pairs to this import's list."""
        self.conn.executemany(
            f"INSERT INTO {_SCRATCH} (id, line) VALUES (%s, %s) ON CONFLICT DO NOTHING", rows
        )

    def end_import_scratch(self) -> None:
        """Forget this import's list of ids."""
        self.conn.execute(f"DROP TABLE IF EXISTS {_SCRATCH}")

    def customers_by_address(
        self, channel: str, kind: str, addresses: Iterable[str]
    ) -> dict[str, str]:
        """address → customer id for many addresses on one channel at once (the batch form of
        ``customers.find_customer_by_address``, with the same precedence: the channel's own
        addresses table, then the email/phone column, verified customers first, oldest first)."""
        wanted = sorted(set(addresses))
        found: dict[str, str] = {}
        for chunk in chunks(wanted):
            found.update(
                self.conn.execute(
                    f"SELECT address, customer_id FROM addresses WHERE channel = %s "
                    f"AND address IN ({marks(chunk)})",
                    [channel, *chunk],
                ).fetchall()
            )
        rest = [a for a in wanted if a not in found]
        if kind not in ("email", "phone", "id") or not rest:
            return found
        column = {"email": "lower(email)", "phone": "phone", "id": "id"}[kind]
        for chunk in chunks(rest):
            rows = self.conn.execute(
                f"SELECT {column}, id FROM customers WHERE {column} IN ({marks(chunk)}) "
                f"ORDER BY verified ASC, created_at DESC, id DESC",
                chunk,
            )
            # later rows win: the last one per address is verified and oldest
            found.update({str(a): str(c) for a, c in rows})
        return found

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
