"""outreach worker: a long-running sender for systemd, beside or instead of cron."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .options import JsonOption, workspace
from .output import console, note, print_json

if TYPE_CHECKING:
    from ..runner import RunReport

WORKER_EPILOG = """\b
Examples:
  outreach worker                   plan and send what is due, every 5 seconds
  outreach worker --poll 30 --json  every 30 seconds; a JSON summary when stopped
"""


def register(app: typer.Typer) -> None:
    app.command("worker", epilog=WORKER_EPILOG)(worker)


def worker(
    ctx: typer.Context,
    poll: Annotated[
        float,
        typer.Option(
            "--poll",
            min=0.1,
            metavar="SECONDS",
            help="Seconds to wait between passes over what is due.",
        ),
    ] = 5.0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only problems, not each pass.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Plan due occurrences and send what is due, pass after pass, until stopped.

    Each pass does what `outreach run --due` does. On PostgreSQL any number of workers
    and runs, on any hosts, share a workspace: each occurrence is planned by one of them
    and the others send beside it. On SQLite each pass takes the workspace lock, and
    waits for a run that holds it. SIGINT or SIGTERM: the sends in flight finish and are
    recorded, the rest stays queued, exit 0.
    """
    from .. import clock
    from ..worker import work

    ws = workspace(ctx)
    show = not (quiet or as_json)

    def on_pass(report: RunReport) -> None:
        for problem in report.problems + report.broken:
            note(f"problem: {problem}")
        if not show:
            return
        for line in report.campaigns:
            if line.sent or line.failed or not line.already_planned:
                what = "sent" if line.already_planned else f"planned {line.planned} · sent"
                console.print(
                    f"{clock.iso(clock.now())} {line.name} {line.occurrence}: {what} "
                    f"{line.sent} · failed {line.failed} · deferred {line.deferred}"
                )

    summary = work(
        ws,
        poll,
        on_pass=on_pass,
        on_stop=lambda: (
            note("stopping… (what is being sent is finished and recorded)") if not as_json else None
        ),
    )
    if as_json:
        print_json(summary.as_json())
    elif not quiet:
        console.print(
            f"stopped after {summary.passes} passes: planned {len(summary.planned)} "
            f"occurrences, sent {summary.sent}, failed {summary.failed}"
        )
