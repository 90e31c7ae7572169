"""Zendesk Sunshine Conversations (v2) proactive notifications.

Sends are ``POST {base_url}/v2/apps/{app_id}/notifications``, HTTP Basic
``key_id:key_secret``, JSON ``{"destination": {"integrationId", "destinationId"},
"author": {"role": "appMaker"}, "message": …}``; the destination is the channel's
``integration_id`` (a WhatsApp or SMS integration of the app) and the customer's phone.
Outside the WhatsApp 24-hour window a message that carries a ``whatsapp_template`` goes
out as ``messageSchema: "whatsapp"`` with that template; otherwise as text. Sunshine
answers ``201 {"notification": {"_id"}}``; errors ``{"errors": [{"code", "title"}]}``.

Webhooks carry the webhook's secret in ``X-API-Key`` (compared in constant time).
``parse`` reads ``conversation:message`` events written by users (the business's own
messages echo back as ``business`` and are ignored) and delivery events. The customer's
address is the channel client's external id (the phone number for WhatsApp and SMS),
falling back to the user's ``externalId``.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from ..config import ChannelConfig
from ..errors import PayloadError, SignatureError
from .base import (
    InboundEvent,
    InboundMessage,
    OutboundMessage,
    Provider,
    ProviderContext,
    SendResult,
    StatusEvent,
    WebhookRequest,
    media_kind,
)
from .http import (
    HttpChannel,
    as_dict,
    event_time,
    json_payload,
    optional_env,
    require_env,
    setting,
    signed_header,
)
from .whatsapp_cloud import template_object

_DELIVERY = {
    "conversation:message:delivery:channel": "sent",
    "conversation:message:delivery:user": "delivered",
    "conversation:message:delivery:failure": "failed",
}


def _sunshine_error(body: object) -> tuple[str | None, str | None] | None:
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            return str(first.get("code") or "") or None, str(first.get("title") or "")
    return None


class SunshineProvider(Provider):
    name: ClassVar[str] = "sunshine"
    service_window: ClassVar[bool] = True
    receives_webhooks: ClassVar[bool] = True
    settings: ClassVar[frozenset[str]] = frozenset(
        {"app_id", "key_id", "key_secret_env", "webhook_secret_env", "integration_id", "base_url"}
    )
    required_settings: ClassVar[frozenset[str]] = frozenset(
        {"app_id", "key_id", "key_secret_env", "integration_id"}
    )

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        super().__init__(channel, context)
        self.app_id = setting(channel, "app_id")
        self.integration_id = setting(channel, "integration_id")
        key_secret = require_env(channel, context.env, "key_secret_env")
        self.webhook_secret = optional_env(channel, context.env, "webhook_secret_env")
        self.path = f"/v2/apps/{self.app_id}/notifications"
        self.http = HttpChannel(
            "sunshine",
            channel,
            base_url=setting(channel, "base_url", "https://api.smooch.io"),
            auth=(setting(channel, "key_id"), key_secret),
            secrets=(key_secret, self.webhook_secret or ""),
        )

    def payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The notification body for ``message``."""
        body: dict[str, Any] = {
            "destination": {"integrationId": self.integration_id, "destinationId": message.to},
            "author": {"role": "appMaker"},
        }
        template = message.extra.get("whatsapp_template")
        if template and template.get("name") and not message.in_service_window:
            wa_template = template_object(template)
            if template.get("namespace"):
                wa_template["namespace"] = str(template["namespace"])
            body["messageSchema"] = "whatsapp"
            body["message"] = {"type": "template", "template": wa_template}
        else:
            body["message"] = {"type": "text", "text": message.body}
        return body

    async def send(self, message: OutboundMessage) -> SendResult:
        response = await self.http.request("POST", self.path, json_body=self.payload(message))
        answer = self.http.check(response, _sunshine_error)
        notification = answer.get("notification") if isinstance(answer, dict) else None
        nid = notification.get("_id") if isinstance(notification, dict) else None
        if not isinstance(nid, str) or not nid:
            raise self.http.bad_response(response, "notification._id")
        return SendResult(provider_message_id=nid)

    # -- webhooks -----------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        given, secret = signed_header(
            request,
            provider="sunshine",
            channel=self.channel.name,
            header="X-API-Key",
            secret=self.webhook_secret,
            setting="webhook_secret_env",
        )
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise SignatureError("sunshine: X-API-Key does not match webhook_secret_env", 403)

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        data = json_payload(request.body, "sunshine")
        raw_events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(raw_events, list):
            raise PayloadError(
                "sunshine: not a Sunshine Conversations webhook (expected a JSON object "
                '{"events": [...]})'
            )
        events: list[InboundEvent] = []
        for event in raw_events:
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            payload = as_dict(event.get("payload"))
            message = as_dict(payload.get("message"))
            if kind == "conversation:message":
                inbound = self._inbound(event, message)
                if inbound is not None:
                    events.append(inbound)
            elif kind in _DELIVERY and message.get("id"):
                error = as_dict(payload.get("error"))
                events.append(
                    StatusEvent(
                        channel=self.channel.name,
                        provider_message_id=str(message["id"]),
                        status=_DELIVERY[str(kind)],
                        at=event_time(event.get("createdAt"), "createdAt"),
                        error_code=str(error["code"]) if error.get("code") else None,
                        error_message=str(error["message"]) if error.get("message") else None,
                    )
                )
        return events

    def _inbound(self, event: dict[str, Any], message: dict[str, Any]) -> InboundMessage | None:
        author = as_dict(message.get("author"))
        if author.get("type") != "user":
            return None
        content = as_dict(message.get("content"))
        source = as_dict(message.get("source"))
        client = as_dict(source.get("client"))
        user = as_dict(author.get("user"))
        address = str(
            client.get("externalId") or user.get("externalId") or author.get("userId") or ""
        )
        if not address:
            return None
        if address.isdigit() and source.get("type") in ("whatsapp", "twilio", "messagebird"):
            address = f"+{address}"
        kind, text, details = _content_of(content)
        name = author.get("displayName")
        return InboundMessage(
            channel=self.channel.name,
            address=address,
            text=str(text),
            external_id=str(message["id"]) if message.get("id") else None,
            received_at=event_time(message.get("received") or event.get("createdAt"), "received"),
            profile_name=str(name) if name else None,
            kind=kind,
            details=details,
        )

    async def aclose(self) -> None:
        await self.http.aclose()


