"""WhatsApp through Meta's Cloud API.

Sends are ``POST {base_url}/{api_version}/{phone_number_id}/messages`` with a Bearer token
and a JSON body; ``to`` is the number without ``+``. Meta allows free text only inside the
24-hour customer service window (``message.in_service_window``); outside it the campaign's
approved template (``message.extra["whatsapp_template"]``: name, language, parameters) is
sent. When neither is possible the send is refused before any request with a skipping
``ProviderError`` (code ``whatsapp_window``), which the engine records as the skip reason.

Meta's error body ``{"error": {"code", "message", "error_data": {"details"}}}`` gives the
ProviderError code (131047 window closed, 131026 undeliverable, 190 token expired, ...).
Meta signals throttling with 4xx codes 4, 80007, 130429, 131048 and 131056: those are
retryable like a 429.

Webhooks: ``handshake`` answers Meta's GET subscription check (``hub.verify_token``);
``verify`` checks ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app
secret) before any JSON is read; ``parse`` reads every message type (text, button and
interactive replies as text; media, locations and contacts as what they are; reactions,
deletions, edits, number changes and system notices as events that are no text) and
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
from ..errors import PayloadError, ProviderError, SignatureError
from .base import (
    MEDIA_KINDS,
    InboundEvent,
    InboundMessage,
    Medium,
    OutboundMessage,
    Provider,
    ProviderContext,
    SendResult,
    StatusEvent,
    WebhookRequest,
    WebhookResponse,
)
from .http import (
    HttpChannel,
    as_dict,
    json_payload,
    optional_env,
    require_env,
    setting,
    signed_header,
)

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


class WhatsAppCloudProvider(Provider):
    name: ClassVar[str] = "whatsapp-cloud"
    service_window: ClassVar[bool] = True
    receives_webhooks: ClassVar[bool] = True
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

    @classmethod
    def medium(cls, channel: ChannelConfig) -> Medium | None:
        return "whatsapp"

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        super().__init__(channel, context)
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
        template = message.extra.get("whatsapp_template")
        if not template or not template.get("name"):
            raise ProviderError(
                f"whatsapp-cloud: {message.to} is outside the 24-hour window and no "
                "whatsapp_template configured; add whatsapp_template to the campaign",
                retryable=False,
                code="whatsapp_window",
                skip=True,
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

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        """Meta's GET subscription check: the challenge if the verify token matches."""
        if self.verify_token is None:
            raise SignatureError(
                f"whatsapp-cloud: [channels.{self.channel.name}] has no verify_token_env", 403
            )
        query = request.query
        given = query.get("hub.verify_token", "")
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            given.encode(), self.verify_token.encode()
        ):
            raise SignatureError("whatsapp-cloud: hub.verify_token does not match", 403)
        return WebhookResponse(query.get("hub.challenge", ""))

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
        data = json_payload(request.body, "whatsapp-cloud")
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("entry"), list)
            or data.get("object") not in (None, "whatsapp_business_account")
        ):
            raise PayloadError(
                "whatsapp-cloud: not a WhatsApp Cloud webhook (expected a JSON object "
                '{"object": "whatsapp_business_account", "entry": [...]})'
            )
        events: list[InboundEvent] = []
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
        kind, text, details = _content_of(item)
        name = names.get(sender)
        context = item.get("context") if isinstance(item.get("context"), dict) else {}
        return InboundMessage(
            channel=self.channel.name,
            address=_plus(sender),
            text=text,
            external_id=str(item.get("id")) if item.get("id") else None,
            received_at=_when(item.get("timestamp")),
            profile_name=str(name) if name else None,
            in_reply_to=str(context["id"]) if context and context.get("id") else None,
            kind=kind,
            details=details,
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


def _plus(wa_id: str) -> str:
    return wa_id if wa_id.startswith("+") else f"+{wa_id}"


def _content_of(item: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    """(kind, text, details) of one message object, by its ``type``: only what the customer
    wrote or tapped becomes text; media, locations and contacts are kept as they are, and
    events (reactions, deletions, edits, system notices) carry what they refer to."""
    kind = str(item.get("type") or "unsupported")
    part = as_dict(item.get(kind))
    if kind == "text":
        return kind, str(part.get("body") or ""), None
    if kind == "button":
        payload = part.get("payload")
        return (
            kind,
            str(part.get("text") or payload or ""),
            ({"payload": str(payload)} if payload else None),
        )
    if kind == "interactive":
        for key in ("button_reply", "list_reply", "nfm_reply"):
            reply = part.get(key)
            if isinstance(reply, dict):
                choice = {"id": str(reply["id"])} if reply.get("id") else None
                return kind, str(reply.get("title") or reply.get("id") or ""), choice
        return kind, "", None
    if kind in MEDIA_KINDS:
        media = {"type": kind}
        for key, name in (
            ("id", "id"),
            ("url", "url"),
            ("link", "url"),
            ("mime_type", "content_type"),
            ("filename", "filename"),
            ("sha256", "sha256"),
        ):
            if part.get(key) and name not in media:
                media[name] = str(part[key])
        return kind, str(part.get("caption") or ""), {"media": [media]}
    if kind == "location":
        return kind, "", {"location": _location(part)}
    if kind == "contacts":
        contacts = [_contact(c) for c in _dicts(item.get("contacts"))]
        return kind, "", {"contacts": contacts}
    if kind == "reaction":
        # an empty emoji takes a reaction away
        return (
            kind,
            "",
            {
                "reaction": str(part.get("emoji") or ""),
                "message_id": str(part.get("message_id") or ""),
            },
        )
    if kind == "revoke":
        original = part.get("original_message_id") or part.get("message_id")
        return kind, "", {"message_id": str(original or "")}
    if kind == "edit":
        original = part.get("original_message_id") or part.get("message_id")
        _, text, details = _content_of({"type": "text", **as_dict(part.get("message"))})
        return kind, text, {"message_id": str(original or ""), **(details or {})}
    if kind == "system":
        new_id = part.get("new_wa_id") or part.get("wa_id")
        if part.get("type") in ("user_changed_number", "customer_changed_number") and new_id:
            return (
                "number_change",
                "",
                {"new": _plus(str(new_id)), "body": str(part.get("body") or "")},
            )
        return kind, "", {"type": str(part.get("type") or ""), "body": str(part.get("body") or "")}
    # "unsupported", "unknown" and types newer than this code: kept, never read as text
    errors = [{"code": e.get("code"), "title": e.get("title")} for e in _dicts(item.get("errors"))]
    return "unsupported", "", {"type": kind, **({"errors": errors} if errors else {})}


def _location(part: dict[str, Any]) -> dict[str, Any]:
    place: dict[str, Any] = {}
    for key in ("latitude", "longitude"):
        try:
            place[key] = float(part[key])
        except (KeyError, TypeError, ValueError):
            place[key] = None
    for key in ("name", "address", "url"):
        if part.get(key):
            place[key] = str(part[key])
    return place


def _contact(card: dict[str, Any]) -> dict[str, Any]:
    name = as_dict(card.get("name"))
    return {
        "name": str(
            name.get("formatted_name")
            or " ".join(str(name[k]) for k in ("first_name", "last_name") if name.get(k))
        ),
        "phones": [str(p.get("phone") or p.get("wa_id") or "") for p in _dicts(card.get("phones"))],
        "emails": [str(e.get("email") or "") for e in _dicts(card.get("emails"))],
    }


def _when(timestamp: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(timestamp), UTC)
    except (TypeError, ValueError, OverflowError):
        return clock.now()
