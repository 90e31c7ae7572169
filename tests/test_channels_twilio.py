"""The twilio provider against a loopback Messages API, and its webhooks."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from outreach import clock
from outreach.channels import build_provider
from outreach.channels.base import InboundMessage, OutboundMessage, StatusEvent, WebhookRequest
from outreach.channels.twilio import TwilioProvider
from outreach.errors import ConfigError, ProviderError, SignatureError
from tests.servers.fixtures import (
    TWILIO_SID,
    TWILIO_TOKEN,
    assert_no_secret,
    channel_config,
    context,
)
from tests.servers.fixtures import twilio_server as twilio_server
from tests.servers.twilio import TwilioEmulator

SENDER = "+3197010000000"


def make(server: TwilioEmulator, **settings: object) -> TwilioProvider:
    values: dict[str, object] = {
        "account_sid": TWILIO_SID,
        "auth_token_env": "TWILIO_AUTH_TOKEN",
        "from": SENDER,
        "base_url": server.url,
    }
    values.update(settings)
    return TwilioProvider(channel_config("twilio", values, timeout=0.5), context())


def message(n: int = 1, **fields: object) -> OutboundMessage:
    values: dict[str, object] = {
        "delivery_id": f"d{n}",
        "channel": "sms",
        "customer_id": "c1",
        "to": "+31612345678",
        "body": "Hoe tevreden bent u? Antwoord 0-10",
    }
    values.update(fields)
    return OutboundMessage(**values)  # type: ignore[arg-type]


def send(provider: TwilioProvider, *messages: OutboundMessage) -> list[object]:
    async def run() -> list[object]:
        try:
            return list(await asyncio.gather(*(provider.send(m) for m in messages)))
        finally:
            await provider.aclose()

    return asyncio.run(run())


def send_error(provider: TwilioProvider, msg: OutboundMessage | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        send(provider, msg or message())
    return info.value


def test_send_posts_form_with_basic_auth_and_returns_the_sid(
    twilio_server: TwilioEmulator,
) -> None:
    [result] = send(
        make(twilio_server),
        message(status_callback="https://hooks.example.com/webhooks/sms"),
    )
    [request] = twilio_server.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert request.form() == {
        "To": "+31612345678",
        "From": SENDER,
        "Body": "Hoe tevreden bent u? Antwoord 0-10",
        "StatusCallback": "https://hooks.example.com/webhooks/sms",
    }
    sid = result.provider_message_id  # type: ignore[attr-defined]
    assert sid.startswith("SM") and len(sid) == 34


def test_whatsapp_setting_addresses_both_ends_as_whatsapp(twilio_server: TwilioEmulator) -> None:
    send(make(twilio_server, whatsapp=True), message())
    form = twilio_server.requests[0].form()
    assert form["To"] == "whatsapp:+31612345678"
    assert form["From"] == f"whatsapp:{SENDER}"
    assert "StatusCallback" not in form


def test_messaging_service_replaces_from(twilio_server: TwilioEmulator) -> None:
    provider = make(twilio_server, messaging_service_sid="MG" + "a" * 32)
    provider.sender = None
    send(provider, message())
    form = twilio_server.requests[0].form()
    assert form["MessagingServiceSid"] == "MG" + "a" * 32 and "From" not in form


FAULTS = [
    ("429", True, "20429", None),
    ("429-retry-after", True, "20429", 7.0),
    ("500", True, "20500", None),
    ("502", True, "502", None),
    ("503", True, "20500", None),
    ("html", False, "bad_response", None),
    ("malformed", False, "bad_response", None),
    ("error-body", False, "21211", None),
    ("reject", False, "21211", None),
    ("reset", True, "connection", None),
    ("hang", True, "timeout", None),
]


@pytest.mark.parametrize(("fault", "retryable", "code", "retry_after"), FAULTS)
def test_each_fault_maps_to_a_provider_error(
    twilio_server: TwilioEmulator,
    fault: str,
    retryable: bool,
    code: str,
    retry_after: float | None,
) -> None:
    twilio_server.fail(fault)
    error = send_error(make(twilio_server))
    assert (error.retryable, error.code, error.retry_after) == (retryable, code, retry_after)
    assert_no_secret(str(error))


def test_retry_after_as_http_date_is_seconds_from_now(twilio_server: TwilioEmulator) -> None:
    clock.set_now(datetime(2038, 12, 31, 23, 59, 0, tzinfo=UTC))
    twilio_server.fail("429-date")
    error = send_error(make(twilio_server))
    assert error.retryable and error.retry_after == 59.0


def test_invalid_number_is_permanent_with_twilios_code(twilio_server: TwilioEmulator) -> None:
    error = send_error(make(twilio_server), message(to="0612"))
    assert not error.retryable and error.code == "21211"
    assert "0612" in str(error)


def test_wrong_token_is_permanent_and_never_shows_the_token(
    twilio_server: TwilioEmulator,
) -> None:
    twilio_server.auth_token = "the-real-one-differs"
    error = send_error(make(twilio_server))
    assert not error.retryable and error.code == "20003"
    assert_no_secret(str(error))
    assert_no_secret(repr(error.args))


def test_connection_refused_is_retryable_without_url_or_token() -> None:
    server = TwilioEmulator(TWILIO_SID, TWILIO_TOKEN)
    server.start()
    server.stop()
    error = send_error(make(server))
    assert error.retryable and error.code == "connection"
    assert "127.0.0.1" not in str(error)
    assert_no_secret(str(error))


def test_sequential_sends_reuse_one_keep_alive_connection(twilio_server: TwilioEmulator) -> None:
    provider = make(twilio_server)

    async def run() -> None:
        for n in range(25):
            await provider.send(message(n))
        await provider.aclose()

    asyncio.run(run())
    assert len(twilio_server.requests) == 25
    assert twilio_server.connections == 1


def test_concurrent_sends_stay_within_the_channels_concurrency(
    twilio_server: TwilioEmulator,
) -> None:
    provider = TwilioProvider(
        channel_config(
            "twilio",
            {
                "account_sid": TWILIO_SID,
                "auth_token_env": "TWILIO_AUTH_TOKEN",
                "from": SENDER,
                "base_url": twilio_server.url,
            },
            concurrency=16,
        ),
        context(),
    )
    results = send(provider, *(message(n) for n in range(200)))
    assert len({r.provider_message_id for r in results}) == 200  # type: ignore[attr-defined]
    assert twilio_server.connections <= 16


def test_empty_secret_variable_is_a_config_error_naming_the_variable() -> None:
    channel = channel_config(
        "twilio",
        {"account_sid": TWILIO_SID, "auth_token_env": "TWILIO_AUTH_TOKEN", "from": SENDER},
    )
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        build_provider(channel, context({"TWILIO_AUTH_TOKEN": ""}))


def test_from_or_messaging_service_is_required() -> None:
    channel = channel_config(
        "twilio", {"account_sid": TWILIO_SID, "auth_token_env": "TWILIO_AUTH_TOKEN"}
    )
    with pytest.raises(ConfigError, match="messaging_service_sid"):
        build_provider(channel, context())


# -- webhooks -----------------------------------------------------------------------

URL = "https://hooks.example.com/webhooks/sms?channel=sms"
INBOUND = {
    "ToCountry": "NL",
    "SmsMessageSid": "SM" + "1" * 32,
    "NumMedia": "0",
    "SmsSid": "SM" + "1" * 32,
    "SmsStatus": "received",
    "Body": "9",
    "To": SENDER,
    "NumSegments": "1",
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": TWILIO_SID,
    "From": "+31612345678",
    "ApiVersion": "2010-04-01",
}


def webhook(params: dict[str, str], signature: str | None, url: str = URL) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    return WebhookRequest("POST", url, headers, {}, urlencode(params).encode())


def provider() -> TwilioProvider:
    channel = channel_config(
        "twilio",
        {"account_sid": TWILIO_SID, "auth_token_env": "TWILIO_AUTH_TOKEN", "from": SENDER},
        name="sms",
    )
    return TwilioProvider(channel, context())


def test_verify_accepts_the_signature_twilio_computes() -> None:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(URL, INBOUND)
    provider().verify(webhook(INBOUND, signature))


def test_verify_accepts_a_signature_over_the_url_with_its_default_port() -> None:
    with_port = "https://hooks.example.com:443/webhooks/sms?channel=sms"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(with_port, INBOUND)
    provider().verify(webhook(INBOUND, signature))


def test_verify_rejects_a_tampered_body_with_403() -> None:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(URL, INBOUND)
    with pytest.raises(SignatureError) as info:
        provider().verify(webhook({**INBOUND, "Body": "0"}, signature))
    assert info.value.status == 403


def test_verify_rejects_a_signature_for_another_url() -> None:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        "http://127.0.0.1:8787/webhooks/sms?channel=sms", INBOUND
    )
    with pytest.raises(SignatureError):
        provider().verify(webhook(INBOUND, signature))


def test_verify_rejects_another_accounts_token() -> None:
    signature = RequestValidator("someone-elses-token").compute_signature(URL, INBOUND)
    with pytest.raises(SignatureError) as info:
        provider().verify(webhook(INBOUND, signature))
    assert TWILIO_TOKEN not in str(info.value)


def test_verify_without_signature_is_401() -> None:
    with pytest.raises(SignatureError) as info:
        provider().verify(webhook(INBOUND, None))
    assert info.value.status == 401


def test_verify_json_body_checks_body_sha256() -> None:
    body = b'{"MessageSid": "SM1"}'
    url = f"https://hooks.example.com/webhooks/sms?bodySHA256={hashlib.sha256(body).hexdigest()}"
    validator = RequestValidator(TWILIO_TOKEN)
    signature = validator.compute_signature(url, {})
    good = WebhookRequest("POST", url, {"x-twilio-signature": signature}, {}, body)
    provider().verify(good)
    assert validator.validate(url, body.decode(), signature)
    bad = WebhookRequest("POST", url, {"x-twilio-signature": signature}, {}, body + b" ")
    with pytest.raises(SignatureError):
        provider().verify(bad)


def test_parse_inbound_sms() -> None:
    clock.set_now(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    [event] = provider().parse(webhook(INBOUND, None))
    assert event == InboundMessage(
        channel="sms",
        address="+31612345678",
        text="9",
        external_id="SM" + "1" * 32,
        received_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )


def test_parse_inbound_whatsapp_strips_prefix_and_keeps_profile_name() -> None:
    params = {
        **INBOUND,
        "From": "whatsapp:+31612345678",
        "To": f"whatsapp:{SENDER}",
        "ProfileName": "Anna",
        "WaId": "31612345678",
        "Body": "STOP",
    }
    [event] = provider().parse(webhook(params, None))
    assert isinstance(event, InboundMessage)
    assert (event.address, event.text, event.profile_name) == ("+31612345678", "STOP", "Anna")


@pytest.mark.parametrize(
    ("twilio_status", "status"),
    [
        ("queued", "queued"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("undelivered", "failed"),
        ("failed", "failed"),
        ("read", "read"),
    ],
)
def test_parse_status_callback(twilio_status: str, status: str) -> None:
    params = {
        "MessageSid": "SM" + "2" * 32,
        "SmsSid": "SM" + "2" * 32,
        "MessageStatus": twilio_status,
        "SmsStatus": twilio_status,
        "To": "+31612345678",
        "From": SENDER,
        "AccountSid": TWILIO_SID,
        "ApiVersion": "2010-04-01",
    }
    if status == "failed":
        params["ErrorCode"] = "30003"
    [event] = provider().parse(webhook(params, None))
    assert isinstance(event, StatusEvent)
    assert (event.provider_message_id, event.status) == ("SM" + "2" * 32, status)
    assert event.error_code == ("30003" if status == "failed" else None)
