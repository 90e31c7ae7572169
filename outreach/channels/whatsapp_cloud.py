"""WhatsApp through Meta's Cloud API.

Sends are ``POST {base_url}/{api_version}/{phone_number_id}/messages`` with a Bearer token
and a JSON body; ``to`` is the number without ``+``. Meta allows free text only inside the
24-hour customer service window (``message.in_service_window``); outside it the campaign's
approved template (``message.whatsapp_template``: name, language, parameters) is sent. When
neither is possible the send fails with code ``whatsapp_window`` before any request, and
the engine records the skip reason ``whatsapp_window``.

Meta's error body ``{"error": {"code", "message", "error_data": {"details"}}}`` gives the
ProviderError code (131047 window closed, 131026 undeliverable, 190 token expired, ...).
Meta signals throttling with 4xx codes 4, 80007, 130429, 131048 and 131056: those are
retryable like a 429.

Webhooks: ``handshake`` answers Meta's GET subscription check (``hub.verify_token``);
``verify`` checks ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app
secret) before any JSON is read; ``parse`` reads text, button and interactive replies and
delivery statuses.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from .. import clock
from ..config import ChannelConfig
from ..errors import ProviderError, SignatureError
from .base import (
    AddressKind,
    InboundEvent,
    InboundMessage,
    OutboundMessage,
    ProviderContext,
    SendResult,
    StatusEvent,
    WebhookRequest,
)
from .http import HttpChannel, as_dict, json_body, optional_env, require_env, setting, signed_header

RATE_LIMIT_CODES = frozenset({"4", "80007", "130429", "131048", "131056"})


def _details(error: dict[str, Any]) -> Any:
    """``error_data.details`` of a Meta error object: its most specific explanation."""
    data = error.get("error_data")
    return data.get("details") if isinstance(data, dict) else None


def _meta_error(body: object) -> tuple[str | None, str | None] | None:
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    error = body["error"]
    details = _details(error)
    text = str(error.get("message") or "")
    if details and details not in text:
        text = f"{text} ({details})" if text else str(details)
    code = error.get("code")
    return (str(code) if code is not None else None), text


class WhatsAppCloudProvider:
    name: ClassVar[str] = "whatsapp-cloud"
    address_kind: ClassVar[AddressKind] = "phone"
    idempotent: ClassVar[bool] = False
    service_window: ClassVar[bool] = True
    local: ClassVar[bool] = False
    settings: ClassVar[frozenset[str]] = frozenset(
        {
            "phone_number_id",
            "access_token_env",
            "app_secret_env",
            "verify_token_env",
            "api_version",
            "base_url",
        }
    )
    required_settings: ClassVar[frozenset[str]] = frozenset({"phone_number_id", "access_token_env"})

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        self.channel = channel
        self.phone_number_id = setting(channel, "phone_number_id")
        token = require_env(channel, context.env, "access_token_env")
        self.app_secret = optional_env(channel, context.env, "app_secret_env")
        self.verify_token = optional_env(channel, context.env, "verify_token_env")
        version = setting(channel, "api_version", "v21.0")
        self.path = f"/{version}/{self.phone_number_id}/messages"
        self.http = HttpChannel(
            "whatsapp-cloud",
            channel,
            base_url=setting(channel, "base_url", "https://graph.facebook.com"),
            headers={"Authorization": f"Bearer {token}"},
            secrets=(token, self.app_secret or "", self.verify_token or ""),
            retryable_codes=RATE_LIMIT_CODES,
        )

    def payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The JSON body for ``message``: text inside the window, else the template."""
        to = message.to.removeprefix("+")
        if message.in_service_window:
            return {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"body": message.body, "preview_url": False},
            }
        template = message.whatsapp_template
        if not template or not template.get("name"):
            raise ProviderError(
                f"whatsapp-cloud: {message.to} is outside the 24-hour window and no "
                "whatsapp_template configured; add whatsapp_template to the campaign",
                retryable=False,
                code="whatsapp_window",
            )
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": template_object(template),
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        body = self.payload(message)
        response = await self.http.request("POST", self.path, json_body=body)
        answer = self.http.check(response, _meta_error)
        try:
            wamid = answer["messages"][0]["id"]
        except (KeyError, IndexError, TypeError):
            raise self.http.bad_response(response, "messages[0].id") from None
        if not isinstance(wamid, str) or not wamid:
            raise self.http.bad_response(response, "messages[0].id")
        return SendResult(provider_message_id=wamid)

    # -- webhooks -----------------------------------------------------------------

    def handshake(self, query: Mapping[str, str]) -> str:
        """Meta's GET subscription check: the challenge if the verify token matches."""
        if self.verify_token is None:
            raise SignatureError(
                f"whatsapp-cloud: [channels.{self.channel.name}] has no verify_token_env", 403
            )
        given = query.get("hub.verify_token", "")
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            given.encode(), self.verify_token.encode()
        ):
            raise SignatureError("whatsapp-cloud: hub.verify_token does not match", 403)
        return query.get("hub.challenge", "")

    def verify(self, request: WebhookRequest) -> None:
        header, secret = signed_header(
            request,
            provider="whatsapp-cloud",
            channel=self.channel.name,
            header="X-Hub-Signature-256",
            secret=self.app_secret,
            setting="app_secret_env",
        )
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), header.strip().lower().encode()):
            raise SignatureError(
                "whatsapp-cloud: X-Hub-Signature-256 does not match; check app_secret_env", 403
            )

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        data = json_body(request.body)
        if data is None:
            return []
        events: list[InboundEvent] = []
        if not isinstance(data, dict):
            return events
        for entry in _dicts(data.get("entry")):
            for change in _dicts(entry.get("changes")):
                value = change.get("value")
                if not isinstance(value, dict):
                    continue
                names = {
                    str(c.get("wa_id")): as_dict(c.get("profile")).get("name")
                    for c in _dicts(value.get("contacts"))
                }
                for item in _dicts(value.get("messages")):
                    inbound = self._message(item, names)
                    if inbound is not None:
                        events.append(inbound)
                for item in _dicts(value.get("statuses")):
                    status = self._status(item)
                    if status is not None:
                        events.append(status)
        return events

    def _message(self, item: dict[str, Any], names: dict[str, Any]) -> InboundMessage | None:
        sender = str(item.get("from") or "")
        if not sender:
            return None
        text = _text_of(item)
        if text is None:
            return None
        name = names.get(sender)
        context = item.get("context") if isinstance(item.get("context"), dict) else {}
        return InboundMessage(
            channel=self.channel.name,
            address=sender if sender.startswith("+") else f"+{sender}",
            text=text,
            external_id=str(item.get("id")) if item.get("id") else None,
            received_at=_when(item.get("timestamp")),
            profile_name=str(name) if name else None,
            in_reply_to=str(context["id"]) if context and context.get("id") else None,
        )

    def _status(self, item: dict[str, Any]) -> StatusEvent | None:
        if not item.get("id") or not item.get("status"):
            return None
        errors = _dicts(item.get("errors"))
        code = message = None
        if errors:
            first = errors[0]
            code = str(first["code"]) if first.get("code") is not None else None
            explained = _details(first) or first.get("title") or first.get("message")
            message = str(explained or "") or None
        return StatusEvent(
            channel=self.channel.name,
            provider_message_id=str(item["id"]),
            status=str(item["status"]),
            at=_when(item.get("timestamp")),
            error_code=code,
            error_message=message,
        )

    async def aclose(self) -> None:
        await self.http.aclose()


