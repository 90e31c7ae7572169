"""outreach customers import|list|show: thin over ``outreach.customers``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from .options import JsonOption, LimitOption, workspace
from .output import note, print_json

if TYPE_CHECKING:
    from ..customers.importer import ImportResult
    from ..workspace import Workspace

# the commands of `outreach customers`: its help is in cli/__init__.py, where the root
# reads it without importing this module
app = typer.Typer()

SHOWN_ERRORS = 50
LIST_COLUMNS = ("id", "name", "email", "phone", "preferred_channel", "locale", "timezone")


class Format(StrEnum):
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


@app.command(
    "import",
    epilog="Example: outreach customers import customers.csv --dry-run",
)
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE|-",
            help="CSV (any delimiter), JSON array or JSON lines file, UTF-8; - reads standard "
            "input (CSV unless --format says otherwise).",
        ),
    ],
    format: Annotated[
        Format | None,
        typer.Option("--format", help="File format (default: from the extension)."),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option("--id-column", help="Use this column as the customer id."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count, write nothing.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Import nothing if any row is bad.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add or update customers from a file; bad rows are reported and skipped (exit 3).

    Known columns: id, name, email, phone, preferred_channel, locale, timezone, opted_in
    (channels separated by ; or ,). Every other column is kept as a customer attribute that
    audience filters can use. Empty cells never clear a stored value; consent from the file
    is recorded only on channels where the customer has no consent history yet.
    """
    import sqlite3

    from rich.markup import escape

    from ..customers.importer import import_customers
    from ..errors import DiskFullError, OutreachError, PartialFailure
    from .output import progress

    ws = workspace(ctx)
    database = ws.config.database
    fresh = isinstance(database, Path) and not database.exists()
    with ExitStack() as stack:
        if str(file) == "-":
            file = _spool_stdin(stack)
            format = format or Format.csv
        try:
            with progress(f"Importing {escape(file.name)}", None, enabled=not as_json) as bar:
                seen = 0

                def advance(rows: int) -> None:
                    nonlocal seen
                    bar.advance(rows - seen)
                    seen = rows

                try:
                    result = import_customers(
                        ws.store,
                        ws.config,
                        file,
                        format=format.value if format else None,
                        id_column=id_column,
                        dry_run=dry_run,
                        strict=strict,
                        on_progress=advance,
                    )
                except (KeyboardInterrupt, SystemExit, sqlite3.Error, DiskFullError) as exc:
                    _stopped(exc, ws, file.name, seen if not (fresh or strict or dry_run) else 0)
        except OutreachError:
            if fresh:
                # a first import that failed leaves the workspace as it was: no database
                ws.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)
            raise
    if as_json:
        print_json(result.as_json())
    else:
        _print_summary(result)
    if result.rejected:
        if result.rolled_back:
            raise PartialFailure(
                f"{file.name}: {result.rejected} rows rejected, so nothing was imported "
                "(--strict); fix them and import again"
            )
        raise PartialFailure(
            f"{file.name}: {result.rejected} of {result.rows} rows rejected; fix them and "
            "import the file again (imported rows are updated, nothing is duplicated)"
        )


def _stopped(exc: BaseException, ws: Workspace, name: str, committed: int) -> NoReturn:
    """An import stopped by a signal or a full disk: say how far it got (``committed`` rows,
    whose batches are in the store), then stop the command."""
    import sqlite3

    from ..errors import DiskFullError
    from ..store.sqlite import database_error, store_path

    done = f"the first {committed:,} rows of {name} were imported" if committed else None
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        if done:
            note(
                f"interrupted: {done}; import the file again to finish (imported rows are "
                "updated, nothing is duplicated)"
            )
        raise exc
    fault = exc if isinstance(exc, DiskFullError) else None
    if isinstance(exc, sqlite3.Error):
        known = database_error(exc, store_path(ws.store))
        if known is None:
            raise exc
        if not isinstance(known, DiskFullError):
            raise known from None
        fault = known
    assert fault is not None
    raise DiskFullError(fault.where, done=done) from None


