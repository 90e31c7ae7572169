"""Audience selection: a user's SQL condition over customer columns, run read-only.

``customers list --where`` and a campaign's ``[audience] where`` are SQL written by a user,
so they are compiled under an SQLite authorizer that allows reading the ``customers``
table and calling a short list of pure functions, and denies everything else (other
tables, writes, ATTACH, PRAGMA, ``load_extension``, ``randomblob``...). The authorizer is
only consulted while a statement is prepared, so it is installed around each prepare and
removed in a ``finally`` before any row reaches the caller: a half-read iterator can never
leave it installed on the shared connection.

Rows are streamed by keyset pages (``id > last id``, ``LIMIT 500``) instead of one open
cursor, so a caller (the run planner) may write between rows without an open read
statement spanning its transactions, and memory stays flat for a million customers.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..rows import column_names, to_dicts

if TYPE_CHECKING:
    from . import SqliteStore

PAGE_SIZE = 500
SAFE_FUNCTIONS = frozenset(
    {
        "lower",
        "upper",
        "length",
        "substr",
        "substring",
        "trim",
        "ltrim",
        "rtrim",
        "coalesce",
        "ifnull",
        "abs",
        "round",
        "date",
        "time",
        "datetime",
        "strftime",
        "julianday",
        "like",
        "glob",
        "instr",
        "replace",
        "min",
        "max",
        "typeof",
        "nullif",
        "iif",
    }
)
_ACTIONS = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").lower().replace("_", " ")
    for name in dir(sqlite3)
    if name.startswith("SQLITE_")
    and name not in ("SQLITE_OK", "SQLITE_DENY", "SQLITE_IGNORE")
    and isinstance(getattr(sqlite3, name), int)
    and not name.startswith("SQLITE_LIMIT")
}


class _Guard:
    """The authorizer: remembers the first thing it denied, to explain the refusal."""

    def __init__(self) -> None:
        self.denied: str | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, _src: str | None
    ) -> int:
        if action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and arg1 == "customers" and db == "main":
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in SAFE_FUNCTIONS:
            return sqlite3.SQLITE_OK
        if self.denied is None:
            if action == sqlite3.SQLITE_READ:
                self.denied = (
                    f'reading "{arg1}" is not allowed; a filter can only use customer columns'
                )
            elif action == sqlite3.SQLITE_FUNCTION:
                self.denied = f"function {arg2}() is not allowed; use " + ", ".join(
                    sorted(SAFE_FUNCTIONS)
                )
            else:
                what = _ACTIONS.get(action, f"action {action}")
                self.denied = (
                    f"{what} is not allowed; a filter is a read-only condition over "
                    "customer columns (no writes, ATTACH or PRAGMA)"
                )
        return sqlite3.SQLITE_DENY


def _clean(where: str | None) -> str | None:
    if where is None or not where.strip():
        return None
    return where


def _sql(where: str | None, columns: str, *, after: bool) -> str:
    conditions = ["id > ?"] if after else []
    if where is not None:
        # Newlines keep a trailing -- comment in the filter from eating the closing paren.
        conditions.append(f"(\n{where}\n)")
    sql = f"SELECT {columns} FROM customers"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql + " ORDER BY id LIMIT ?"


def _columns_sql(store: SqliteStore, columns: Sequence[str] | None) -> str:
    if columns is None:
        return "*"
    known = {c.name.lower(): c.name for c in store.db["customers"].columns}
    wanted = ["id", *[c for c in columns if c.lower() != "id"]]
    unknown = [c for c in wanted if c.lower() not in known]
    if unknown:
        raise UsageError(
            f'no customer column "{unknown[0]}"; columns are {", ".join(known.values())}'
        )
    return ", ".join('"' + known[c.lower()].replace('"', '""') + '"' for c in wanted)


def _guarded(
    store: SqliteStore, where: str | None, sql: str, params: Sequence[Any]
) -> sqlite3.Cursor:
    guard = _Guard()
    conn = store.conn
    conn.set_authorizer(guard)
    try:
        return conn.execute(sql, tuple(params))
    except (sqlite3.Error, sqlite3.Warning) as exc:
        error: Exception = exc
    finally:
        conn.set_authorizer(None)
    # Explained only now: reading the column names must not run under the authorizer.
    raise UsageError(_explain(store, where or "", guard, error))


def _explain(store: SqliteStore, where: str, guard: _Guard, exc: Exception) -> str:
    shown = where.strip().replace("\n", " ")
    shown = shown if len(shown) <= 80 else shown[:80] + "…"
    text = str(exc)
    if guard.denied:
        reason = guard.denied
    elif missing := re.match(r"no such column: (.+)", text):
        names = [c.name for c in store.db["customers"].columns]
        reason = f'no customer column "{missing[1]}"; columns are {", ".join(names)}'
    elif missing := re.match(r"no such function: (.+)", text):
        reason = f"function {missing[1]}() is not allowed; use " + ", ".join(sorted(SAFE_FUNCTIONS))
    elif "one statement" in text or 'near ";"' in text:
        reason = "a filter is one condition; remove the ';' and what follows"
    else:
        reason = f"{text}; write a condition over customer columns like plan = 'pro' and age > 30"
    return f'where "{shown}": {reason}'


def validate_where(store: SqliteStore, where: str | None) -> None:
    """Raise UsageError unless ``where`` is a read-only condition over customer columns."""
    where = _clean(where)
    if where is None:
        return
    _guarded(store, where, "EXPLAIN " + _sql(where, "*", after=False), [0]).fetchall()


def select_customers(
    store: SqliteStore,
    where: str | None,
    *,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Customers matching ``where``, ordered by id, streamed; each row a dict of columns.

    The filter is checked now (UsageError is raised by this call, not by the first
    ``next()``), so a caller can report it before printing anything.
    """
    where = _clean(where)
    cols = _columns_sql(store, columns)
    first_sql = _sql(where, cols, after=False)
    next_sql = _sql(where, cols, after=True)
    validate_where(store, where)
    page = min(PAGE_SIZE, limit) if limit is not None else PAGE_SIZE
    cursor = _guarded(store, where, first_sql, [page])
    names = column_names(cursor)
    return _pages(store, where, next_sql, names, cursor.fetchall(), page, limit)


def _pages(
    store: SqliteStore,
    where: str | None,
    sql: str,
    names: list[str],
    rows: list[Any],
    size: int,
    limit: int | None,
) -> Iterator[dict[str, Any]]:
    left = limit
    while True:
        yield from to_dicts(names, rows)
        if len(rows) < size:
            return
        if left is not None:
            left -= len(rows)
            if left <= 0:
                return
            size = min(PAGE_SIZE, left)
        rows = _guarded(store, where, sql, [rows[-1][0], size]).fetchall()
