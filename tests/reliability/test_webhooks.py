"""Hostile webhooks against a real ``outreach serve`` process, and a fuzz of every parser.

One ``serve`` per module, on a loopback port that is also its ``[server] public_url``, with
a channel of every provider that receives webhooks. For each provider a correctly signed
request is stored (so that the refusals below mean something), and a missing signature
(401), a forged one (403) and, for Standard Webhooks, a replay outside the five-minute
tolerance (403) store nothing. Bodies over the limit get 413, with or without a
Content-Length. Hypothesis then feeds each provider's ``parse`` random bytes, JSON and
forms: only ``OutreachError``s may come out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from outreach import clock
from outreach.channels import build_provider, provider_class
from outreach.channels.base import WebhookRequest
from outreach.channels.webhook import decode_secret, sign
from outreach.config import ChannelConfig
from outreach.errors import OutreachError
from outreach.server.app import MAX_BODY_BYTES
from tests.healthz import healthz
from tests.servers.fixtures import (
    META_APP_SECRET,
    SUNSHINE_WEBHOOK_SECRET,
    TWILIO_TOKEN,
    WEBHOOK_SECRET,
    context,
)

from .channels import all_channels
from .support import free_port, make_workspace, outreach_toml, query, spawn, stop, wait_until

Signed = Callable[[bytes], dict[str, str]]


class Serve:
    def __init__(self, ws: Path, url: str, port: int) -> None:
        self.ws = ws
        self.url = url
        self.port = port

    def stored(self, channel: str | None = None) -> int:
        sql = "SELECT count(*) FROM messages WHERE direction = 'in'"
        params: tuple[str, ...] = ()
        if channel:
            sql += " AND channel = ?"
            params = (channel,)
        return int(query(self.ws, sql, params)[0][0])


@contextmanager
def _serving(ws: Path, port: int) -> Iterator[str]:
    """``outreach serve`` on ``port`` until the block ends; its stderr is returned after."""
    url = f"http://127.0.0.1:{port}"
    proc = spawn(ws, "serve", "--port", str(port), now=None)

    def healthy() -> bool:
        return healthz(url) == 200 or proc.poll() is not None

    try:
        assert wait_until(healthy, timeout=30)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield url
    finally:
        _, _, err = stop(proc, signal.SIGINT)
        _SERVE_LOGS.append(err)


_SERVE_LOGS: list[str] = []


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    toml = outreach_toml(
        all_channels(twilio=dead, meta=dead, sunshine=dead, hook=dead, smtp_port=free_port()),
        public_url=f"http://127.0.0.1:{port}",
    )
    ws = make_workspace(tmp_path_factory.mktemp("hooks") / "ws", toml, customers=3)
    with _serving(ws, port) as url:
        yield Serve(ws, url, port)
    assert "Traceback" not in _SERVE_LOGS[-1], _SERVE_LOGS[-1]


# -- one valid request per provider -----------------------------------------------------


def _twilio(url: str, n: int) -> tuple[bytes, dict[str, str]]:
    params = {
        "MessageSid": f"SM{n:032x}",
        "From": "+31610000001",
        "To": "+3197010000000",
        "Body": f"hello {n}",
        "AccountSid": "AC" + "0" * 32,
    }
    body = httpx.QueryParams(params).__str__().encode()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{url}/webhooks/sms", params)
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }


def _meta(url: str, n: int) -> tuple[bytes, dict[str, str]]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "3197010000000", "phone_number_id": "1"},
        "contacts": [{"wa_id": "31610000002", "profile": {"name": "Joost"}}],
        "messages": [
            {
                "from": "31610000002",
                "id": f"wamid.{n}",
                "timestamp": "1764000000",
                "type": "text",
                "text": {"body": f"hello {n}"},
            }
        ],
    }
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()
    mac = hmac.new(META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={mac}"}


def _sunshine(url: str, n: int) -> tuple[bytes, dict[str, str]]:
    message = {
        "id": f"sun-{n}",
        "received": "2026-11-25T10:00:00Z",
        "author": {"type": "user", "userId": "u1", "displayName": "Sanne"},
        "content": {"type": "text", "text": f"hello {n}"},
        "source": {"type": "whatsapp", "client": {"externalId": "31610000003"}},
    }
    body = json.dumps(
        {
            "events": [
                {
                    "id": f"e{n}",
                    "type": "conversation:message",
                    "createdAt": "2026-11-25T10:00:00Z",
                    "payload": {"conversation": {"id": "c1"}, "message": message},
                }
            ]
        }
    ).encode()
    return body, {"Content-Type": "application/json", "X-API-Key": SUNSHINE_WEBHOOK_SECRET}


def _hook(url: str, n: int, *, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"from": "c00001", "text": f"hello {n}", "id": f"hook-{n}"}).encode()
    stamp = int(time.time()) if at is None else at
    key = decode_secret(WEBHOOK_SECRET, where="test")
    return body, {
        "Content-Type": "application/json",
        "webhook-id": f"msg_{n}",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, f"msg_{n}", stamp, body),
    }


BUILDERS = {"sms": _twilio, "whatsapp": _meta, "chat": _sunshine, "hook": _hook}
SIGNATURE_HEADERS = {
    "sms": "X-Twilio-Signature",
    "whatsapp": "X-Hub-Signature-256",
    "chat": "X-API-Key",
    "hook": "webhook-signature",
}
_counter = iter(range(1000, 10**6))


def _post(serve: Serve, channel: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{serve.url}/webhooks/{channel}", content=body, headers=headers, timeout=10)


@pytest.mark.parametrize("channel", list(BUILDERS))
def test_a_signed_webhook_is_stored_once_even_when_delivered_twice(
    serve: Serve, channel: str
) -> None:
    before = serve.stored(channel)
    body, headers = BUILDERS[channel](serve.url, next(_counter))
    for _ in range(2):
        response = _post(serve, channel, body, headers)
        assert response.status_code == 200, response.text
    assert serve.stored(channel) == before + 1


@pytest.mark.parametrize("channel", list(BUILDERS))
def test_missing_and_forged_signatures_are_refused_and_store_nothing(
    serve: Serve, channel: str
) -> None:
    before = serve.stored()
    body, headers = BUILDERS[channel](serve.url, next(_counter))
    name = SIGNATURE_HEADERS[channel]
    missing = {k: v for k, v in headers.items() if k != name}
    assert _post(serve, channel, body, missing).status_code == 401
    forged = dict(headers)
    forged[name] = headers[name][:-6] + ("AAAAA=" if headers[name][-1] != "A" else "BBBBB=")
    assert _post(serve, channel, body, forged).status_code == 403
    if channel != "chat":  # Sunshine's X-API-Key is a shared secret, not a body signature
        tampered = body.replace(b"hello", b"HELLO")
        assert tampered != body
        assert _post(serve, channel, tampered, headers).status_code == 403
    assert serve.stored() == before


# a margin past the five minutes: the request takes a moment to arrive
@pytest.mark.parametrize("offset", [-330, -3600, 330])
def test_a_standard_webhook_outside_the_tolerance_is_refused(serve: Serve, offset: int) -> None:
    before = serve.stored()
    body, headers = _hook(serve.url, next(_counter), at=int(time.time()) + offset)
    response = _post(serve, "hook", body, headers)
    assert response.status_code == 403 and "5 minutes" in response.text
    assert serve.stored() == before


def test_a_twilio_signature_for_another_url_is_refused(serve: Serve) -> None:
    params = {"MessageSid": "SM" + "f" * 32, "From": "+31610000001", "Body": "hi"}
    body = str(httpx.QueryParams(params)).encode()
    wrong = RequestValidator(TWILIO_TOKEN).compute_signature(
        "https://attacker.example/webhooks/sms", params
    )
    response = _post(
        serve,
        "sms",
        body,
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": wrong},
    )
    assert response.status_code == 403


@pytest.mark.parametrize("channel", list(BUILDERS))
def test_an_oversize_body_gets_413_with_or_without_content_length(
    serve: Serve, channel: str
) -> None:
    before = serve.stored()
    big = b"x" * (MAX_BODY_BYTES + 1)
    _, headers = BUILDERS[channel](serve.url, next(_counter))
    assert _post(serve, channel, big, headers).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"y" * 65536

    response = httpx.post(
        f"{serve.url}/webhooks/{channel}", content=chunks(), headers=headers, timeout=10
    )
    assert response.status_code == 413
    assert serve.stored() == before


def test_deeply_nested_json_with_a_valid_signature_is_a_client_error(serve: Serve) -> None:
    """A signed body of 100,000 brackets is answered 400, never 500 (a provider would
    retry a 500 forever)."""
    body = b"[" * 100_000
    stamp = int(time.time())
    key = decode_secret(WEBHOOK_SECRET, where="test")
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_deep",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, "msg_deep", stamp, body),
    }
    before = serve.stored()
    response = _post(serve, "hook", body, headers)
    assert response.status_code == 400, response.text
    assert httpx.get(f"{serve.url}/healthz", timeout=5).status_code == 200
    assert serve.stored() == before  # (the module's teardown also checks for tracebacks)


# -- fuzzing each provider's parse ------------------------------------------------------

PROVIDER_SETTINGS: dict[str, tuple[str, dict[str, object]]] = {
    "sms": (
        "twilio",
        {
            "account_sid": "AC" + "0" * 32,
            "auth_token_env": "TWILIO_AUTH_TOKEN",
            "from": "+3197010000000",
        },
    ),
    "whatsapp": (
        "whatsapp-cloud",
        {
            "phone_number_id": "1",
            "access_token_env": "WHATSAPP_TOKEN",
            "app_secret_env": "WHATSAPP_APP_SECRET",
        },
    ),
    "chat": (
        "sunshine",
        {
            "app_id": "5963c0d619a30a2e00de36b8",
            "key_id": "app_1",
            "key_secret_env": "SUNSHINE_KEY_SECRET",
            "webhook_secret_env": "SUNSHINE_WEBHOOK_SECRET",
            "integration_id": "i1",
        },
    ),
    "hook": ("webhook", {"url": "http://127.0.0.1:9/x", "secret_env": "WEBHOOK_SECRET"}),
}
PROVIDERS = {
    name: build_provider(ChannelConfig(name=name, provider=p, settings=s), context())
    for name, (p, s) in PROVIDER_SETTINGS.items()
}

# the same providers built only to parse (replies ingest): no settings, no secrets
PARSERS = {
    name: provider_class(p).for_parsing(ChannelConfig(name=name, provider=p, settings={}))
    for name, (p, _) in PROVIDER_SETTINGS.items()
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "entry",
                    "changes",
                    "value",
                    "messages",
                    "contacts",
                    "profile",
                    "statuses",
                    "errors",
                    "error_data",
                    "events",
                    "payload",
                    "message",
                    "author",
                    "content",
                    "source",
                    "client",
                    "user",
                    "type",
                    "from",
                    "id",
                    "text",
                    "timestamp",
                    "wa_id",
                    "name",
                    "body",
                    "status",
                    "createdAt",
                    "received",
                    "context",
                    "code",
                    "title",
                    "caption",
                    "interactive",
                    "button",
                    "button_reply",
                    "externalId",
                    "userId",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)
forms = st.dictionaries(
    st.sampled_from(
        [
            "Body",
            "From",
            "To",
            "MessageSid",
            "SmsSid",
            "MessageStatus",
            "SmsStatus",
            "ErrorCode",
            "ErrorMessage",
            "ProfileName",
        ]
    )
    | st.text(),
    st.text(),
    max_size=6,
).map(lambda d: str(httpx.QueryParams(d)).encode())


def _fields(*names: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of the fields a parser reads, each holding anything."""
    words = st.sampled_from(
        [
            "text",
            "button",
            "interactive",
            "reaction",
            "image",
            "user",
            "whatsapp",
            "sent",
            "failed",
            "31610000002",
            "2026-11-25",
        ]
    )
    return st.dictionaries(st.sampled_from(names), words | json_values, max_size=len(names))


