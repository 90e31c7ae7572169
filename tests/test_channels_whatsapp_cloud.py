"""The whatsapp-cloud provider against a loopback Graph API, and Meta's webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from outreach.channels.base import InboundMessage, OutboundMessage, StatusEvent, WebhookRequest
from outreach.channels.whatsapp_cloud import WhatsAppCloudProvider
from outreach.errors import PayloadError, ProviderError, SignatureError
from tests.servers.fixtures import (
    META_APP_SECRET,
    META_PHONE_ID,
    META_TOKEN,
    META_VERIFY_TOKEN,
    assert_no_secret,
    channel_config,
    context,
)
from tests.servers.fixtures import meta_server as meta_server
from tests.servers.http import Reply
from tests.servers.meta import MetaEmulator, meta_error

TEMPLATE = {"name": "nps_survey", "language": "nl", "parameters": ["Anna", "Acme"]}


def make(server: MetaEmulator | None = None, **settings: object) -> WhatsAppCloudProvider:
    values: dict[str, object] = {
        "phone_number_id": META_PHONE_ID,
        "access_token_env": "WHATSAPP_TOKEN",
        "app_secret_env": "WHATSAPP_APP_SECRET",
        "verify_token_env": "WHATSAPP_VERIFY_TOKEN",
        "api_version": "v21.0",
    }
    if server is not None:
        values["base_url"] = server.url
    values.update(settings)
    channel = channel_config("whatsapp-cloud", values, name="whatsapp", timeout=0.5)
    return WhatsAppCloudProvider(channel, context())


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": "d1",
        "channel": "whatsapp",
        "customer_id": "c1",
        "to": "+31612345678",
        "body": "Hoi Anna, hoe tevreden ben je?",
    }
    values.update(fields)
    return OutboundMessage(**values)


def send(provider: WhatsAppCloudProvider, msg: OutboundMessage) -> str | None:
    async def run() -> str | None:
        try:
            return (await provider.send(msg)).provider_message_id
        finally:
            await provider.aclose()

    return asyncio.run(run())


def send_error(provider: WhatsAppCloudProvider, msg: OutboundMessage) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        send(provider, msg)
    return info.value


def test_free_text_inside_the_window(meta_server: MetaEmulator) -> None:
    wamid = send(make(meta_server), message(in_service_window=True))
    [request] = meta_server.requests
    assert request.path == f"/v21.0/{META_PHONE_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {META_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "31612345678",
        "type": "text",
        "text": {"body": "Hoi Anna, hoe tevreden ben je?", "preview_url": False},
    }
    assert wamid is not None and wamid.startswith("wamid.")


def test_approved_template_outside_the_window(meta_server: MetaEmulator) -> None:
    send(make(meta_server), message(extra={"whatsapp_template": TEMPLATE}))
    body = meta_server.requests[0].json()
    assert body["type"] == "template"
    assert body["to"] == "31612345678"
    assert body["template"] == {
        "name": "nps_survey",
        "language": {"code": "nl"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "Acme"}],
            }
        ],
    }


def test_named_template_parameters(meta_server: MetaEmulator) -> None:
    template = {"name": "nps", "language": "en_US", "parameters": {"first_name": "Anna"}}
    send(make(meta_server), message(extra={"whatsapp_template": template}))
    [component] = meta_server.requests[0].json()["template"]["components"]
    assert component["parameters"] == [
        {"type": "text", "parameter_name": "first_name", "text": "Anna"}
    ]


def test_outside_window_without_template_fails_before_any_request(
    meta_server: MetaEmulator,
) -> None:
    error = send_error(make(meta_server), message())
    assert error.code == "whatsapp_window" and not error.retryable
    assert error.skip  # the engine records it skipped (reason whatsapp_window), not failed
    assert "outside the 24-hour window and no whatsapp_template configured" in str(error)
    assert meta_server.requests == []


def test_meta_refusing_free_text_is_permanent_131047(meta_server: MetaEmulator) -> None:
    meta_server.closed_windows.add("31612345678")
    error = send_error(make(meta_server), message(in_service_window=True))
    assert (error.retryable, error.code) == (False, "131047")
    assert "Re-engagement" in str(error)


@pytest.mark.parametrize(
    ("fault", "retryable", "code"),
    [
        ("429", True, "130429"),
        ("500", True, "131000"),
        ("502", True, "502"),
        ("html", False, "bad_response"),
        ("malformed", False, "bad_response"),
        ("error-body", False, "131026"),
        ("reject", False, "131026"),
        ("reset", True, "connection"),
        ("hang", True, "timeout"),
    ],
)
def test_faults(meta_server: MetaEmulator, fault: str, retryable: bool, code: str) -> None:
    meta_server.fail(fault)
    error = send_error(make(meta_server), message(in_service_window=True))
    assert (error.retryable, error.code) == (retryable, code)
    assert_no_secret(str(error))


@pytest.mark.parametrize("code", [4, 80007, 130429, 131056])
def test_metas_rate_limit_codes_on_a_400_are_retryable(
    meta_server: MetaEmulator, code: int
) -> None:
    meta_server.fail(Reply.json(400, meta_error(code, "(#4) Application request limit reached")))
    error = send_error(make(meta_server), message(in_service_window=True))
    assert error.retryable and error.code == str(code)


def test_expired_token_is_permanent_190_and_the_token_is_not_shown(
    meta_server: MetaEmulator,
) -> None:
    meta_server.access_token = "another-token"
    error = send_error(make(meta_server), message(in_service_window=True))
    assert (error.retryable, error.code) == (False, "190")
    assert_no_secret(str(error))


def test_a_token_echoed_by_the_server_is_redacted(meta_server: MetaEmulator) -> None:
    meta_server.fail(Reply.json(400, meta_error(100, f"Invalid token {META_TOKEN} given")))
    error = send_error(make(meta_server), message(in_service_window=True))
    assert "***" in str(error)
    assert_no_secret(str(error))


def test_keep_alive_across_sends(meta_server: MetaEmulator) -> None:
    provider = make(meta_server)

    async def run() -> None:
        for n in range(10):
            await provider.send(message(delivery_id=f"d{n}", in_service_window=True))
        await provider.aclose()

    asyncio.run(run())
    assert meta_server.connections == 1 and len(meta_server.requests) == 10


# -- webhooks -----------------------------------------------------------------------

INBOUND = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": META_PHONE_ID,
                        },
                        "contacts": [{"profile": {"name": "Anna"}, "wa_id": "31612345678"}],
                        "messages": [
                            {
                                "from": "31612345678",
                                "id": "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzQUNEMjA=",
                                "timestamp": "1764583200",
                                "type": "text",
                                "text": {"body": "9"},
                            },
                            {
                                "context": {"from": "15550783881", "id": "wamid.SENT1"},
                                "from": "31612345678",
                                "id": "wamid.BUTTON",
                                "timestamp": "1764583201",
                                "type": "button",
                                "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"},
                            },
                            {
                                "from": "31612345678",
                                "id": "wamid.INTERACTIVE",
                                "timestamp": "1764583202",
                                "type": "interactive",
                                "interactive": {
                                    "type": "button_reply",
                                    "button_reply": {"id": "score-10", "title": "10"},
                                },
                            },
                            {
                                "from": "31612345678",
                                "id": "wamid.LIST",
                                "timestamp": "1764583203",
                                "type": "interactive",
                                "interactive": {
                                    "type": "list_reply",
                                    "list_reply": {"id": "r1", "title": "Very happy"},
                                },
                            },
                            {
                                "from": "31612345678",
                                "id": "wamid.REACTION",
                                "timestamp": "1764583204",
                                "type": "reaction",
                                "reaction": {"message_id": "wamid.SENT1", "emoji": "👍"},
                            },
                            {
                                "from": "31612345678",
                                "id": "wamid.IMAGE",
                                "timestamp": "1764583205",
                                "type": "image",
                                "image": {
                                    "caption": "my receipt",
                                    "mime_type": "image/jpeg",
                                    "sha256": "abc",
                                    "id": "123",
                                },
                            },
                        ],
                    },
                }
            ],
        }
    ],
}

STATUSES = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": META_PHONE_ID,
                        },
                        "statuses": [
                            {
                                "id": "wamid.SENT1",
                                "status": "delivered",
                                "timestamp": "1764583300",
                                "recipient_id": "31612345678",
                                "conversation": {"id": "c1", "origin": {"type": "marketing"}},
                                "pricing": {"billable": True, "category": "marketing"},
                            },
                            {
                                "id": "wamid.SENT2",
                                "status": "failed",
                                "timestamp": "1764583301",
                                "recipient_id": "31612345679",
                                "errors": [
                                    {
                                        "code": 131026,
                                        "title": "Message undeliverable",
                                        "message": "Message undeliverable",
                                        "error_data": {"details": "Receiver is incapable"},
                                    }
                                ],
                            },
                        ],
                    },
                }
            ],
        }
    ],
}


def signed(payload: dict[str, Any], secret: str = META_APP_SECRET) -> WebhookRequest:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(
        "POST",
        "https://hooks.example.com/webhooks/whatsapp",
        {"x-hub-signature-256": signature, "content-type": "application/json"},
        {},
        body,
    )


def test_verify_accepts_the_app_secrets_signature() -> None:
    make().verify(signed(INBOUND))


def test_verify_rejects_another_secret_and_a_changed_body() -> None:
    with pytest.raises(SignatureError) as info:
        make().verify(signed(INBOUND, "not-the-secret"))
    assert info.value.status == 403
    request = signed(INBOUND)
    tampered = WebhookRequest(
        request.method, request.url, request.headers, {}, request.body.replace(b'"9"', b'"0"')
    )
    with pytest.raises(SignatureError):
        make().verify(tampered)


def test_verify_without_header_is_401() -> None:
    request = signed(INBOUND)
    with pytest.raises(SignatureError) as info:
        make().verify(WebhookRequest("POST", request.url, {}, {}, request.body))
    assert info.value.status == 401


def test_verify_without_app_secret_configured_refuses() -> None:
    provider = WhatsAppCloudProvider(
        channel_config(
            "whatsapp-cloud",
            {"phone_number_id": META_PHONE_ID, "access_token_env": "WHATSAPP_TOKEN"},
        ),
        context(),
    )
    with pytest.raises(SignatureError) as info:
        provider.verify(signed(INBOUND))
    assert info.value.status == 403


def get(query: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(
        method="GET", url="https://example.com/webhooks/whatsapp", headers={}, query=query, body=b""
    )


def test_handshake_returns_the_challenge() -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": META_VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    answer = make().handshake(get(query))
    assert (answer.status, answer.body, answer.media_type) == (200, "1158201444", "text/plain")


def test_handshake_with_wrong_token_is_403() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    with pytest.raises(SignatureError) as info:
        make().handshake(get(query))
    assert info.value.status == 403
    assert META_VERIFY_TOKEN not in str(info.value)


def test_parse_text_button_interactive_and_media_messages() -> None:
    events = make().parse(signed(INBOUND))
    assert all(isinstance(e, InboundMessage) for e in events)
    texts = [(e.external_id, e.text) for e in events]  # type: ignore[union-attr]
    assert texts == [
        ("wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzQUNEMjA=", "9"),
        ("wamid.BUTTON", "Stop promotions"),
        ("wamid.INTERACTIVE", "10"),
        ("wamid.LIST", "Very happy"),
        ("wamid.REACTION", ""),
        ("wamid.IMAGE", "my receipt"),
    ]
    kinds = [e.kind for e in events]  # type: ignore[union-attr]
    assert kinds == ["text", "button", "interactive", "interactive", "reaction", "image"]
    first = events[0]
    assert isinstance(first, InboundMessage)
    assert first.address == "+31612345678"
    assert first.profile_name == "Anna"
    assert first.channel == "whatsapp"
    assert first.received_at == datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    assert events[1].in_reply_to == "wamid.SENT1"  # type: ignore[union-attr]


def test_parse_statuses() -> None:
    delivered, failed = make().parse(signed(STATUSES))
    assert delivered == StatusEvent(
        channel="whatsapp",
        provider_message_id="wamid.SENT1",
        status="delivered",
        at=datetime.fromtimestamp(1764583300, UTC),
    )
    assert isinstance(failed, StatusEvent)
    assert (failed.status, failed.error_code, failed.error_message) == (
        "failed",
        "131026",
        "Receiver is incapable",
    )


def test_parse_refuses_what_is_no_whatsapp_payload_and_skips_broken_parts() -> None:
    request = WebhookRequest("POST", "https://x/", {}, {}, b"not json")
    with pytest.raises(PayloadError, match="not valid JSON"):
        make().parse(request)
    with pytest.raises(PayloadError, match="whatsapp_business_account"):
        make().parse(signed({"object": "page", "entry": [{"changes": [None]}]}))
    assert (
        make().parse(
            signed({"object": "whatsapp_business_account", "entry": [{"changes": [None]}]})
        )
        == []
    )
