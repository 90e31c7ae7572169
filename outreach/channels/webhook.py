"""A JSON POST to any URL, signed per the Standard Webhooks convention.

Each message is ``POST url`` with a JSON body ``{"type": "message.created", "timestamp",
"data": {...}}`` (``data.customer`` holds the recipient's id, name, email, phone, locale
and time zone, so the receiver can reach them itself) and three headers: ``webhook-id``
(the delivery id, reused on every retry so the receiver can deduplicate: that is what
makes this provider idempotent), ``webhook-timestamp`` (Unix seconds from
``clock.now()``) and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 over
``{id}.{timestamp}.{body}``, keyed with the base64-decoded ``whsec_…`` secret). Any 2xx
is success; its body is not read.

Inbound webhooks are verified with the same scheme: a missing header answers 401; a wrong
signature or a timestamp more than five minutes from ``clock.now()`` (a replay) answers
403. ``parse`` reads ``{"from", "text", "id", "received_at"}`` or a list of them, where
``from`` is the customer id (``address_kind = "id"``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import ClassVar
from urllib.parse import urlsplit

from .. import clock
from ..config import ChannelConfig
from ..errors import ConfigError, PayloadError, SignatureError
from .base import (
    RECIPIENT_FIELDS,
    AddressKind,
    InboundEvent,
    InboundMessage,
    OutboundMessage,
    Provider,
    ProviderContext,
    SendResult,
    WebhookRequest,
)
from .http import HttpChannel, event_time, json_payload, require_env, setting

TOLERANCE_SECONDS = 5 * 60
# one encoder for every body: json.dumps with options builds a new one per call
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def decode_secret(secret: str, *, where: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64)."""
    text = secret.removeprefix("whsec_")
    try:
        # secrets are often written without their base64 padding
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{where}: the secret is not a Standard Webhooks secret (whsec_ + base64)"
        ) from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    # hmac.digest: one call into OpenSSL, without an HMAC object per message
    return "v1," + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()


class WebhookProvider(Provider):
    name: ClassVar[str] = "webhook"
    address_kind: ClassVar[AddressKind] = "id"
    idempotent: ClassVar[bool] = True
    receives_webhooks: ClassVar[bool] = True
    settings: ClassVar[frozenset[str]] = frozenset({"url", "secret_env"})
    required_settings: ClassVar[frozenset[str]] = frozenset({"url", "secret_env"})

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        super().__init__(channel, context)
        self.url = setting(channel, "url")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"[channels.{channel.name}] url: expected an http(s):// URL")
        secret = require_env(channel, context.env, "secret_env")
        self.key = decode_secret(secret, where=f"[channels.{channel.name}] secret_env")
        self.http = HttpChannel(
            "webhook",
            channel,
            base_url="",
            headers={"Content-Type": "application/json"},
            # a password in the URL (https://user:pass@host) is a secret too
            secrets=(secret, secret.removeprefix("whsec_"), urlsplit(self.url).password or ""),
        )

    def signed_request(self, message: OutboundMessage) -> tuple[bytes, dict[str, str]]:
        """The body and headers of ``message``'s POST."""
        now = clock.now()
        data = {
            "delivery_id": message.delivery_id,
            "channel": message.channel,
            "customer_id": message.customer_id,
            "to": message.to,
            "customer": {key: message.customer.get(key) for key in RECIPIENT_FIELDS},
            "customer_name": message.customer_name,
            "campaign": message.campaign,
            "subject": message.subject,
            "body": message.body,
            "html": message.html,
            "unsubscribe_url": message.unsubscribe_url,
            "reply_token": message.reply_token,
            "metadata": dict(message.metadata),
        }
        body = _JSON.encode(
            {"type": "message.created", "timestamp": clock.iso(now), "data": data}
        ).encode("utf-8")
        # The receiver checks this against its own clock to refuse replays, so it is the
        # real time even when --now moves outreach's clock for a what-if run.
        timestamp = int(time.time())
        headers = {
            "webhook-id": message.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.key, message.delivery_id, timestamp, body),
        }
        return body, headers

    async def send(self, message: OutboundMessage) -> SendResult:
        body, headers = self.signed_request(message)
        response = await self.http.request("POST", self.url, content=body, headers=headers)
        if response.status_code >= 300:
            self.http.check(response, _receiver_error)
        return SendResult(provider_message_id=message.delivery_id)

    # -- webhooks -----------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        msg_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "")
        given = request.headers.get("webhook-signature", "")
        if not (msg_id and stamp and given):
            raise SignatureError(
                "webhook: webhook-id, webhook-timestamp or webhook-signature header is missing",
                401,
            )
        try:
            timestamp = int(stamp)
        except ValueError:
            raise SignatureError("webhook: webhook-timestamp is not Unix seconds", 403) from None
        if abs(clock.now().timestamp() - timestamp) > TOLERANCE_SECONDS:
            raise SignatureError(
                "webhook: webhook-timestamp is more than 5 minutes off (replayed or a wrong clock)",
                403,
            )
        expected = sign(self.key, msg_id, timestamp, request.body).encode()
        for candidate in given.split():
            if hmac.compare_digest(expected, candidate.encode()):
                return
        raise SignatureError("webhook: webhook-signature does not match; check secret_env", 403)

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        data = json_payload(request.body, "webhook")
        items = data if isinstance(data, list) else [data]
        if not any(
            isinstance(i, dict) and i.get("from") and i.get("text") is not None for i in items
        ):
            raise PayloadError(
                'webhook: not an inbound message (expected a JSON object {"from": …, '
                '"text": …} or a list of them)'
            )
        single = len(items) == 1
        # A sender retries with the same webhook-id (Standard Webhooks): messages without
        # an id of their own get one from it, by position, so a retried request is a no-op
        hook_id = request.headers.get("webhook-id")
        events: list[InboundEvent] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not item.get("from") or item.get("text") is None:
                continue
            external = item.get("id") or (
                (hook_id if single else f"{hook_id}#{index}") if hook_id else None
            )
            events.append(
                InboundMessage(
                    channel=self.channel.name,
                    address=str(item["from"]),
                    text=str(item["text"]),
                    external_id=str(external) if external else None,
                    received_at=event_time(item.get("received_at"), "received_at"),
                    profile_name=str(item["name"]) if item.get("name") else None,
                )
            )
        return events

    async def aclose(self) -> None:
        await self.http.aclose()


def _receiver_error(body: object) -> tuple[str | None, str | None] | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("code") or "") or None, str(error.get("message") or "")
        if isinstance(error, str):
            return None, error
    return None
