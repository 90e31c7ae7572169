"""The one small interface every channel provider implements.

A provider turns a rendered ``OutboundMessage`` into a request to its service and, for
webhooks it receives, verifies authenticity and parses the body into ``InboundMessage`` and
``StatusEvent`` values. Providers never touch the store; ``sending`` and ``inbound`` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol

from ..config import ChannelConfig, Config

# How a provider addresses a customer: which customer field holds the address.
AddressKind = Literal["email", "phone", "user", "id"]


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message, ready for a provider."""

    delivery_id: str
    channel: str
    customer_id: str
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    preheader: str | None = None
    campaign: str | None = None
    customer_name: str | None = None
    unsubscribe_url: str | None = None
    # a token that identifies the conversation, for a Reply-To plus-address
    reply_token: str | None = None
    # WhatsApp Cloud: the approved template to use outside the 24-hour window
    # {"name": ..., "language": ..., "parameters": [...]}
    whatsapp_template: Mapping[str, Any] | None = None
    # WhatsApp Cloud: the customer wrote on this channel within the last 24 hours
    in_service_window: bool = False
    # the provider's status callback URL, when [server] public_url is set
    status_callback: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # email replies: the Message-ID (bare) of the customer's email this answers, and the
    # delivery whose email the customer answered; they become In-Reply-To and References
    in_reply_to: str | None = None
    answers_delivery: str | None = None
    # the customer's stored fields, for a provider that hands the receiver who it is for
    # (the webhook provider passes RECIPIENT_FIELDS on)
    customer: Mapping[str, Any] = field(default_factory=dict)


# what a receiver needs to reach the customer itself: every field a channel may address by
RECIPIENT_FIELDS = ("id", "name", "email", "phone", "locale", "timezone")


# how long after a customer's last message a reply may go without consent, and WhatsApp
# takes free text (its customer service window)
SERVICE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class SendResult:
    """What a provider answered to an accepted send."""

    provider_message_id: str | None
    status: str = "sent"


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request as a provider made it, independent of the web framework.

    ``url`` is the address as the provider called it (built from ``[server] public_url``
    behind a proxy); header names are lower case.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class InboundMessage:
    """A message a customer sent us."""

    channel: str
    address: str
    text: str
    external_id: str | None
    received_at: datetime
    profile_name: str | None = None
    # for email: the Message-ID this one answers, and the plus-address token it was sent to
    in_reply_to: str | None = None
    reply_token: str | None = None
    # for email: every Message-ID it refers to (References, oldest first) and its subject
    references: tuple[str, ...] = ()
    subject: str | None = None
    # an out-of-office or other automatic reply: stored, never a keyword, answer or reason
    # to answer
    automatic: bool = False
    # why a person must look at it whatever it says (an email that could not be read)
    attention: str | None = None
    # what a provider keeps beside the text (email: full body, raw bytes, attachments)
    extra: Mapping[str, Any] = field(default_factory=dict)
    # what arrived (see the kinds below) and what it carries besides text: media (type, url,
    # content_type, id, filename), a location, contacts, the message an event refers to
    kind: str = "text"
    details: Mapping[str, Any] | None = None


# Only what a customer wrote is text. TEXT_KINDS are read for keywords and survey answers
# (a tapped button or list choice is the customer's answer); a media caption is read for
# keywords only (an image is no score); EVENT_KINDS are kept in the conversation and have
# no effect at all: a deletion, a reaction, an edit or a system notice is no instruction.
TEXT_KINDS = frozenset({"text", "button", "interactive"})
MEDIA_KINDS = frozenset({"image", "audio", "video", "document", "sticker"})
CONTENT_KINDS = MEDIA_KINDS | {"location", "contacts"}
EVENT_KINDS = frozenset({"reaction", "revoke", "edit", "system", "unsupported", "number_change"})


def media_kind(content_type: str | None) -> str:
    """The media kind of a MIME type (``image/jpeg`` → ``image``; else ``document``)."""
    major = (content_type or "").split("/", 1)[0].lower()
    return major if major in ("image", "audio", "video") else "document"


@dataclass(frozen=True)
class StatusEvent:
    """A delivery-status callback: queued, sent, delivered, read or failed."""

    channel: str
    provider_message_id: str
    status: str
    at: datetime
    error_code: str | None = None
    error_message: str | None = None
    # a bounce ("bounced"): the address that failed, and whether it failed for good
    recipient: str | None = None
    permanent: bool = False


InboundEvent = InboundMessage | StatusEvent


class Provider(Protocol):
    """A channel provider. Implementations declare their limits as class attributes."""

    name: ClassVar[str]
    address_kind: ClassVar[AddressKind]
    # True when resending the same delivery id cannot produce a second message
    # (an idempotency key, or a file named by delivery id)
    idempotent: ClassVar[bool]
    # True when free text may only go to a customer who wrote within the last 24 hours
    # (WhatsApp's customer service window): the engine sets ``in_service_window`` for it
    service_window: ClassVar[bool]
    # True when a send is local work (writing a file), not a wait on a network: such
    # channels are worth sending from more than one process (``[sending] processes``)
    local: ClassVar[bool]
    # settings keys this provider accepts (besides provider, rate, concurrency, timeout)
    settings: ClassVar[frozenset[str]]
    required_settings: ClassVar[frozenset[str]]

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None: ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; raise ``ProviderError(retryable=...)`` on failure."""
        ...

    def verify(self, request: WebhookRequest) -> None:
        """Raise ``SignatureError`` unless the request is authentic."""
        ...

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        """Inbound messages and status events in a verified webhook request."""
        ...

    async def aclose(self) -> None:
        """Close connections (HTTP clients, SMTP sessions)."""
        ...


@dataclass(frozen=True)
class ProviderContext:
    """What a provider may know of its surroundings, besides its own settings."""

    workspace_root: str
    env: Mapping[str, str]
    public_url: str | None = None
    sender_name: str = "outreach"

    @classmethod
    def of(cls, config: Config, env: Mapping[str, str]) -> ProviderContext:
        """The context of a workspace's providers, with secrets read from ``env``."""
        return cls(
            workspace_root=str(config.root),
            env=env,
            public_url=config.server.public_url,
            sender_name=config.sender_name,
        )
