"""outreach init, status and demo: creating and looking at a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .options import JsonOption, workspace
from .output import note, print_json


def register(app: typer.Typer) -> None:
    """Add init, status and demo to the root app."""
    app.command("init", epilog="Example: outreach init acme && cd acme && outreach status")(init)
    app.command("status", epilog="Example: outreach status --json")(status)
    from .demo import demo

    app.command("demo", epilog="Example: outreach demo && cd outreach-demo && outreach status")(
        demo
    )


def init(
    ctx: typer.Context,
    folder: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            help="Folder for the new workspace, created if missing (default: --workspace, "
            "else the current folder).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Add missing example files to an existing workspace.")
    ] = False,
) -> None:
    """Create a workspace: a commented outreach.toml, example templates and campaigns, and
    sample customers.csv and replies.jsonl to try them on."""
    from ..workspace import init_workspace
    from .options import state

    target = folder or state(ctx).workspace_path or Path(".")
    written = init_workspace(target, force=force)
    note(f"Created workspace {target} ({len(written)} files).")
    note("Every channel uses the outbox provider: messages are written to outbox/CHANNEL/.")
    note(
        "Next: outreach customers import customers.csv (a sample of 40), then outreach "
        "templates check."
    )


def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Customers, consent per channel, channels, due campaigns, queue, attention needed."""
    from ..reports.status import workspace_status

    ws = workspace(ctx)
    info = workspace_status(ws)
    if as_json:
        print_json(info)
        return
    render_status(info, ws.config.timezone)


def render_status(info: dict[str, Any], tz: Any) -> None:
    """The status for people: a few small rich tables, times in the workspace zone."""
    from rich.table import Table
    from rich.text import Text

    from .output import console, local_time, print_table

    def table(title: str, *columns: str, numbers: int = 0) -> Table:
        """A table whose last ``numbers`` columns are right-aligned counts."""
        t = Table(title=title, title_justify="left", header_style="bold")
        for i, column in enumerate(columns):
            right = i >= len(columns) - numbers
            t.add_column(column, justify="right" if right else "left", no_wrap=True)
        return t

    console.print(Text(f"Workspace {info['workspace']} at {local_time(info['now'], tz)}"))
    people = table("Customers", "", "count", numbers=1)
    people.add_row("customers", f"{info['customers']:,}")
    people.add_row("unverified contacts", f"{info['unverified_contacts']:,}")
    console.print(people)

    consent = table("Consent (current)", "channel", "opted in", "opted out", numbers=2)
    for channel, counts in info["consent"].items():
        consent.add_row(
            Text(channel), f"{counts.get('opted_in', 0):,}", f"{counts.get('opted_out', 0):,}"
        )
    if not info["consent"]:
        consent.add_row("(none recorded)", "", "")
    console.print(consent)

    channels = table("Channels", "channel", "provider")
    for channel in info["channels"]:
        channels.add_row(Text(channel["name"]), Text(channel["provider"]))
    console.print(channels)

    due = info["due"]
    campaigns = table(
        "Campaigns", "campaign", "file", "last occurrence", "planned", "missed", numbers=2
    )
    for c in info["campaigns"]:
        campaigns.add_row(
            Text(c["name"]),
            "yes" if c["file"] else "no",
            local_time(c["last_occurrence"], tz),
            str(c["occurrences_planned"]),
            str(c["occurrences_missed"]),
        )
    console.print(campaigns)
    if not due["available"]:
        console.print("Due now: unknown (this build has no campaign planner).")
    elif due["error"]:
        console.print(Text(f"Due now: cannot tell: {due['error']}"))
    elif not due["occurrences"]:
        console.print("Due now: nothing.")
    else:
        listed = ", ".join(
            f"{d['campaign']} {local_time(d['occurrence'], tz)}"
            + (" (missed)" if d["missed"] else "")
            for d in due["occurrences"]
        )
        console.print(Text(f"Due now: {listed}"))

    queue = info["queue"]
    q = table("Queue", "status", "deliveries", numbers=1)
    for status in ("queued", "deferred", "sending", "unknown"):
        q.add_row(status, f"{queue[status]:,}")
    q.add_row("next not before", local_time(queue["next_not_before"], tz) or "-")
    console.print(q)

    attention = info["attention"]
    title = f"Conversations needing attention: {attention['total']:,}"
    if attention["oldest"]:
        print_table(
            attention["oldest"],
            ["customer_id", "customer_name", "reason", "channel", "last_inbound_at"],
            headers=["customer", "name", "reason", "channel", "customer wrote"],
            title=title,
            fold={"customer_name"},
            times={"last_inbound_at"},
            tz=tz,
            optional=["channel"],
        )
    else:
        console.print(title)