# shaped like each provider's payload so that the fuzz reaches the deep branches
meta_shaped = st.fixed_dictionaries(
    {
        "entry": st.lists(
            st.fixed_dictionaries(
                {
                    "changes": st.lists(
                        st.fixed_dictionaries(
                            {
                                "value": st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "contacts": st.lists(
                                            _fields("wa_id", "profile"), max_size=2
                                        ),
                                        "messages": st.lists(
                                            _fields(
                                                "from",
                                                "id",
                                                "timestamp",
                                                "type",
                                                "text",
                                                "interactive",
                                                "button",
                                                "context",
                                                "image",
                                            ),
                                            max_size=2,
                                        ),
                                        "statuses": st.lists(
                                            _fields("id", "status", "timestamp", "errors"),
                                            max_size=2,
                                        ),
                                    },
                                )
                            }
                        ),
                        max_size=2,
                    )
                }
            ),
            max_size=2,
        )
    }
)
sunshine_shaped = st.fixed_dictionaries(
    {
        "events": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(
                        [
                            "conversation:message",
                            "conversation:message:delivery:user",
                            "conversation:message:delivery:failure",
                            "other",
                        ]
                    ),
                    "createdAt": json_values,
                    "payload": st.fixed_dictionaries(
                        {"message": _fields("id", "author", "content", "source", "received")}
                    ),
                }
            ),
            max_size=3,
        )
    }
)
hook_shaped = st.lists(_fields("from", "text", "id", "name", "received_at"), max_size=3)
shaped = st.one_of(meta_shaped, sunshine_shaped, hook_shaped, json_values)
bodies = st.one_of(st.binary(max_size=300), shaped.map(lambda v: json.dumps(v).encode()), forms)


