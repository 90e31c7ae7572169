"""Benchmarks on a PostgreSQL server: ``run`` with two processes, and ``store copy``.

They need a server where the given user may create databases: ``--postgresql URL`` (or
``OUTREACH_BENCH_POSTGRESQL``, else the test suite's ``OUTREACH_TEST_POSTGRESQL``).
Without one each row says so in one line.
Every measured command gets a database of its own, made for it (``CREATE DATABASE …
TEMPLATE`` of a prepared one, so set-up is not measured) and dropped at the end of the
session. The server shares the machine's cores with what it measures.

Correctness is asserted, speed only printed: a run that sent a customer twice, lost a
delivery or a copy whose counts differ fails its row whatever its speed.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from pathlib import Path

from . import data
from .context import Context, check, count_sent, fmt_n, join, json_out, max_rss, repeat
from .harness import ChildFailed, NotAvailable, Row, copy_workspace, outreach, run_child

NO_SERVER = (
    "no PostgreSQL server: pass --postgresql postgresql://USER@HOST/DB (a user that may "
    "create databases) or set OUTREACH_BENCH_POSTGRESQL"
)


def _server(ctx: Context) -> str:
    if not ctx.postgresql:
        raise NotAvailable(NO_SERVER)
    return ctx.postgresql


def _admin(ctx: Context):  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(_server(ctx), autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise NotAvailable(f"cannot connect to {ctx.postgresql}: {exc}".splitlines()[0]) from None


def with_database(url: str, name: str) -> str:
    head, _, _ = url.partition("?")[0].rpartition("/")
    return f"{head}/{name}"


def new_database(ctx: Context, key: str, template: str | None = None) -> str:
    """The URL of a new database for this session (a copy of ``template``), dropped by
    the session's clean-up."""
    session = ctx.cache.setdefault("pg_session", uuid.uuid4().hex[:8])
    name = f"outreach_bench_{session}_{key}"
    with _admin(ctx) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        source = f'"{template}"' if template else "template0"
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE {source}')

    def drop() -> None:
        with _admin(ctx) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    ctx.cleanups.append(drop)
    return with_database(_server(ctx), name)


def _database_name(url: str) -> str:
    return url.rpartition("/")[2]


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]


# -- run nps on PostgreSQL ---------------------------------------------------------------


def _seeded_pg(ctx: Context, n: int) -> tuple[Path, str]:
    """A workspace (two send processes) and a template database with ``n`` customers
    imported through the CLI (made once per session, not measured)."""
    cached = ctx.cache.get(("pg_seed", n))
    if cached:
        return cached  # type: ignore[no-any-return]
    ctx.log(f"  set-up: importing {n:,} customers into PostgreSQL")
    ws = ctx.new_workspace(f"seed-pg-{n}")
    toml = ws / "outreach.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace("[sending]\n", "[sending]\nprocesses = 2\n", 1),
        encoding="utf-8",
    )
    url = new_database(ctx, f"seed{n}")
    check(
        run_child(
            outreach(ws, "customers", "import", str(ctx.customers_csv(n)), "--json"),
            timeout=max(ctx.timeout, 1800.0),
            env={"OUTREACH_DATABASE_URL": url},
        )
    )
    ctx.cache[("pg_seed", n)] = (ws, url)
    return ws, url


def _assert_sent_once(url: str, ws: Path, n: int) -> None:
    """Every customer has exactly one sent delivery, one outbound message and one file."""
    ((sent, customers, twice, out),) = _query(
        url,
        "SELECT count(*) FILTER (WHERE status = 'sent'), count(DISTINCT customer_id), "
        "(SELECT count(*) FROM (SELECT customer_id FROM messages WHERE direction = 'out' "
        "GROUP BY customer_id HAVING count(*) > 1) AS t), "
        "(SELECT count(*) FROM messages WHERE direction = 'out') FROM deliveries",
    )
    # one file per delivery, named by its id (.json, or .eml for email)
    files = sum(1 for p in (ws / "outbox").rglob("*") if p.suffix in (".json", ".eml"))
    problems = [
        f"{what} {got:,} of {n:,}"
        for what, got in (
            ("sent", sent),
            ("customers planned", customers),
            ("outbound messages", out),
            ("outbox files", files),
        )
        if got != n
    ]
    if twice:
        problems.append(f"{twice} customers with two messages")
    if problems:
        raise ChildFailed("; ".join(problems))


def bench_run_100k_pg(ctx: Context) -> Row:
    from .cases_local import sqlite_run_rates

    _server(ctx)
    n = ctx.sizes["run_100k"]
    row = Row(
        "run_100k_pg",
        "run nps on PostgreSQL, 2 processes: plan + render + write outbox",
        f"{fmt_n(n)} customers",
        "deliveries/s",
        ">= 5,000 /s",
    )
    seed_ws, seed_url = _seeded_pg(ctx, n)
    helped: list[str] = []

    def once(i: int) -> float:
        url = new_database(ctx, f"run{n}_{i}", template=_database_name(seed_url))
        ws = copy_workspace(seed_ws, ctx.path(f"run-pg-{n}-{i}"))
        child = check(
            run_child(
                outreach(ws, "run", "nps", "--json"),
                timeout=ctx.timeout,
                tree=True,
                env={"OUTREACH_DATABASE_URL": url},
            )
        )
        sent = count_sent(json_out(child))
        if sent != n:
            raise ChildFailed(f"sent {sent} of {n}")
        _assert_sent_once(url, ws, n)
        # each claim names its claimer: how many processes sent, and how much each
        shares = _query(
            url,
            "SELECT count(*) FROM deliveries WHERE status = 'sent' GROUP BY claimed_by "
            "ORDER BY 1 DESC",
        )
        helped.append(f"sent by {len(shares)} processes ({', '.join(f'{r[0]:,}' for r in shares)})")
        max_rss(row, child.rss_mb)
        return n / child.wall

    repeat(ctx, row, once)
    sqlite = sqlite_run_rates(ctx)
    row.note = join(
        row.note,
        "0 customers sent twice, 0 lost (asserted)",
        helped[-1] if helped else "",
        f"SQLite in this session: {sorted(sqlite)[len(sqlite) // 2]:,.0f} deliveries/s"
        if sqlite
        else "",
        "the server shares the cores",
    )
    row.met = (row.median or 0) >= 5_000
    return row


