"""SMS and WhatsApp through Twilio's Programmable Messaging API.

Sends are ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, HTTP
Basic ``AccountSid:AuthToken``; Twilio answers ``201`` with the ``SM…`` sid. With
``whatsapp = true`` both ends are addressed ``whatsapp:+E164``. Errors follow
``http.HttpChannel``: Twilio's numeric ``code`` (21211, 21610, …) becomes the
ProviderError code.

Webhooks (inbound messages and status callbacks) are verified with
``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the auth token, over the URL Twilio
called (``request.url``, the public one behind a proxy) followed by every POST parameter
sorted by name, as name+value. Like Twilio's own validator we accept the URL with and
without its default port, because Twilio signs either form. JSON-bodied webhooks sign the
URL alone and carry the body's SHA-256 in the ``bodySHA256`` query parameter.
Missing signatures answer 401, wrong ones 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .. import clock
from ..config import ChannelConfig
from ..errors import ConfigError, PayloadError, SignatureError
from .base import (
    InboundEvent,
    InboundMessage,
    OutboundMessage,
    Provider,
    ProviderContext,
    SendResult,
    StatusEvent,
    WebhookRequest,
    WebhookResponse,
    media_kind,
)
from .http import HttpChannel, require_env, setting

_STATUS = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
_HASHES = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _twilio_error(body: object) -> tuple[str | None, str | None] | None:
    if isinstance(body, dict) and body.get("code") is not None and not body.get("sid"):
        return str(body["code"]), str(body.get("message") or "")
    return None


class TwilioProvider(Provider):
    name: ClassVar[str] = "twilio"
    receives_webhooks: ClassVar[bool] = True
    form_webhooks: ClassVar[bool] = True
    settings: ClassVar[frozenset[str]] = frozenset(
        {"account_sid", "auth_token_env", "from", "messaging_service_sid", "whatsapp", "base_url"}
    )
    required_settings: ClassVar[frozenset[str]] = frozenset({"account_sid", "auth_token_env"})

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        super().__init__(channel, context)
        self.account_sid = setting(channel, "account_sid")
        self.auth_token = require_env(channel, context.env, "auth_token_env")
        self.whatsapp = bool(channel.settings.get("whatsapp", False))
        sender = channel.settings.get("from")
        self.messaging_service_sid = channel.settings.get("messaging_service_sid")
        if not sender and not self.messaging_service_sid:
            raise ConfigError(
                f"[channels.{channel.name}]: set from (a number) or messaging_service_sid"
            )
        self.sender = self._address(str(sender)) if sender else None
        self.http = HttpChannel(
            "twilio",
            channel,
            base_url=setting(channel, "base_url", "https://api.twilio.com"),
            auth=(self.account_sid, self.auth_token),
            headers={"Accept": "application/json"},
            secrets=(self.auth_token,),
        )
        self.path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def _address(self, number: str) -> str:
        if self.whatsapp and not number.startswith("whatsapp:"):
            return f"whatsapp:{number}"
        return number

    async def send(self, message: OutboundMessage) -> SendResult:
        form = {"To": self._address(message.to), "Body": message.body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = str(self.messaging_service_sid)
        if self.sender:
            form["From"] = self.sender
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        response = await self.http.request("POST", self.path, form=form)
        body = self.http.check(response, _twilio_error)
        sid = body.get("sid") if isinstance(body, dict) else None
        if not isinstance(sid, str) or not sid:
            raise self.http.bad_response(response, "message sid")
        return SendResult(provider_message_id=sid)

    # -- webhooks -----------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get("x-twilio-signature", "")
        if not signature:
            raise SignatureError("twilio: X-Twilio-Signature header is missing", 401)
        algorithm = _algorithm(request.headers.get("x-twilio-webhooks-signature-settings", ""))
        digest = _HASHES.get(algorithm)
        if digest is None:
            raise SignatureError(f"twilio: unsupported signature algorithm {algorithm}", 403)
        query = parse_qs(urlsplit(request.url).query)
        params: dict[str, list[str]] = {}
        if "bodySHA256" in query:
            actual = hashlib.sha256(request.body).hexdigest()
            if not hmac.compare_digest(actual, query["bodySHA256"][0]):
                raise SignatureError("twilio: bodySHA256 does not match the body", 403)
        else:
            params = _form(request.body)
        for url in _url_variants(request.url):
            payload = url + "".join(
                name + value for name in sorted(params) for value in sorted(set(params[name]))
            )
            mac = hmac.new(self.auth_token.encode(), payload.encode("utf-8"), digest)
            expected = base64.b64encode(mac.digest()).decode()
            if hmac.compare_digest(expected, signature):
                return
        raise SignatureError(
            "twilio: X-Twilio-Signature does not match; check auth_token_env and that "
            "[server] public_url is the address Twilio calls",
            403,
        )

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        params = {k: v[0] for k, v in _form(request.body).items()}
        now = clock.now()
        status = params.get("MessageStatus") or params.get("SmsStatus") or ""
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        inbound = ("Body" in params or "NumMedia" in params or "Latitude" in params) and params.get(
            "From"
        )
        if inbound and status in ("", "received", "receiving"):
            kind, details = _content_of(params)
            return [
                InboundMessage(
                    channel=self.channel.name,
                    address=_strip(params.get("From", "")),
                    text=params.get("Body", ""),
                    external_id=sid or None,
                    received_at=now,
                    profile_name=params.get("ProfileName") or None,
                    kind=kind,
                    details=details,
                )
            ]
        if sid and status:
            return [
                StatusEvent(
                    channel=self.channel.name,
                    provider_message_id=sid,
                    status=_STATUS.get(status, status),
                    at=now,
                    error_code=params.get("ErrorCode") or None,
                    error_message=params.get("ErrorMessage") or None,
                )
            ]
        raise PayloadError(
            "twilio: not a Twilio webhook (neither a message with From and Body nor a status "
            "callback with MessageSid and MessageStatus)"
        )

    def webhook_response(self, stored: Mapping[str, int]) -> WebhookResponse:
        # an empty TwiML document: reply with nothing (replies go out through the API)
        return WebhookResponse(_TWIML, media_type="text/xml")

    async def aclose(self) -> None:
        await self.http.aclose()


def _form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _content_of(params: dict[str, str]) -> tuple[str, dict[str, Any] | None]:
    """(kind, details) of an inbound message: MMS/WhatsApp media (``NumMedia``,
    ``MediaUrlN``, ``MediaContentTypeN``), a WhatsApp location (``Latitude``/``Longitude``,
    ``Address``, ``Label``), a tapped button (``ButtonPayload``) or list item (``ListId``)."""
    try:
        count = min(int(params.get("NumMedia") or 0), 10)  # Twilio sends at most 10
    except ValueError:
        count = 0
    media = []
    for n in range(count):
        url = params.get(f"MediaUrl{n}")
        if url:
            content_type = params.get(f"MediaContentType{n}") or ""
            media.append(
                {"type": media_kind(content_type), "url": url, "content_type": content_type}
            )
    if media:
        vcard = all(m["content_type"].lower() in ("text/vcard", "text/x-vcard") for m in media)
        return ("contacts" if vcard else str(media[0]["type"])), {"media": media}
    if params.get("Latitude") and params.get("Longitude"):
        place: dict[str, Any] = {}
        for key, name in (("Latitude", "latitude"), ("Longitude", "longitude")):
            try:
                place[name] = float(params[key])
            except ValueError:
                place[name] = None
        for key, name in (("Label", "name"), ("Address", "address")):
            if params.get(key):
                place[name] = params[key]
        return "location", {"location": place}
    if params.get("ButtonPayload") or params.get("ButtonText"):
        payload = params.get("ButtonPayload")
        return "button", {"payload": payload} if payload else None
    if params.get("ListId"):
        return "interactive", {"id": params["ListId"]}
    kind = (params.get("MessageType") or "text").lower()
    # a WhatsApp message type this code does not know: kept, but never read as text
    return ("text", None) if kind == "text" else ("unsupported", {"type": kind})


def _strip(address: str) -> str:
    return address.removeprefix("whatsapp:")


def _algorithm(settings_header: str) -> str:
    for part in settings_header.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def _url_variants(url: str) -> list[str]:
    """The URL as given, plus the same with its default port added or removed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    if parts.port:
        other = parts._replace(netloc=f"{userinfo}{host}")
    else:
        default = 443 if parts.scheme == "https" else 80
        other = parts._replace(netloc=f"{userinfo}{host}:{default}")
    return [url, urlunsplit(other)]