def template_object(template: Mapping[str, Any]) -> dict[str, Any]:
    """Meta's ``template`` object from a campaign's ``whatsapp_template`` setting.

    ``parameters`` is a list (positional ``{{1}}``, ``{{2}}``) or a mapping (named
    parameters); ``language`` a code like ``nl`` or ``en_US``.
    """
    language = template.get("language") or "en"
    result: dict[str, Any] = {
        "name": str(template["name"]),
        "language": {"code": str(language)} if isinstance(language, str) else dict(language),
    }
    params = template.get("parameters")
    if isinstance(params, Mapping):
        parameters = [
            {"type": "text", "parameter_name": str(k), "text": str(v)} for k, v in params.items()
        ]
    elif params:
        parameters = [{"type": "text", "text": str(v)} for v in params]
    else:
        parameters = []
    if parameters:
        result["components"] = [{"type": "body", "parameters": parameters}]
    return result


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text_of(item: dict[str, Any]) -> str | None:
    kind = item.get("type")
    part = item.get(kind) if isinstance(kind, str) else None
    part = part if isinstance(part, dict) else {}
    if kind == "text":
        return str(part.get("body") or "")
    if kind == "button":
        return str(part.get("text") or part.get("payload") or "")
    if kind == "interactive":
        for key in ("button_reply", "list_reply"):
            reply = part.get(key)
            if isinstance(reply, dict):
                return str(reply.get("title") or reply.get("id") or "")
        return ""
    if kind in ("reaction", "unsupported", "system"):
        return None
    # media and the rest: keep the caption, or say what arrived
    return str(part.get("caption") or f"[{kind}]")


def _when(timestamp: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(timestamp), UTC)
    except (TypeError, ValueError, OverflowError):
        return clock.now()
