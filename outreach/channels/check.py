"""``channels check``: each channel's settings problems, and one real test message.

Kept apart from the registry because it is the only place that builds a provider outside a
send run or the server, and the only one that invents a message.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from ..config import ChannelConfig, Config
from ..errors import ConfigError
from ..mail.settings import secret_problems
from . import address_kind, build_provider, check_channel, from_header
from .base import OutboundMessage, ProviderContext, SendResult


def check_channels(config: Config, only: str | None = None) -> list[dict[str, Any]]:
    """One row per channel: its provider and the problems with its settings."""
    channels = [config.channel(only)] if only else list(config.channels.values())
    rows = []
    for channel in channels:
        problems = check_channel(channel, os.environ) + secret_problems(channel, os.environ)
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
        # a test is free text: a provider with a service window will refuse it (WhatsApp's
        # 131047) if the window is closed
        in_service_window=True,
    )

    async def run() -> SendResult:
        provider = build_provider(channel, context)
        try:
            return await provider.send(message)
        finally:
            await provider.aclose()

    return asyncio.run(run())
