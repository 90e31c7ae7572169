"""The provider base class and the message types that cross it.

A provider turns a rendered ``OutboundMessage`` into a request to its service and, for
webhooks it receives, verifies authenticity, parses the body into ``InboundMessage`` and
``StatusEvent`` values and says what to answer (``WebhookResponse``). The web server and
``replies ingest`` only call this interface; none of them asks for a provider by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NamedTuple, Self

from ..config import ChannelConfig, Config
from ..errors import SignatureError

# How a provider addresses a customer: which customer field holds the address.
AddressKind = Literal["email", "phone", "user", "id"]
# Which length rules a channel's messages follow.
Medium = Literal["email", "whatsapp", "sms", "other"]


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
    # the customer wrote on this channel within SERVICE_WINDOW (set for providers with a
    # ``service_window``, which may send free text only then)
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
    # provider-only fields, by the names the providers read (e.g. ``whatsapp_template``,
    # the campaign's approved template for outside the service window)
    extra: Mapping[str, Any] = field(default_factory=dict)


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


class InboundMessage(NamedTuple):
    """A message a customer sent us.

    A NamedTuple, as immutable as a frozen dataclass: one is built for every message
    ingested or received, and a frozen dataclass's ``__init__`` costs three times as much.
    """

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
    extra: Mapping[str, Any] = MappingProxyType({})
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


class StatusEvent(NamedTuple):
    """A delivery-status callback: queued, sent, delivered, read or failed (a NamedTuple,
    like ``InboundMessage``)."""

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


@dataclass(frozen=True)
class WebhookResponse:
    """What the server answers a provider's webhook or handshake, framework-independent."""

    body: str
    status: int = 200
    media_type: str = "text/plain"


class Provider:
    """A channel provider: the base every provider module subclasses.

    A provider declares its name and settings and implements ``send``; everything else has
    a default here that fits a provider without inbound webhooks, so a provider overrides
    only what differs. Providers never touch the store; ``sending`` and
    ``conversations`` do.
    """

    name: ClassVar[str]
    address_kind: ClassVar[AddressKind] = "phone"
    # True when resending the same delivery id cannot produce a second message
    # (an idempotency key, or a file named by delivery id)
    idempotent: ClassVar[bool] = False
    # True when free text may only go to a customer who wrote within SERVICE_WINDOW
    # (WhatsApp's customer service window): the engine sets ``in_service_window`` for it
    service_window: ClassVar[bool] = False
    # True when a send is local work (writing a file), not a wait on a network: such
    # channels are worth sending from more than one process (``[sending] processes``)
    local: ClassVar[bool] = False
    # True when the provider calls webhooks that ``parse`` reads (and ``replies ingest
    # --format NAME`` can read a file of)
    receives_webhooks: ClassVar[bool] = False
    # True when those webhooks are HTML form posts, not JSON: a JSON object in an ingest
    # file then stands for the form's fields
    form_webhooks: ClassVar[bool] = False
    # settings keys this provider accepts (besides provider, rate, concurrency, timeout)
    settings: ClassVar[frozenset[str]] = frozenset()
    required_settings: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        self.channel = channel

    @classmethod
    def for_parsing(cls, channel: ChannelConfig) -> Self:
        """An instance that can only ``parse`` (for ``replies ingest``): no secrets, no
        clients, no settings checks, since an ingested file is trusted input whose
        signatures are not checked. ``parse`` must therefore need nothing but
        ``self.channel``."""
        provider = cls.__new__(cls)
        Provider.__init__(provider, channel, _PARSING)
        return provider

    @classmethod
    def channel_address_kind(cls, channel: ChannelConfig) -> AddressKind:
        """Which customer field addresses people on ``channel`` (unless its settings say)."""
        return cls.address_kind

    @classmethod
    def medium(cls, channel: ChannelConfig) -> Medium | None:
        """Which length rules ``channel``'s messages follow, when the provider knows better
        than the channel's address kind (email → email, phone → sms, else other)."""
        return None

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; raise ``ProviderError(retryable=...)`` on failure."""
        raise NotImplementedError

    def verify(self, request: WebhookRequest) -> None:
        """Raise ``SignatureError`` unless the request is authentic."""
        raise SignatureError(
            f"the {self.name} provider receives no webhooks; use replies ingest", 404
        )

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        """Inbound messages and status events in a verified webhook request."""
        return []

    def handshake(self, request: WebhookRequest) -> WebhookResponse | None:
        """The answer to a GET on the channel's webhook URL (a subscription check), or
        None when the provider has none; raise ``SignatureError`` to refuse it."""
        return None

    def webhook_response(self, stored: Mapping[str, int]) -> WebhookResponse:
        """The answer to a webhook whose events were stored; ``stored`` counts what they
        did (messages, stored, duplicates, status_updates, rejected)."""
        return WebhookResponse(
            json.dumps(dict(stored), separators=(",", ":")), media_type="application/json"
        )

    async def aclose(self) -> None:
        """Close connections (HTTP clients, SMTP sessions)."""
        return None


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


# the context of a provider built only to parse (Provider.for_parsing)
_PARSING = ProviderContext(workspace_root="", env={})