# -- store copy ----------------------------------------------------------------------------


def build_copy_source(ws: Path, n: int) -> dict[str, int]:
    """``n`` customers (consent on their preferred channel) and a sent campaign of ``n``
    deliveries written straight into the workspace's SQLite file: set-up for ``store
    copy``, a million rows in seconds rather than a million-row import and run."""
    at = "2026-12-01T09:00:00Z"
    db = sqlite3.connect(ws / "outreach.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        # generated again for each table (the same for the same seed), never held in a list
        people = data.customers(n)
        db.executemany(
            "INSERT INTO customers (id, name, email, phone, preferred_channel, locale, "
            "timezone, verified, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (
                (c.id, c.name, c.email, c.phone, c.preferred_channel, c.locale, c.timezone, at, at)
                for c in people
            ),
        )
        db.executemany(
            "INSERT INTO consent (customer_id, channel, status, source, recorded_at) "
            "VALUES (?, ?, 'opted_in', 'import', ?)",
            ((c.id, c.preferred_channel, at) for c in data.customers(n)),
        )
        db.execute(
            "INSERT INTO occurrences (campaign, occurrence, kind, status, audience, planned_at) "
            "VALUES ('nps', ?, 'scheduled', 'planned', ?, ?)",
            (at, n, at),
        )
        db.executemany(
            "INSERT INTO deliveries (id, campaign, occurrence, customer_id, channel, purpose, "
            'template, counts_for_cap, "window", status, not_before, attempts, '
            "provider_message_id, created_at, updated_at, sent_at) VALUES (?, 'nps', ?, ?, ?, "
            "'campaign', 'nps', 1, '09:00-20:00', 'sent', ?, 1, ?, ?, ?, ?)",
            (
                (f"{i:020x}", at, c.id, c.preferred_channel, at, f"{i:020x}", at, at, at)
                for i, c in enumerate(data.customers(n))
            ),
        )
        db.execute("COMMIT")
        counts = {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("customers", "consent", "deliveries")
        }
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return counts


def bench_copy_1m(ctx: Context) -> Row:
    n = ctx.sizes["million"]
    row = Row(
        "copy_1m",
        "store copy --to URL: SQLite workspace into an empty PostgreSQL database",
        f"{fmt_n(n)} customers + {fmt_n(n)} deliveries",
        "s",
        "< 90 s, < 300 MB",
    )
    _server(ctx)
    ws = ctx.new_workspace(f"copy-{n}")
    # the workspace's database exists once a command has opened it
    check(run_child(outreach(ws, "customers", "list", "--json"), timeout=60))
    ctx.log(f"  set-up: writing {n:,} customers and deliveries into SQLite")
    # in a child: memory this process held would be counted in the measured child's peak
    # (a forked child starts with its parent's pages until it runs the command)
    built = check(
        run_child(
            [sys.executable, "-m", "benchmarks.cases_postgresql", "build", str(ws), str(n)],
            timeout=max(ctx.timeout, 1800.0),
        )
    )
    expected = {str(k): int(v) for k, v in json_out(built).items()}

    def once(i: int) -> float:
        url = new_database(ctx, f"copy{n}_{i}")
        child = check(
            run_child(
                outreach(ws, "store", "copy", "--to", url, "--json"),
                timeout=max(ctx.timeout, 600.0),
                keep_stdout=True,
            )
        )
        copied = json_out(child)["copied"]
        got = dict(
            _query(
                url,
                "SELECT 'customers', count(*) FROM customers UNION ALL "
                "SELECT 'consent', count(*) FROM consent UNION ALL "
                "SELECT 'deliveries', count(*) FROM deliveries",
            )
        )
        for table, rows in expected.items():
            if copied.get(table) != rows or got.get(table) != rows:
                raise ChildFailed(
                    f"{table}: {rows:,} in SQLite, {copied.get(table)} reported, "
                    f"{got.get(table)} in PostgreSQL"
                )
        max_rss(row, child.rss_mb)
        return child.wall

    repeat(ctx, row, once)
    row.note = join(
        row.note,
        f"counts asserted ({', '.join(f'{t} {v:,}' for t, v in expected.items())})",
        f"{(sum(expected.values())) / (row.median or 1):,.0f} rows/s",
        "peak RSS of the copy process",
    )
    row.met = (row.median or 999) < 90 and (row.rss_mb or 999) < 300
    return row


if __name__ == "__main__":  # ``python -m benchmarks.cases_postgresql build WS N``: set-up
    import json

    if len(sys.argv) != 4 or sys.argv[1] != "build":
        sys.exit("usage: python -m benchmarks.cases_postgresql build WORKSPACE N")
    print(json.dumps(build_copy_source(Path(sys.argv[2]), int(sys.argv[3]))))
