"""The webhook provider: Standard Webhooks signing checked by the reference library."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from outreach import clock
from outreach.channels.base import InboundMessage, OutboundMessage, WebhookRequest
from outreach.channels.webhook import WebhookProvider
from outreach.errors import ConfigError, ProviderError, SignatureError
from tests.servers.fixtures import WEBHOOK_SECRET, assert_no_secret, channel_config, context
from tests.servers.fixtures import webhook_receiver as webhook_receiver
from tests.servers.http import Reply
from tests.servers.webhook_receiver import WebhookReceiver


def make(url: str = "http://127.0.0.1:9/hooks/outreach") -> WebhookProvider:
    channel = channel_config(
        "webhook", {"url": url, "secret_env": "WEBHOOK_SECRET"}, name="crm", timeout=0.5
    )
    return WebhookProvider(channel, context())


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": "01JDELIVERY",
        "channel": "crm",
        "customer_id": "cust-42",
        "to": "cust-42",
        "body": "Hoe tevreden bent u?",
        "campaign": "nps",
        "metadata": {"occurrence": "2026-12-01"},
    }
    values.update(fields)
    return OutboundMessage(**values)


def send(provider: WebhookProvider, *messages: OutboundMessage) -> list[str | None]:
    async def run() -> list[str | None]:
        try:
            return [(await provider.send(m)).provider_message_id for m in messages]
        finally:
            await provider.aclose()

    return asyncio.run(run())


def test_post_is_signed_so_the_reference_library_verifies_it(
    webhook_receiver: WebhookReceiver,
) -> None:
    [result] = send(make(f"{webhook_receiver.url}/hooks/outreach"), message())
    [request] = webhook_receiver.requests
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "01JDELIVERY" == result
    payload = Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)
    assert payload["type"] == "message.created"
    assert payload["data"]["customer_id"] == "cust-42"
    assert payload["data"]["body"] == "Hoe tevreden bent u?"
    assert payload["data"]["metadata"] == {"occurrence": "2026-12-01"}


def test_a_retry_reuses_the_webhook_id(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail("503")
    provider = make(f"{webhook_receiver.url}/hooks/outreach")

    async def run() -> None:
        with pytest.raises(ProviderError) as info:
            await provider.send(message())
        assert info.value.retryable
        await provider.send(message())
        await provider.aclose()

    asyncio.run(run())
    first, second = webhook_receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "01JDELIVERY"
    assert first.connection == second.connection  # keep-alive across the retry


@pytest.mark.parametrize(
    ("fault", "retryable", "code"),
    [
        ("429-retry-after", True, "429"),
        ("500", True, "500"),
        ("502", True, "502"),
        ("reject", False, "invalid_customer"),
        ("reset", True, "connection"),
        ("hang", True, "timeout"),
    ],
)
def test_faults(webhook_receiver: WebhookReceiver, fault: str, retryable: bool, code: str) -> None:
    webhook_receiver.fail(fault)
    with pytest.raises(ProviderError) as info:
        send(make(f"{webhook_receiver.url}/hooks/outreach"), message())
    assert (info.value.retryable, info.value.code) == (retryable, code)
    assert_no_secret(str(info.value))


def test_any_2xx_is_success_whatever_its_body(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail("html")
    assert send(make(f"{webhook_receiver.url}/hooks/outreach"), message()) == ["01JDELIVERY"]


def test_gone_is_permanent(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail(Reply(410, b"gone", {"Content-Type": "text/plain"}))
    with pytest.raises(ProviderError) as info:
        send(make(f"{webhook_receiver.url}/hooks/outreach"), message())
    assert (info.value.retryable, info.value.code) == (False, "410")


def test_basic_auth_in_the_url_never_appears_in_errors(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail("reject")
    url = f"http://hookuser:hook-pass-9876@127.0.0.1:{webhook_receiver.port}/hooks/outreach"
    with pytest.raises(ProviderError) as info:
        send(make(url), message())
    assert "hook-pass-9876" not in str(info.value)
    assert webhook_receiver.requests[0].headers["authorization"].startswith("Basic ")


def test_a_secret_that_is_not_base64_is_a_config_error() -> None:
    channel = channel_config("webhook", {"url": "https://x.example", "secret_env": "S"})
    with pytest.raises(ConfigError) as info:
        WebhookProvider(channel, context({"S": "whsec_not base64!"}))
    assert "not base64!" not in str(info.value)


# -- inbound ------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def inbound(
    payload: Any, *, at: datetime = NOW, secret: str = WEBHOOK_SECRET, msg_id: str = "msg_1"
) -> WebhookRequest:
    body = json.dumps(payload)
    signature = Webhook(secret).sign(msg_id, at, body)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return WebhookRequest(
        "POST", "https://hooks.example.com/webhooks/crm", headers, {}, body.encode()
    )


REPLY = {"from": "cust-42", "text": "9", "id": "r1", "received_at": "2026-12-01T09:59:30Z"}


def test_verify_accepts_what_the_reference_library_signs() -> None:
    clock.set_now(NOW + timedelta(seconds=30))
    make().verify(inbound(REPLY))


def test_verify_accepts_one_of_several_signatures() -> None:
    clock.set_now(NOW)
    request = inbound(REPLY)
    headers = dict(request.headers)
    headers["webhook-signature"] = "v1,bm90LXRoaXMtb25l " + headers["webhook-signature"]
    make().verify(WebhookRequest("POST", request.url, headers, {}, request.body))


def test_verify_rejects_a_replay_older_than_five_minutes() -> None:
    clock.set_now(NOW + timedelta(minutes=5, seconds=1))
    with pytest.raises(SignatureError) as info:
        make().verify(inbound(REPLY))
    assert info.value.status == 403


def test_verify_rejects_a_timestamp_from_the_future() -> None:
    clock.set_now(NOW - timedelta(minutes=6))
    with pytest.raises(SignatureError):
        make().verify(inbound(REPLY))


def test_verify_rejects_another_secret_and_a_changed_body() -> None:
    clock.set_now(NOW)
    other = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with pytest.raises(SignatureError) as info:
        make().verify(inbound(REPLY, secret=other))
    assert info.value.status == 403
    request = inbound(REPLY)
    changed = WebhookRequest(
        "POST", request.url, request.headers, {}, request.body.replace(b'"9"', b'"0"')
    )
    with pytest.raises(SignatureError):
        make().verify(changed)


def test_verify_without_headers_is_401() -> None:
    request = inbound(REPLY)
    with pytest.raises(SignatureError) as info:
        make().verify(WebhookRequest("POST", request.url, {}, {}, request.body))
    assert info.value.status == 401


def test_what_we_sign_the_reference_verifies_and_vice_versa() -> None:
    provider = make()
    body, headers = provider.signed_request(message())
    Webhook(WEBHOOK_SECRET).verify(body, headers)
    clock.set_now(datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC))
    provider.verify(WebhookRequest("POST", "https://x/", headers, {}, body))


def test_parse_one_reply() -> None:
    [event] = make().parse(inbound(REPLY))
    assert event == InboundMessage(
        channel="crm",
        address="cust-42",
        text="9",
        external_id="r1",
        received_at=datetime(2026, 12, 1, 9, 59, 30, tzinfo=UTC),
    )


def test_parse_a_list_and_use_the_webhook_id_for_replies_without_id() -> None:
    clock.set_now(NOW)
    events = make().parse(
        inbound([{"from": "a", "text": "STOP"}, {"from": "b", "text": "ok", "id": "x"}, {}])
    )
    # in a list, a message without an id gets the request's webhook-id and its position:
    # the same request retried gives the same ids, so it is stored once
    assert [(e.address, e.external_id) for e in events] == [  # type: ignore[union-attr]
        ("a", "msg_1#0"),
        ("b", "x"),
    ]
    [single] = make().parse(inbound({"from": "a", "text": "hi"}, msg_id="msg_77"))
    assert isinstance(single, InboundMessage)
    assert single.external_id == "msg_77" and single.received_at == NOW
