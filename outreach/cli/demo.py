"""outreach demo: the whole idea, end to end, in one command and one folder.

The demo is a scripted tour of the real commands (run in this process, with their real
output), on a fixed clock so that every run shows the same story: a survey goes out on
each customer's own channel in their own time zone, answers come back on other channels,
a STOP is honoured, a question arrives after hours, and the report sums it up.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from .output import console

DEMO_MARKER = ".outreach-demo"
SEND_AT = "2026-12-01T09:30:00Z"  # Tuesday 10:30 in Amsterdam, 04:30 in New York
DAY_REPLIES_AT = "2026-12-01T15:00:00Z"  # answers during the afternoon
MORNING_US = "2026-12-01T17:05:00Z"  # 09:05 in Los Angeles: the deferred ones go out
EVENING_AT = "2026-12-01T19:00:00Z"  # 20:00 in Amsterdam, after business hours
TRY_AT = "2026-12-01T19:30:00Z"  # after the evening: what the "Try next" lines use
SHOWN_CUSTOMER = "c007"  # surveyed by SMS, answered on WhatsApp


def demo(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="Folder for the demo workspace (re-running starts it afresh).")
    ] = Path("outreach-demo"),
) -> None:
    """Run the whole tour: customers, a survey, replies on other channels, the report."""
    from ..errors import UsageError
    from ..workspace import examples_dir, init_workspace

    if folder.exists() and any(folder.iterdir()) and not (folder / DEMO_MARKER).exists():
        raise UsageError(
            f"{folder} exists and is not an outreach demo; choose another folder: outreach demo DIR"
        )
    if folder.exists():
        shutil.rmtree(folder)
    init_workspace(folder)
    (folder / DEMO_MARKER).write_text("made by outreach demo; safe to delete\n", encoding="utf-8")
    config = (folder / "outreach.toml").read_text(encoding="utf-8")
    # unsubscribe links point at `outreach serve` on this machine
    config = config.replace(
        '# public_url = "https://hooks.example.com"', 'public_url = "http://127.0.0.1:8787"'
    )
    (folder / "outreach.toml").write_text(config, encoding="utf-8")
    source = examples_dir() / "demo"
    for name in ("customers.csv", "replies-day.jsonl", "replies-evening.jsonl"):
        shutil.copyfile(source / name, folder / name)
    ws = str(folder)

    step("1. Import 40 customers in 7 countries (consent from the file's opted_in column)")
    call(["-w", ws, "customers", "import", str(folder / "customers.csv")])
    step("2. Check the templates (SMS encoding and segments per message)")
    call(["-w", ws, "templates", "check", "nps"])
    step(f"3. Send the NPS survey at {SEND_AT} (10:30 in Amsterdam)")
    console.print(
        "   Each customer gets it on their own channel, if they opted in there; people for whom "
        "it is night wait for their morning."
    )
    call(["-w", ws, "--now", SEND_AT, "run", "nps"])
    step(
        "4. Replies come in during the day: scores, an answer on another channel than the "
        "survey went out on, a STOP, an unclear answer, and one duplicate"
    )
    call(
        ["-w", ws, "--now", DAY_REPLIES_AT, "replies", "ingest", str(folder / "replies-day.jsonl")]
    )
    step(f"5. Cron sends the deferred ones once their window opens ({MORNING_US})")
    call(["-w", ws, "--now", MORNING_US, "run", "--due"])
    step("6. In the evening: a question after business hours, and an unknown sender")
    call(
        ["-w", ws, "--now", EVENING_AT, "replies", "ingest", str(folder / "replies-evening.jsonl")]
    )
    step("7. Who needs a person?")
    call(["-w", ws, "--now", EVENING_AT, "conversations", "list", "--needs-attention"])
    step("8. The campaign report")
    call(["-w", ws, "--now", EVENING_AT, "report", "nps"])
    step(
        f"9. One conversation across channels ({SHOWN_CUSTOMER}: survey by SMS, answer on WhatsApp)"
    )
    call(["-w", ws, "--now", EVENING_AT, "conversations", "show", SHOWN_CUSTOMER])
    console.print()
    console.print(
        f"[bold]The demo workspace is {folder}.[/bold] Messages sent are files in "
        f"{folder}/outbox/. Try next:"
    )
    # the demo's story happened on its own clock: a reply typed now on the real clock
    # would land before the customer's message in the transcript
    console.print(f"  outreach -w {ws} --now {TRY_AT} conversations show c006")
    console.print(f"  outreach -w {ws} export replies --format csv")
    console.print(
        f'  outreach -w {ws} --now {TRY_AT} reply c037 "Thanks! Take your time." --channel sms'
    )


def step(title: str) -> None:
    """A heading: the whole title (never cut), then a rule to a readable width."""
    from rich.text import Text

    width = min(console.width, 90)
    rule = "─" * max(3, width - len(title) - 1)
    console.print()
    console.print(Text(title, style="bold") + Text(f" {rule}", style="rule.line"))


def call(args: list[str]) -> None:
    """Run one outreach command in this process, as a user would type it."""
    import typer.main

    from . import app

    console.print(f"[dim]$ outreach {' '.join(args[2:])}[/dim]")
    command = typer.main.get_command(app)
    try:
        command.main(args, standalone_mode=False, prog_name="outreach")
    except typer.Exit as exc:
        if exc.exit_code not in (0, 3):
            raise
