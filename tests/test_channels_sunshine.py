"""The sunshine provider against a loopback Sunshine Conversations v2 API, and its webhooks."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from outreach.channels.base import InboundMessage, OutboundMessage, StatusEvent, WebhookRequest
from outreach.channels.sunshine import SunshineProvider
from outreach.errors import ProviderError, SignatureError
from tests.servers.fixtures import (
    SUNSHINE_APP,
    SUNSHINE_KEY_ID,
    SUNSHINE_WEBHOOK_SECRET,
    assert_no_secret,
    channel_config,
    context,
)
from tests.servers.fixtures import sunshine_server as sunshine_server
from tests.servers.sunshine import SunshineEmulator

INTEGRATION = "5e4af71a81966cfff3ef6550"


def make(server: SunshineEmulator | None = None) -> SunshineProvider:
    settings: dict[str, object] = {
        "app_id": SUNSHINE_APP,
        "key_id": SUNSHINE_KEY_ID,
        "key_secret_env": "SUNSHINE_KEY_SECRET",
        "webhook_secret_env": "SUNSHINE_WEBHOOK_SECRET",
        "integration_id": INTEGRATION,
    }
    if server is not None:
        settings["base_url"] = server.url
    return SunshineProvider(
        channel_config("sunshine", settings, name="zendesk", timeout=0.5), context()
    )


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": "d1",
        "channel": "zendesk",
        "customer_id": "c1",
        "to": "+31612345678",
        "body": "Your order has shipped",
    }
    values.update(fields)
    return OutboundMessage(**values)


def send(provider: SunshineProvider, msg: OutboundMessage) -> str | None:
    async def run() -> str | None:
        try:
            return (await provider.send(msg)).provider_message_id
        finally:
            await provider.aclose()

    return asyncio.run(run())


def test_notification_wire_format(sunshine_server: SunshineEmulator) -> None:
    notification_id = send(make(sunshine_server), message())
    [request] = sunshine_server.requests
    assert request.path == f"/v2/apps/{SUNSHINE_APP}/notifications"
    assert request.json() == {
        "destination": {"integrationId": INTEGRATION, "destinationId": "+31612345678"},
        "author": {"role": "appMaker"},
        "message": {"type": "text", "text": "Your order has shipped"},
    }
    assert notification_id is not None and len(notification_id) == 24


def test_whatsapp_template_outside_the_window(sunshine_server: SunshineEmulator) -> None:
    template = {"name": "shipping", "language": "en", "parameters": ["Anna"], "namespace": "ns1"}
    send(make(sunshine_server), message(extra={"whatsapp_template": template}))
    body = sunshine_server.requests[0].json()
    assert body["messageSchema"] == "whatsapp"
    assert body["message"] == {
        "type": "template",
        "template": {
            "name": "shipping",
            "namespace": "ns1",
            "language": {"code": "en"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Anna"}]}],
        },
    }


@pytest.mark.parametrize(
    ("fault", "retryable", "code"),
    [
        ("429-retry-after", True, "too_many_requests"),
        ("500", True, "internal_error"),
        ("503", True, "internal_error"),
        ("html", False, "bad_response"),
        ("malformed", False, "bad_response"),
        ("error-body", False, "bad_request"),
        ("reject", False, "bad_request"),
        ("reset", True, "connection"),
        ("hang", True, "timeout"),
    ],
)
def test_faults(sunshine_server: SunshineEmulator, fault: str, retryable: bool, code: str) -> None:
    sunshine_server.fail(fault)
    with pytest.raises(ProviderError) as info:
        send(make(sunshine_server), message())
    assert (info.value.retryable, info.value.code) == (retryable, code)
    assert_no_secret(str(info.value))


def test_wrong_key_is_permanent_unauthorized(sunshine_server: SunshineEmulator) -> None:
    sunshine_server.key_secret = "other"
    with pytest.raises(ProviderError) as info:
        send(make(sunshine_server), message())
    assert (info.value.retryable, info.value.code) == (False, "unauthorized")
    assert_no_secret(str(info.value))


def test_keep_alive(sunshine_server: SunshineEmulator) -> None:
    provider = make(sunshine_server)

    async def run() -> None:
        for n in range(10):
            await provider.send(message(delivery_id=f"d{n}"))
        await provider.aclose()

    asyncio.run(run())
    assert sunshine_server.connections == 1


# -- webhooks -----------------------------------------------------------------------

PAYLOAD = {
    "app": {"id": SUNSHINE_APP},
    "webhook": {"id": "5f4eaa5e5fa2f0d88b1f6a8c", "version": "v2"},
    "events": [
        {
            "id": "5f74a0d52b5315fc007e798a",
            "createdAt": "2026-12-01T10:00:01.000Z",
            "type": "conversation:message",
            "payload": {
                "conversation": {"id": "c0nv", "type": "personal"},
                "message": {
                    "id": "msg-user-1",
                    "received": "2026-12-01T10:00:00.000Z",
                    "author": {
                        "type": "user",
                        "userId": "u1",
                        "displayName": "Anna",
                        "user": {"id": "u1", "externalId": "customer-42"},
                    },
                    "content": {"type": "text", "text": "8"},
                    "source": {
                        "type": "whatsapp",
                        "integrationId": INTEGRATION,
                        "client": {"type": "whatsapp", "externalId": "31612345678"},
                    },
                },
            },
        },
        {
            "id": "ev2",
            "createdAt": "2026-12-01T10:00:02.000Z",
            "type": "conversation:message",
            "payload": {
                "conversation": {"id": "c0nv"},
                "message": {
                    "id": "msg-business",
                    "author": {"type": "business", "displayName": "Acme"},
                    "content": {"type": "text", "text": "Thanks!"},
                },
            },
        },
        {
            "id": "ev3",
            "createdAt": "2026-12-01T10:05:00.000Z",
            "type": "conversation:message:delivery:user",
            "payload": {
                "conversation": {"id": "c0nv"},
                "user": {"id": "u1"},
                "destination": {"type": "whatsapp", "integrationId": INTEGRATION},
                "message": {"id": "msg-out-1"},
                "isFinalEvent": False,
            },
        },
        {
            "id": "ev4",
            "createdAt": "2026-12-01T10:06:00.000Z",
            "type": "conversation:message:delivery:failure",
            "payload": {
                "conversation": {"id": "c0nv"},
                "message": {"id": "msg-out-2"},
                "error": {"code": "blocked", "message": "The user blocked the business"},
                "isFinalEvent": True,
            },
        },
    ],
}


def request(key: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    return WebhookRequest(
        "POST",
        "https://hooks.example.com/webhooks/zendesk",
        headers,
        {},
        json.dumps(PAYLOAD).encode(),
    )


def test_verify_compares_the_api_key() -> None:
    make().verify(request(SUNSHINE_WEBHOOK_SECRET))
    with pytest.raises(SignatureError) as bad:
        make().verify(request("wrong"))
    assert bad.value.status == 403
    assert SUNSHINE_WEBHOOK_SECRET not in str(bad.value)
    with pytest.raises(SignatureError) as missing:
        make().verify(request(None))
    assert missing.value.status == 401


def test_parse_user_messages_and_delivery_events_only() -> None:
    inbound, delivered, failed = make().parse(request(SUNSHINE_WEBHOOK_SECRET))
    assert inbound == InboundMessage(
        channel="zendesk",
        address="+31612345678",
        text="8",
        external_id="msg-user-1",
        received_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        profile_name="Anna",
    )
    assert isinstance(delivered, StatusEvent) and isinstance(failed, StatusEvent)
    assert (delivered.provider_message_id, delivered.status) == ("msg-out-1", "delivered")
    assert (failed.status, failed.error_code) == ("failed", "blocked")
