"""outreach replies sync: read new email replies from each channel's IMAP mailbox."""

from __future__ import annotations

from typing import Annotated

import typer

from .conversations import replies_app
from .options import JsonOption, workspace


@replies_app.command(
    "sync",
    epilog="Example (cron, every minute): * * * * * outreach -w /srv/acme replies sync",
)
def sync(
    ctx: typer.Context,
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel", help="Only this email channel (default: every channel with an imap_host)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Only mail that arrived on or after DATE "
            "(2026-11-01), e.g. to start a large mailbox's first sync later.",
        ),
    ] = None,
    move_to: Annotated[
        str | None,
        typer.Option(
            "--move-to",
            metavar="FOLDER",
            help="Move each stored message to FOLDER "
            "(default: leave the mailbox exactly as it is).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Store new replies from the mailbox (each once: it remembers UIDVALIDITY and the last
    UID), apply keywords and survey answers, send confirmations. Exit 3 when the connection
    was lost part-way (run it again to resume), 4 on wrong settings or credentials."""
    from ..mail.imap import parse_since
    from ..mail.imap import sync as run_sync
    from .output import console, print_json, progress

    ws = workspace(ctx)
    day = parse_since(since) if since is not None else None
    with progress("Reading mail", None, enabled=not as_json) as bar:
        seen = [0]

        def report(done: int, total: int) -> None:
            if done == 0:
                seen[0] = 0
                bar.set_total(total)
            bar.advance(done - seen[0])
            seen[0] = done

        results = run_sync(ws, channel, since=day, move_to=move_to, progress=report)
    if as_json:
        print_json({"channels": [r.as_dict() for r in results]})
        return
    for r in results:
        s = r.summary
        if s is None:
            console.print(f"{r.channel} {r.folder}: nothing new", markup=False)
            continue
        changed = " (UIDVALIDITY changed: folder read again)" if r.uidvalidity_changed else ""
        console.print(
            f"{r.channel} {r.folder}: {r.fetched:,} new messages{changed}; {s.stored:,} stored, "
            f"{s.duplicates:,} duplicates, {s.automatic:,} automatic replies, {s.bounces:,} "
            f"bounces; {s.survey_answers:,} survey answers, {s.needs_attention:,} need "
            f"attention" + (f"; {r.moved:,} moved to {move_to}" if move_to else ""),
            markup=False,
        )
