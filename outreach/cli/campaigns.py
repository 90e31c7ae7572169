"""outreach run and outreach queue: the main job, for marketers and for cron."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

from .options import JsonOption, LimitOption, workspace
from .output import (
    console,
    local_time,
    note,
    print_json,
    print_table,
    progress,
    stream_json_list,
)

if TYPE_CHECKING:
    from ..runner import RunReport

RUN_EPILOG = """\b
Examples:
  outreach run nps                  the nps campaign's latest occurrence
  outreach run --due                cron: every occurrence due now
  outreach run shipped --customers shipped.csv  a triggered notification
  outreach run nps --dry-run --now 2026-12-01T10:00   what would happen then
"""


def register(app: typer.Typer) -> None:
    """Add run and queue to the root app."""
    app.command("run", epilog=RUN_EPILOG)(run)
    app.command("queue", epilog="Example: outreach queue --limit 20")(queue)


def run(
    ctx: typer.Context,
    campaigns: Annotated[
        list[str] | None, typer.Argument(help="Campaigns to run (files campaigns/NAME.toml).")
    ] = None,
    due: Annotated[
        bool, typer.Option("--due", help="Plan every campaign occurrence due now (cron mode).")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Plan and show what would happen; write and send nothing."),
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Send at most N messages in this run.")
    ] = None,
    customers: Annotated[
        Path | None,
        typer.Option(
            "--customers",
            help="Triggered send: a CSV (id column) or JSONL file of customers to notify; "
            "other columns become event.COLUMN in the template.",
            dir_okay=False,
        ),
    ] = None,
    retry_unknown: Annotated[
        bool,
        typer.Option(
            "--retry-unknown",
            help="Send again the deliveries whose fate is unknown after a crash.",
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, help="If another run holds the workspace, wait up to SECONDS."
        ),
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only problems (for cron mail).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Plan campaign occurrences and send every due message.

    With no CAMPAIGN and no --due, sends what is already queued and whose window is open.
    """
    import sqlite3

    from ..errors import ConfigError, DiskFullError, PartialFailure
    from ..runner import RunOptions
    from ..runner import run as run_campaigns
    from ..store.sqlite import database_error, store_path

    ws = workspace(ctx)
    options = RunOptions(
        campaigns=list(campaigns or []),
        due=due,
        dry_run=dry_run,
        limit=limit,
        retry_unknown=retry_unknown,
        customers_file=customers,
        wait=wait,
    )
    show = not (quiet or as_json)
    recorded = 0

    def advance(n: int) -> None:
        nonlocal recorded
        recorded += n
        bar.advance(n)

    with progress("Sending", None, enabled=show) as bar:
        try:
            report = run_campaigns(
                ws,
                options,
                on_progress=advance,
                on_send_start=bar.set_total,
                on_stop=lambda: _stopping(bar),
            )
        except (DiskFullError, sqlite3.Error) as exc:
            fault = (
                exc if isinstance(exc, DiskFullError) else database_error(exc, store_path(ws.store))
            )
            if not isinstance(fault, DiskFullError):
                raise
            # sends recorded before the disk filled are done: exit 3, not 4
            done = f"{recorded:,} deliveries were sent and recorded" if recorded else None
            raise DiskFullError(fault.where, done=done) from None
    if as_json:
        print_json(report.as_json())
    elif not quiet:
        for line in report.notes:
            note(line)
        _print_summary(report, ws.config.timezone)
    for problem in report.problems:
        note(f"problem: {problem}")
    for name, occurrence in report.missed:
        note(f"missed: {name} {occurrence} (too late or superseded by a newer occurrence)")
    if report.interrupted:
        note("interrupted: deliveries not yet sent stay queued for the next run")
        raise typer.Exit(128 + report.interrupted)
    if report.broken:
        # every broken file, one line each; the valid campaigns were run all the same
        *others, last = report.broken
        for line in others:
            note(f"error: {line}")
        raise ConfigError(last)
    if report.failed or report.unknown or report.template_errors:
        raise PartialFailure(
            f"{report.failed} failed, {report.template_errors} template errors, "
            f"{report.unknown} unknown; see outreach queue and outreach report CAMPAIGN"
        )


def _stopping(bar: Any) -> None:
    """A signal asked the run to stop: say so at once, and stop the bar moving."""
    bar.stop()
    note("stopping… (what is being sent is finished and recorded; the rest stays queued)")


def _print_summary(report: RunReport, timezone: ZoneInfo) -> None:
    """One short block per occurrence: readable at any terminal width, and in cron mail."""
    if report.dry_run:
        console.print("Dry run: nothing was written or sent.")
    if not report.campaigns:
        console.print("Nothing to plan or send.")
    for line in report.campaigns:
        when = line.occurrence
        if when[:1].isdigit():
            when = local_time(when, timezone)
        console.print(f"[bold]{line.name}[/bold] {when}")
        if line.already_planned and report.dry_run:
            console.print("  already planned by an earlier run: nothing new to plan")
        elif report.dry_run:
            console.print(
                f"  audience {line.audience} · would plan {line.planned} · would send "
                f"{line.planned - line.deferred} · would defer {line.deferred}"
            )
        elif line.already_planned:
            console.print(
                f"  already planned by an earlier run · sent {line.sent} · deferred "
                f"{line.deferred} · failed {line.failed} · unknown {line.unknown}"
            )
        else:
            console.print(
                f"  audience {line.audience} · planned {line.planned} · sent {line.sent} · "
                f"deferred {line.deferred} · failed {line.failed} · unknown {line.unknown}"
            )
        if line.skipped:
            skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(line.skipped.items()))
            console.print(f"  skipped: {skipped}")


def queue(
    ctx: typer.Context,
    limit: LimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """List deliveries waiting to be sent (queued, deferred) and those whose fate is unknown."""
    ws = workspace(ctx)
    rows = ws.store.deliveries.queue_rows(limit)
    if as_json:
        stream_json_list(rows)
        return
    shown = print_table(
        rows,
        ["id", "campaign", "customer_id", "channel", "purpose", "status", "reason", "not_before"],
        headers=[
            "id",
            "campaign",
            "customer",
            "channel",
            "purpose",
            "status",
            "reason",
            "not before",
        ],
        title="Queue",
        times={"not_before"},
        tz=ws.config.timezone,
        optional=["purpose", "channel", "campaign", "customer_id"],
    )
    if not shown:
        console.print("The queue is empty.")