def _spool_stdin(stack: ExitStack) -> Path:
    """Standard input copied to a file named "stdin": the import reads a file twice (to
    sniff the delimiter, then the rows)."""
    import shutil
    import sys
    import tempfile

    from ..errors import UsageError

    if sys.stdin is None or sys.stdin.closed:
        raise UsageError("customers import -: standard input is closed; pipe a file into it")
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="outreach-")))
    path = folder / "stdin"
    with path.open("wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out)
    return path


def _print_summary(result: ImportResult) -> None:
    from .output import console

    for line in result.warning_lines()[:SHOWN_ERRORS]:
        note(f"warning: {line}")
    if result.duplicates > SHOWN_ERRORS:
        note(f"… and {result.duplicates - SHOWN_ERRORS} more duplicate ids")
    lines = result.error_lines()
    for line in lines[:SHOWN_ERRORS]:
        note(line)
    if result.error_count > SHOWN_ERRORS:
        note(f"… and {result.error_count - SHOWN_ERRORS} more")
    verb = "Would import" if result.dry_run else "Imported"
    if result.rolled_back:
        verb = "Imported nothing, would have imported"
    duplicates = (
        f", {_n(result.duplicates, 'duplicate id')} (last row wins)" if result.duplicates else ""
    )
    console.print(
        f"{verb} {_n(result.imported, 'customer')} from {result.file} "
        f"({result.created} new, {result.updated} updated); "
        f"{_n(result.rejected, 'row')} rejected{duplicates}; "
        f"{_n(result.consents, 'consent')} recorded"
        + (f"; new columns: {', '.join(result.new_columns)}" if result.new_columns else "")
        + ("; nothing written (--dry-run)" if result.dry_run else "")
        + ".",
        markup=False,
    )


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@app.command("list", epilog="Example: outreach customers list --where \"plan = 'pro'\"")
def list_(
    ctx: typer.Context,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help="SQL condition over customer columns, e.g. \"plan = 'pro' and age > 30\" "
            "(read-only).",
        ),
    ] = None,
    limit: LimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """List customers (all columns and current consent with --json)."""
    from ..customers.lookup import list_customers
    from .output import print_table, stream_json_list

    rows = list_customers(workspace(ctx).store, where, limit=limit)
    if as_json:
        stream_json_list(rows)
        return
    shown = print_table(
        _table_rows(rows),
        [*LIST_COLUMNS, "opted_in"],
        headers=["id", "name", "email", "phone", "channel", "locale", "time zone", "opted in"],
        fold={"name", "opted_in"},
        optional=["timezone", "locale", "preferred_channel", "phone"],
    )
    note(f"{shown} customers")


def _table_rows(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        consent = row.get("consent", {})
        row["opted_in"] = ", ".join(c for c, s in consent.items() if s == "opted_in")
        yield row


@app.command("show", epilog="Example: outreach customers show c001")
def show(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    as_json: JsonOption = False,
) -> None:
    """Show one customer: every column, consent per channel, and the conversation."""
    from ..customers.lookup import show_customer
    from .output import console, local_time, print_consent, print_table

    ws = workspace(ctx)
    info = show_customer(ws.store, ws.config, customer)
    if as_json:
        print_json(info)
        return
    print_table(
        ({"column": k, "value": v} for k, v in info["customer"].items()),
        ["column", "value"],
        title=f"Customer {customer}",
        fold={"value"},
    )
    print_consent(info["consent"], "Consent", ws.config.timezone)
    conversation = info["conversation"]
    if conversation:
        attention = (
            f", needs attention ({conversation['attention_reason'] or 'reply'})"
            if conversation["needs_attention"]
            else ""
        )
        console.print(
            f"Conversation: {conversation['status']}, {conversation['messages']} messages, "
            f"last at {local_time(conversation['last_message_at'], ws.config.timezone) or '-'}"
            f"{attention}; "
            f"see outreach conversations show {customer}",
            markup=False,
        )
    else:
        console.print("Conversation: none yet", markup=False)
