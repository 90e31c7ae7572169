"""The provider registry: an explicit map from provider name to its class, imported on use.

It is the one list of provider names: ``config`` checks ``provider = …`` against it and
``replies ingest --format`` offers its names. Adding a provider is one module and one line
here; nothing else changes.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    # types only: `outreach --help` imports the registry for its names, and the
    # configuration and provider base would add to every command's start-up
    from ..config import ChannelConfig
    from .base import AddressKind, Medium, Provider, ProviderContext

REGISTRY: dict[str, str] = {
    "outbox": "outreach.channels.outbox:OutboxProvider",
    "smtp": "outreach.channels.smtp:SmtpProvider",
    "twilio": "outreach.channels.twilio:TwilioProvider",
    "whatsapp-cloud": "outreach.channels.whatsapp_cloud:WhatsAppCloudProvider",
    "sunshine": "outreach.channels.sunshine:SunshineProvider",
    "webhook": "outreach.channels.webhook:WebhookProvider",
}
# the embedded provider: files in a folder, no account needed
LOCAL_PROVIDER = "outbox"


def provider_class(name: str) -> type[Provider]:
    """The provider class registered under ``name``."""
    try:
        module_name, class_name = REGISTRY[name].split(":")
    except KeyError:
        raise ConfigError(f'"{name}" is not a provider; use one of {", ".join(REGISTRY)}') from None
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


# the customer column that holds a channel's addresses, per address kind ("user" ids are kept
# in the addresses table instead)
ADDRESS_COLUMN = {"email": "email", "phone": "phone", "id": "id"}


def address_kind(channel: ChannelConfig) -> AddressKind:
    """Which customer field addresses people on this channel.

    ``address = "email" | "phone" | "user" | "id"`` in the channel's settings wins, else
    the provider decides (the outbox, which stands in for any provider, guesses from the
    channel's name).
    """
    explicit = channel.settings.get("address")
    if explicit in ("email", "phone", "user", "id"):
        return explicit  # type: ignore[no-any-return]
    return provider_class(channel.provider).channel_address_kind(channel)


def medium(channel: ChannelConfig) -> Medium:
    """``email``, ``whatsapp``, ``sms`` or ``other``: which length rules a channel's
    messages follow."""
    if channel.settings.get("whatsapp") is True:  # Twilio's WhatsApp sender, for one
        return "whatsapp"
    found = provider_class(channel.provider).medium(channel)
    if found is not None:
        return found
    kind = address_kind(channel)
    if kind == "email":
        return "email"
    return "sms" if kind == "phone" else "other"


def check_channel(channel: ChannelConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """Problems with a channel's settings: unknown or missing keys, unset secret variables."""
    from ..mail.settings import IMAP_SETTINGS, setting_problems  # here: as for from_header

    env = os.environ if env is None else env
    cls = provider_class(channel.provider)
    where = f"[channels.{channel.name}]"
    # an email channel may also read its replies from an IMAP mailbox (mail/settings.py)
    extra = {"address"} | (
        IMAP_SETTINGS if cls.address_kind == "email" or channel.provider == "outbox" else set()
    )
    problems = [
        f"{where}: unknown setting {key!r} for provider {channel.provider}; known: "
        + ", ".join(sorted(cls.settings | extra))
        for key in sorted(channel.settings)
        if key not in cls.settings and key not in extra
    ]
    problems += [
        f"{where}: {key} is required for provider {channel.provider}"
        for key in sorted(cls.required_settings)
        if key not in channel.settings
    ]
    problems += setting_problems(channel)
    for key, var in sorted(channel.settings.items()):
        # the mailbox's secrets are needed to read replies, not to send (channels check
        # and replies sync ask for them)
        if key.endswith("_env") and key not in IMAP_SETTINGS and not env.get(str(var)):
            problems.append(
                f"{where} {key}: environment variable {var} is not set (or empty); "
                f"export {var}=… before running"
            )
    return problems


def build_provider(channel: ChannelConfig, context: ProviderContext) -> Provider:
    """A ready provider for ``channel``; ConfigError when its settings are incomplete."""
    problems = check_channel(channel, context.env)
    if problems:
        raise ConfigError(problems[0])
    return provider_class(channel.provider)(channel, context)


def from_header(channel: ChannelConfig, sender_name: str) -> str | None:
    """The ``From`` header an email channel's messages carry (None for other channels), as
    its provider writes it; ConfigError when the ``from`` setting is not an address."""
    from .mime import sender_header  # here: the registry is imported by outreach --help

    if address_kind(channel) != "email":
        return None
    setting = channel.settings.get("from")
    return sender_header(str(setting) if setting else None, sender_name, "outbox@localhost")