def _content_of(content: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    """(kind, text, details) of a message's ``content``: text (and a form's answers) is
    text; images and files are media with their URL; a location keeps its coordinates."""
    kind = str(content.get("type") or "text")
    if kind == "text":
        payload = content.get("payload")  # a tapped quick reply
        return (
            "text",
            str(content.get("text") or ""),
            ({"payload": str(payload)} if payload else None),
        )
    if kind in ("image", "file"):
        content_type = str(content.get("mediaType") or "")
        media = {
            "type": "image" if kind == "image" else media_kind(content_type),
            "url": str(content.get("mediaUrl") or ""),
            "content_type": content_type,
        }
        # altText describes the media for screen readers: not the customer's words
        return str(media["type"]), str(content.get("text") or ""), {"media": [media]}
    if kind == "location":
        coordinates = as_dict(content.get("coordinates"))
        place: dict[str, Any] = {}
        for key, name in (("lat", "latitude"), ("long", "longitude")):
            value = coordinates.get(key)
            place[name] = float(value) if isinstance(value, int | float) else None
        where = as_dict(content.get("location"))
        for key in ("name", "address"):
            if where.get(key):
                place[key] = str(where[key])
        return "location", "", {"location": place}
    if kind == "formResponse":
        return (
            "interactive",
            str(content.get("textFallback") or ""),
            {
                "fields": [
                    {
                        "name": f.get("name"),
                        "label": f.get("label"),
                        "value": f.get("text") or f.get("email") or f.get("select"),
                    }
                    for f in content.get("fields") or []
                    if isinstance(f, dict)
                ]
            },
        )
    return "unsupported", "", {"type": kind}
