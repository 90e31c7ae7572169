"""outreach store copy: move a workspace's SQLite database to PostgreSQL."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import JsonOption, workspace
from .output import console, print_json, progress

# the commands of `outreach store`: its help is in cli/__init__.py, where the root
# reads it without importing this module
app = typer.Typer()


@app.command(
    "copy", epilog="Example: outreach store copy --to postgresql://outreach@db.internal/outreach"
)
def copy(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The empty PostgreSQL database to copy into: postgresql://user@host/db "
            "(the password from PGPASSWORD, ~/.pgpass or a service file).",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Copy this workspace's SQLite database into an empty PostgreSQL database.

    Everything is copied (customers, consent ledger, deliveries, conversations, email
    rows), then verified by counting each table; the SQLite file is only read.
    """
    from ..errors import UsageError
    from ..store.sqlite import SqliteStore

    source = workspace(ctx).store
    if not isinstance(source, SqliteStore):
        raise UsageError(
            f"the workspace database is {source.name}, not a SQLite file; store copy copies "
            "a SQLite workspace into PostgreSQL"
        )
    if not to.startswith(("postgresql://", "postgres://")):
        raise UsageError(f'--to "{to}" is not a postgresql:// URL')
    from ..store.copy import copy_to_postgresql

    with progress("Copying", None, enabled=not as_json) as bar:
        result = copy_to_postgresql(
            source, to, progress=lambda _table, rows: bar.advance(rows), total=bar.set_total
        )
    if as_json:
        print_json({"target": result.target, "copied": result.counts})
        return
    for table, rows in result.counts.items():
        console.print(f"{table:<18} {rows:>12,}", markup=False)
    console.print(
        f"Copied into {result.target}; counts verified. Point the workspace at it with "
        "OUTREACH_DATABASE_URL or [workspace] database.",
        markup=False,
    )


@app.command("check", epilog="Example: outreach store check")
def check(ctx: typer.Context) -> None:
    """Run SQLite's full integrity check (every page and index); exit 4 on damage.

    It reads the whole file without writing to it: about 5 s for a million deliveries.
    """
    from pathlib import Path

    from ..errors import UsageError
    from ..store.sqlite import damaged, integrity_check

    database = workspace(ctx).config.database
    if not isinstance(database, Path):
        raise UsageError(
            "store check checks a SQLite workspace database; for PostgreSQL "
            "use its own tools (amcheck)"
        )
    problems = integrity_check(database)
    if not problems:
        console.print(f"{database.name}: ok")
        return
    for problem in problems:
        typer.echo(problem)
    raise damaged(database, f"{len(problems)} problems found, the first: {problems[0]}")
