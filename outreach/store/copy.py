"""``outreach store copy --to URL``: a workspace's SQLite database into an empty PostgreSQL
database, everything, verified by counts.

Tables are copied in the order their foreign keys need, each with PostgreSQL's COPY (rows
streamed from a SQLite cursor, never all in memory), ids kept as they are, then each
identity sequence is moved past the highest id. Until the copy is verified the target
carries a ``copy_incomplete`` mark in ``meta``: a copy killed half-way leaves a database
that outreach refuses to use and that the next copy names as incomplete. The SQLite file
is only read.

The rows go in as one transaction with the secondary indexes and the foreign keys
dropped, then both are made again as they were (read from the catalogue, so a later
migration's are too): building an index from a million rows at once, and checking a
foreign key with one join, costs the server a fraction of keeping them row by row
(a million customers and a million deliveries: about three times less). A unique index
made again still refuses a duplicate, and a foreign key a missing parent, failing the
copy whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from ..errors import StoreError, UsageError
from .interface import CUSTOMER_COLUMNS
from .postgresql import INCOMPLETE_COPY, PgStore, open_postgresql
from .sqlite import SqliteStore

# parents before children (customers before the consent that references them, …)
TABLES = (
    "customers",
    "addresses",
    "consent",
    "occurrences",
    "deliveries",
    "conversations",
    "messages",
    "survey_responses",
    "email_messages",
    "mailbox_sync",
    "meta",
)
_IDENTITY = ("consent", "occurrences", "conversations", "messages", "survey_responses")
BATCH = 5000


@dataclass
class CopyResult:
    target: str
    counts: dict[str, int]  # table → rows copied (and counted in the target)


def copy_to_postgresql(
    source: SqliteStore,
    url: str,
    progress: Callable[[str, int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> CopyResult:
    """Copy every table of ``source`` into the empty database at ``url``.

    ``total(rows)`` is told how many rows there are to copy, ``progress(table, rows)``
    as they are written. Refuses a target that holds
    any outreach data (or another application's tables); a refusal writes nothing.
    """
    target = open_postgresql(url, allow_incomplete=True)
    try:
        _refuse_unless_empty(target)
        totals = {table: _count(source.conn, table) for table in TABLES}
        if total is not None:
            total(sum(totals.values()))
        with target.write():
            target.conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s)", (INCOMPLETE_COPY, source.name)
            )
        attributes = [c for c in source.customers.all_columns() if c not in CUSTOMER_COLUMNS]
        if attributes:
            target.customers.ensure_columns(attributes)
        try:
            with target.write():
                rebuild = _drop_secondary(target)
                for table in TABLES:
                    _copy_table(source, target, table, progress)
                for statement in rebuild:
                    target.conn.execute(statement)
        except psycopg.IntegrityError as exc:
            why = " ".join(filter(None, (exc.diag.message_primary, exc.diag.message_detail)))
            raise StoreError(
                f"{target.name}: {source.name} does not fit the PostgreSQL schema "
                f"({why or type(exc).__name__}); nothing was copied and the target is marked "
                "incomplete: repair the workspace database, drop and recreate the target, then "
                "copy again"
            ) from None
        with target.write():
            for table in _IDENTITY:
                target.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
            copied = {table: _pg_count(target, table) for table in TABLES}
            copied["meta"] -= 1  # the mark, removed below
            if copied != totals:
                wrong = [t for t in TABLES if copied[t] != totals[t]]
                raise StoreError(
                    f"{target.name}: the copy does not match ({wrong[0]}: "
                    f"{totals[wrong[0]]:,} in {source.name}, {copied[wrong[0]]:,} copied); "
                    "the target is marked incomplete: drop and recreate it, then copy again"
                )
            target.conn.execute("DELETE FROM meta WHERE key = %s", (INCOMPLETE_COPY,))
        return CopyResult(target.name, totals)
    finally:
        target.close()


def _drop_secondary(target: PgStore) -> list[str]:
    """Drop the foreign keys and the indexes that no constraint owns (primary keys stay);
    the statements that make them again, indexes first. Caller holds the transaction."""
    conn = target.conn
    foreign = conn.execute(
        "SELECT conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
    ).fetchall()
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        (list(TABLES),),
    ).fetchall()
    for table, name, _ in foreign:
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    return [definition for _, definition in indexes] + [
        f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
        for table, name, definition in foreign
    ]


def _refuse_unless_empty(target: PgStore) -> None:
    row = target.conn.execute(
        "SELECT value FROM meta WHERE key = %s", (INCOMPLETE_COPY,)
    ).fetchone()
    if row is not None:
        raise UsageError(
            f"{target.name} holds an incomplete copy of {row[0]} (a copy stopped half-way); "
            "drop and recreate the database (dropdb, createdb), then copy again"
        )
    for table in TABLES:
        if target.conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone() != (False,):
            raise UsageError(
                f"{target.name} is not empty ({table} has rows); copy into a new, empty "
                "database (createdb) so that nothing there is mixed with this workspace"
            )


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _pg_count(target: PgStore, table: str) -> int:
    return int(target.conn.one(f"SELECT count(*) FROM {table}")[0])


def _copy_table(
    source: SqliteStore,
    target: PgStore,
    table: str,
    progress: Callable[[str, int], None] | None,
) -> None:
    cursor = source.conn.execute(f"SELECT * FROM {table}")
    names = [d[0] for d in cursor.description]
    columns = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
    text = table == "customers"  # attribute columns are text on PostgreSQL
    sql = f"COPY {table} ({columns}) FROM STDIN"
    with target.raw.cursor() as cur, cur.copy(sql) as copy:
        while rows := cursor.fetchmany(BATCH):
            for row in rows:
                copy.write_row(
                    [v if v is None or isinstance(v, str) else str(v) for v in row] if text else row
                )
            if progress is not None:
                progress(table, len(rows))
