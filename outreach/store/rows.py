"""The one way rows leave a cursor as dicts, batching of ``IN (…)`` lists, and the few
SQL fragments both engines write alike.

Every implementation builds dicts here, from the cursor's own column names (any DB-API
cursor: sqlite3 and psycopg alike), never by zipping ``cursor.description`` by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
_WORD = re.compile(r"[a-z_]+")


class Cursor(Protocol):
    """What a DB-API cursor offers that these helpers use."""

    @property
    def description(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


def column_names(cursor: Cursor) -> list[str]:
    """The names of the cursor's result columns."""
    return [d[0] for d in cursor.description]


def iter_dicts(cursor: Cursor) -> Iterator[dict[str, Any]]:
    """Each remaining row of ``cursor`` as a dict, streamed."""
    names = column_names(cursor)
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def to_dicts(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows fetched earlier (``column_names`` taken then) as dicts: a claim fetches inside
    its transaction and builds dicts after it, so other processes wait less."""
    return [dict(zip(names, row, strict=True)) for row in rows]


def dicts(cursor: Cursor) -> list[dict[str, Any]]:
    """Every remaining row of ``cursor`` as a dict."""
    return list(iter_dicts(cursor))


def one_dict(cursor: Cursor) -> dict[str, Any] | None:
    """The next row of ``cursor`` as a dict, or None."""
    row = cursor.fetchone()
    return None if row is None else dict(zip(column_names(cursor), row, strict=True))


def chunks(values: Sequence[T], size: int = 900) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``, for ``IN (…)`` queries: an engine takes a
    bounded number of parameters per statement."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def marks(values: Sequence[object]) -> str:
    """``?, ?, …``: one placeholder per value."""
    return ", ".join("?" for _ in values)


def quote(name: str) -> str:
    """A column name as an SQL identifier (both engines quote with double quotes)."""
    return '"' + name.replace('"', '""') + '"'


def rank_case(ranks: Mapping[str, int]) -> str:
    """``CASE {} WHEN 'reason' THEN rank … ELSE 0 END``, to ``format`` with a column or a
    parameter: how conversations compare attention reasons in SQL. The names are
    outreach's own reasons, checked to be plain words."""
    whens = []
    for name, rank in sorted(ranks.items()):
        if not _WORD.fullmatch(name):
            raise ValueError(f"not a reason name: {name!r}")
        whens.append(f"WHEN '{name}' THEN {int(rank)}")
    return "(CASE {} " + " ".join(whens) + " ELSE 0 END)"
