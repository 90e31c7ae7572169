"""outreach channels …: check channel settings, and send one real test message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .options import JsonOption, workspace

if TYPE_CHECKING:
    from ..channels.base import SendResult
    from ..config import ChannelConfig, Config

app = typer.Typer(help="Check the configured channels and their providers.", no_args_is_help=True)


def check_channels(config: Config, only: str | None = None) -> list[dict[str, Any]]:
    """One row per channel: its provider and the problems with its settings."""
    import os

    from ..channels import check_channel, from_header
    from ..errors import ConfigError

    channels = [config.channel(only)] if only else list(config.channels.values())
    rows = []
    for channel in channels:
        problems = check_channel(channel, os.environ)
        row: dict[str, Any] = {"channel": channel.name, "provider": channel.provider}
        try:
            sender = from_header(channel, config.sender_name)
        except ConfigError as exc:
            problems.append(f"[channels.{channel.name}] {exc}")
        else:
            if sender is not None:
                row["from"] = sender
        rows.append({**row, "ok": not problems, "problems": problems})
    return rows


def send_test(config: Config, channel: ChannelConfig, address: str) -> SendResult:
    """Build the channel's provider and send it one short test message to ``address``."""
    import asyncio
    import os
    import uuid

    from ..channels import address_kind, build_provider
    from ..channels.base import OutboundMessage, ProviderContext

    context = ProviderContext.of(config, dict(os.environ))
    is_email = address_kind(channel) == "email"
    text = f"Test message from {config.sender_name} via outreach (channel {channel.name})."
    message = OutboundMessage(
        delivery_id=f"test-{uuid.uuid4().hex}",
        channel=channel.name,
        customer_id="test",
        to=address,
        body=text,
        subject=f"{config.sender_name}: outreach test" if is_email else None,
        # a test is free text: WhatsApp Cloud will refuse it (131047) if the window is closed
        in_service_window=True,
    )

    async def run() -> SendResult:
        provider = build_provider(channel, context)
        try:
            return await provider.send(message)
        finally:
            await provider.aclose()

    return asyncio.run(run())


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
