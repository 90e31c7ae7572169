"""Audience selection on PostgreSQL: the user's condition, parsed and rebuilt.

``customers list --where`` and a campaign's ``[audience] where`` are written in SQLite's
dialect, as users have always written them. Here the condition is parsed (sqlglot), every
node checked against what a filter may contain (customer columns, literals, operators and
a named set of pure functions: no subquery, no other table, no function with side
effects), and the tree emitted as PostgreSQL. Only that rebuilt text reaches the server,
so nothing a user types runs unchecked.

Attribute columns are text on PostgreSQL; a comparison of one with a number compares its
numeric value (``outreach_number``), as SQLite compares an untyped column holding a number.

Rows are streamed by keyset pages (``id > last id``), as on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from ...errors import UsageError
from ..interface import CUSTOMER_COLUMNS
from ..rows import column_names, quote, to_dicts

if TYPE_CHECKING:
    from . import PgStore

PAGE_SIZE = 500
# SQLite names users write → the sqlglot node each becomes
SAFE_FUNCTIONS: dict[str, type[exp.Expression]] = {
    "lower": exp.Lower,
    "upper": exp.Upper,
    "length": exp.Length,
    "substr": exp.Substring,
    "substring": exp.Substring,
    "trim": exp.Trim,
    "coalesce": exp.Coalesce,
    "ifnull": exp.Coalesce,
    "abs": exp.Abs,
    "round": exp.Round,
    "nullif": exp.Nullif,
    "min": exp.Least,
    "max": exp.Greatest,
    "instr": exp.StrPosition,
    "iif": exp.If,
}
_OPERATORS: tuple[type[exp.Expression], ...] = (
    exp.And,
    exp.Or,
    exp.Not,
    exp.Paren,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.Like,
    exp.ILike,
    exp.In,
    exp.Between,
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.DPipe,
    exp.Cast,
    exp.DataType,
    exp.Case,
    exp.If,
)
_VALUES: tuple[type[exp.Expression], ...] = (
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Column,
    exp.Identifier,
)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_ALLOWED = (*_OPERATORS, *_VALUES, *set(SAFE_FUNCTIONS.values()))


def _clean(where: str | None) -> str | None:
    if where is None or not where.strip():
        return None
    return where


def _refuse(where: str, reason: str) -> UsageError:
    shown = where.strip().replace("\n", " ")
    shown = shown if len(shown) <= 80 else shown[:80] + "…"
    return UsageError(f'where "{shown}": {reason}')


def compile_where(where: str, columns: Sequence[str]) -> str:
    """The condition as PostgreSQL, or UsageError saying what a filter may not contain."""
    try:
        trees = sqlglot.parse(where, read="sqlite")
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        raise _refuse(
            where, f"{first}; write a condition over customer columns like plan = 'pro'"
        ) from None
    if len(trees) != 1 or trees[0] is None:
        raise _refuse(where, "a filter is one condition; remove the ';' and what follows")
    tree = trees[0]
    known = {c.lower(): c for c in columns}
    for node in list(tree.walk()):
        if isinstance(node, (exp.Select, exp.Subquery, exp.Table, exp.Query)):
            raise _refuse(where, "a filter can only use customer columns (no subquery)")
        if isinstance(node, exp.Anonymous) or (
            isinstance(node, exp.Func) and not isinstance(node, _ALLOWED)
        ):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            raise _refuse(
                where,
                f"function {name.lower()}() is not allowed; use "
                + ", ".join(sorted(SAFE_FUNCTIONS)),
            )
        if not isinstance(node, _ALLOWED):
            raise _refuse(
                where,
                f"{node.key} is not allowed; a filter is a read-only condition over customer "
                "columns",
            )
        if isinstance(node, exp.Column):
            if node.table and node.table.lower() != "customers":
                raise _refuse(
                    where,
                    f'reading "{node.table}" is not allowed; a filter can '
                    "only use customer columns",
                )
            real = known.get(node.name.lower())
            if real is None:
                raise _refuse(
                    where, f'no customer column "{node.name}"; columns are {", ".join(columns)}'
                )
            node.replace(exp.column(exp.to_identifier(real, quoted=True)))
    tree = tree.transform(_numeric_attributes)
    return tree.sql(dialect="postgres")


def _is_number(node: exp.Expression) -> bool:
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and node.is_number


def _numeric_attributes(node: exp.Expression) -> exp.Expression:
    """An attribute column compared with a number compares as a number."""
    if isinstance(node, (*_COMPARISONS, exp.Between, exp.In)):
        operands = [
            node.this,
            *(node.expressions or []),
            node.args.get("expression"),
            node.args.get("low"),
            node.args.get("high"),
        ]
        if any(o is not None and _is_number(o) for o in operands):
            for o in operands:
                if isinstance(o, exp.Column) and o.name not in CUSTOMER_COLUMNS:
                    o.replace(exp.func("outreach_number", o.copy()))
    return node


def validate_where(store: PgStore, where: str | None) -> None:
    where = _clean(where)
    if where is not None:
        _checked(store, where)


def _checked(store: PgStore, where: str) -> str:
    condition = compile_where(where, store.customers.all_columns())
    # psycopg reads % as the start of a placeholder; the condition has none of its own
    condition = condition.replace("%", "%%")
    try:
        with store.write():  # a savepoint: a failing probe leaves the caller's work alone
            store.conn.execute(f"EXPLAIN SELECT 1 FROM customers WHERE ({condition})")
    except Exception as exc:  # the server's own refusal (a type mismatch, a bad cast)
        import psycopg

        if not isinstance(exc, psycopg.Error):
            raise
        reason = str(exc).strip().splitlines()[0]
        raise _refuse(where, f"{reason}; write a condition over customer columns") from None
    return condition


def select_customers(
    store: PgStore,
    where: str | None,
    *,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Customers matching ``where``, ordered by id, streamed; the filter is checked now."""
    where = _clean(where)
    known = {c.lower(): c for c in store.customers.all_columns()}
    if columns is None:
        cols = "*"
    else:
        wanted = ["id", *[c for c in columns if c.lower() != "id"]]
        unknown = [c for c in wanted if c.lower() not in known]
        if unknown:
            raise UsageError(
                f'no customer column "{unknown[0]}"; columns are {", ".join(known.values())}'
            )
        cols = ", ".join(quote(known[c.lower()]) for c in wanted)
    condition = _checked(store, where) if where is not None else None
    return _pages(store, cols, condition, limit)


def _pages(
    store: PgStore, cols: str, condition: str | None, limit: int | None
) -> Iterator[dict[str, Any]]:
    extra = f" AND ({condition})" if condition else ""
    sql = f"SELECT {cols} FROM customers WHERE id > %s{extra} ORDER BY id LIMIT %s"
    last, left = "", limit
    while True:
        size = PAGE_SIZE if left is None else min(PAGE_SIZE, left)
        if size <= 0:
            return
        cur = store.conn.execute(sql, (last, size))
        rows = cur.fetchall()
        yield from to_dicts(column_names(cur), rows)
        if len(rows) < size:
            return
        last = rows[-1][0]
        if left is not None:
            left -= len(rows)
