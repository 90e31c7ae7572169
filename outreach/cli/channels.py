"""outreach channels …: check channel settings, and send one real test message."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .options import JsonOption, workspace

# the commands of `outreach channels`: its help is in cli/__init__.py, where the root
# reads it without importing this module
app = typer.Typer()


@app.command(
    "check",
    epilog="Example: outreach channels check --channel sms --send-test +31612345678",
)
def check(
    ctx: typer.Context,
    send_test_to: Annotated[
        str | None,
        typer.Option(
            "--send-test",
            metavar="ADDRESS",
            help="Also send one real test message to ADDRESS (needs --channel).",
        ),
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", metavar="NAME", help="Check only this channel.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate every channel's settings and secret variables; exit 4 on any problem."""
    from ..channels.check import check_channels, send_test
    from ..errors import UsageError
    from .output import console, note, print_json

    if send_test_to is not None and channel is None:
        raise UsageError("--send-test needs --channel NAME: say which channel to test")
    config = workspace(ctx).config
    rows = check_channels(config, channel)
    failed = any(not row["ok"] for row in rows)
    result: dict[str, Any] | None = None
    if send_test_to is not None and channel is not None and not failed:
        sent = send_test(config, config.channel(channel), send_test_to)
        result = {"to": send_test_to, "provider_message_id": sent.provider_message_id}
    if as_json:
        print_json({"channels": rows, "ok": not failed, "send_test": result})
    else:
        if not rows:
            note("no channels configured in outreach.toml")
        for row in rows:
            status = "ok" if row["ok"] else "problems"
            console.print(f"{row['channel']} ({row['provider']}): {status}", markup=False)
            if "from" in row:
                console.print(f"  From: {row['from']}", markup=False)
            for problem in row["problems"]:
                console.print(f"  - {problem}", markup=False)
        if result is not None:
            console.print(
                f"test message sent to {send_test_to}: {result['provider_message_id']}",
                markup=False,
            )
        elif send_test_to is not None:
            note("test message not sent: fix the problems above first")
    if failed:
        raise typer.Exit(4)
