"""What the two stores' SQL differs in where a statement is otherwise the same, and the
base of the classes that write such statements once (``lookups.py``, this package).

A shared statement is written with ``?`` marks and no other ``?`` or ``%`` in its text:
on PostgreSQL each ``?`` becomes psycopg's ``%s``, on SQLite it is used as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class Dialect:
    """The fragments a shared statement takes from its engine (a plain class: a frozen
    dataclass would cost every process about 4 million instructions of code generation
    at import, a millisecond)."""

    def __init__(
        self, *, param: str, insert_or_ignore: str, or_ignore: str, index_hints: bool, row_key: str
    ) -> None:
        self.param = param
        # "insert unless a unique key is taken": SQLite's OR IGNORE (which also skips a row
        # breaking NOT NULL or CHECK) is kept on SQLite, PostgreSQL has ON CONFLICT DO NOTHING
        self.insert_or_ignore = insert_or_ignore
        self.or_ignore = or_ignore
        # SQLite is told the index of a hot read (see ``shared/reports.py``); PostgreSQL plans
        self.index_hints = index_hints
        # what an index holds of its row: SQLite's rowid (read without the table), or the id
        self.row_key = row_key

    def indexed_by(self, index: str) -> str:
        """`` INDEXED BY index`` on SQLite, nothing on PostgreSQL."""
        return f" INDEXED BY {index}" if self.index_hints else ""


SQLITE = Dialect(
    param="?", insert_or_ignore="INSERT OR IGNORE", or_ignore="", index_hints=True, row_key="rowid"
)
POSTGRESQL = Dialect(
    param="%s",
    insert_or_ignore="INSERT",
    or_ignore=" ON CONFLICT DO NOTHING",
    index_hints=False,
    row_key="id",
)


class Statements:
    """Base of shared statements; ``conn`` is the store's connection."""

    conn: Any
    dialect: ClassVar[Dialect] = SQLITE

    def _marks(self, values: Sequence[object]) -> str:
        """One placeholder per value."""
        return ", ".join([self.dialect.param] * len(values))

    def _sql(self, sql: str) -> str:
        """``sql`` with this engine's placeholder."""
        param = self.dialect.param
        return sql if param == "?" else sql.replace("?", param)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(self._sql(sql), rows)


class TableStatements(Statements):
    """Base of one table's shared statements, made with its store (each store's class for
    the table says which store it is, ``store: SqliteStore``, and its connection's type)."""

    store: Any

    def __init__(self, store: Any) -> None:
        self.store = store
        self.conn = store.conn
