"""Customers' reads and small writes that both stores write alike: lookups by id and by
address, and the list of ids an import has seen (``SCRATCH``, a temporary table)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from ...errors import NotFoundError
from ..rows import chunks, one_dict
from .dialect import TableStatements


class CustomersSql(TableStatements):
    """Mixed into each store's customers."""

    # the temporary table of an import's ids: it belongs to the connection alone
    SCRATCH: ClassVar[str]

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """One customer as a dict of every column, or None."""
        return one_dict(self._execute("SELECT * FROM customers WHERE id = ?", (customer_id,)))

    def require_customer(
        self, customer_id: str, *, see: str = "outreach customers list"
    ) -> dict[str, Any]:
        """``get_customer``, or NotFoundError naming the command that lists the known ones."""
        customer = self.get_customer(customer_id)
        if customer is None:
            raise NotFoundError(f'customer "{customer_id}" does not exist; see {see}')
        return customer

    def find_customer_by_address(self, channel: str, kind: str, address: str) -> str | None:
        """The id of the customer known by ``address`` on ``channel``.

        ``kind`` is how the channel addresses people: ``email``, ``phone`` or ``user`` (a
        platform's own user id, kept in ``addresses``).
        """
        row = self._execute(
            "SELECT customer_id FROM addresses WHERE channel = ? AND address = ?",
            (channel, address),
        ).fetchone()
        if row:
            return str(row[0])
        if kind in ("email", "phone"):
            sql = (
                "SELECT id FROM customers WHERE lower(email) = lower(?)"
                if kind == "email"
                else "SELECT id FROM customers WHERE phone = ?"
            )
            row = self._execute(sql + " ORDER BY verified DESC, created_at LIMIT 1", (address,))
            found = row.fetchone()
            if found:
                return str(found[0])
        return None

    def add_address(self, channel: str, address: str, customer_id: str) -> None:
        """Remember that ``customer_id`` is reached as ``address`` on ``channel``."""
        self._execute(
            f"{self.dialect.insert_or_ignore} INTO addresses (channel, address, customer_id) "
            f"VALUES (?, ?, ?){self.dialect.or_ignore}",
            (channel, address, customer_id),
        )

    def change_phone(self, customer_id: str, phone: str, at: str) -> None:
        # the conversation keeps the old and new number as the record of the change
        self._execute(
            "UPDATE customers SET phone = ?, updated_at = ? WHERE id = ?",
            (phone, at, customer_id),
        )

    def import_ids_seen(self, ids: Sequence[str]) -> dict[str, int]:
        """id → line of its first appearance, for those of ``ids`` this import has seen."""
        found: dict[str, int] = {}
        for chunk in chunks(ids):
            found.update(
                (r[0], r[1])
                for r in self._execute(
                    f"SELECT id, line FROM {self.SCRATCH} WHERE id IN ({self._marks(chunk)})",
                    chunk,
                )
            )
        return found

    def remember_import_ids(self, rows: Sequence[tuple[str, int]]) -> None:
        """Add (id, line) pairs to this import's list."""
        self._executemany(
            f"{self.dialect.insert_or_ignore} INTO {self.SCRATCH} (id, line) "
            f"VALUES (?, ?){self.dialect.or_ignore}",
            rows,
        )

    def end_import_scratch(self) -> None:
        """Forget this import's list of ids."""
        self._execute(f"DROP TABLE IF EXISTS {self.SCRATCH}")

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
                self._execute(
                    f"SELECT address, customer_id FROM addresses WHERE channel = ? "
                    f"AND address IN ({self._marks(chunk)})",
                    [channel, *chunk],
                ).fetchall()
            )
        rest = [a for a in wanted if a not in found]
        if kind not in ("email", "phone", "id") or not rest:
            return found
        column = {"email": "lower(email)", "phone": "phone", "id": "id"}[kind]
        for chunk in chunks(rest):
            rows = self._execute(
                f"SELECT {column}, id FROM customers WHERE {column} IN ({self._marks(chunk)}) "
                f"ORDER BY verified ASC, created_at DESC, id DESC",
                chunk,
            )
            # later rows win: the last one per address is verified and oldest
            found.update({str(a): str(c) for a, c in rows})
        return found