def _parse(channel: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    request = WebhookRequest(
        method="POST",
        url=f"https://hooks.example/webhooks/{channel}",
        headers=headers or {},
        query={},
        body=body,
    )
    return PROVIDERS[channel].parse(request)


def test_whatsapp_parse_survives_a_profile_that_is_not_an_object() -> None:
    value = {
        "contacts": [{"wa_id": "31610000002", "profile": "Joost"}],
        "messages": [
            {"from": "31610000002", "id": "wamid.1", "type": "text", "text": {"body": "hi"}}
        ],
    }
    body = json.dumps({"entry": [{"changes": [{"value": value}]}]}).encode()
    [message] = _parse("whatsapp", body)
    assert message.text == "hi"


@pytest.mark.parametrize("channel", ["whatsapp", "chat", "hook"])
@pytest.mark.parametrize("body", [b"[" * 100_000, b"1" * 5000], ids=["deep", "bigint"])
def test_json_parsers_refuse_pathological_json_with_an_outreach_error(
    channel: str, body: bytes
) -> None:
    with suppress(OutreachError):
        _parse(channel, body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channel=st.sampled_from(list(PROVIDERS)),
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "content-type", "x-api-key"]),
        st.text(max_size=10),
        max_size=2,
    ),
)
def test_fuzz_parse_raises_nothing_but_outreach_errors(
    channel: str, body: bytes, headers: dict[str, str]
) -> None:
    # the point: nothing but an OutreachError may escape a provider's parser
    with suppress(OutreachError):
        _parse(channel, body, headers)


def _outcome(parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except OutreachError as exc:
        return type(exc), str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channel=st.sampled_from(list(PROVIDERS)), body=bodies)
def test_fuzz_a_provider_built_only_to_parse_reads_what_the_configured_one_reads(
    channel: str, body: bytes
) -> None:
    request = WebhookRequest(
        method="POST",
        url=f"https://hooks.example/webhooks/{channel}",
        headers={},
        query={},
        body=body,
    )
    clock.set_now("2026-12-01T09:00:00Z")  # parsers stamp some events with now (reset after)
    assert _outcome(lambda: PARSERS[channel].parse(request)) == _outcome(
        lambda: PROVIDERS[channel].parse(request)
    )
