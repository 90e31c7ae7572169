"""The provider interface: base-class defaults, the registry as the one list of names."""

from __future__ import annotations

import asyncio
import io
import json
import tokenize
from pathlib import Path
from typing import ClassVar

import pytest

import outreach
from outreach.channels import REGISTRY, address_kind, medium, provider_class
from outreach.channels.base import (
    InboundMessage,
    OutboundMessage,
    Provider,
    ProviderContext,
    SendResult,
    WebhookRequest,
)
from outreach.cli.conversations import IngestFormat
from outreach.config import ChannelConfig, load_config
from outreach.errors import ConfigError, SignatureError
from tests.conftest import Cli

PACKAGE = Path(outreach.__file__).parent


class _Minimal(Provider):
    """A provider that declares only its name and how it sends."""

    name: ClassVar[str] = "minimal"

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=f"m:{message.delivery_id}")


def _request(method: str = "POST", body: bytes = b"{}") -> WebhookRequest:
    return WebhookRequest(
        method=method, url="https://example.com/webhooks/x", headers={}, query={}, body=body
    )


def test_a_provider_declares_only_what_differs_from_the_defaults() -> None:
    channel = ChannelConfig(name="x", provider="minimal", settings={})
    provider = _Minimal(channel, ProviderContext(workspace_root=".", env={}))
    assert (
        provider.address_kind,
        provider.idempotent,
        provider.service_window,
        provider.local,
        provider.receives_webhooks,
    ) == ("phone", False, False, False, False)
    message = OutboundMessage(delivery_id="d1", channel="x", customer_id="c", to="+31", body="b")
    assert asyncio.run(provider.send(message)).provider_message_id == "m:d1"
    with pytest.raises(SignatureError) as refused:
        provider.verify(_request())
    assert refused.value.status == 404 and "receives no webhooks" in str(refused.value)
    assert provider.parse(_request()) == []
    assert provider.handshake(_request("GET", b"")) is None
    answer = provider.webhook_response({"messages": 1, "stored": 1})
    assert (answer.status, answer.media_type) == (200, "application/json")
    assert json.loads(answer.body) == {"messages": 1, "stored": 1}
    assert asyncio.run(provider.aclose()) is None


def test_the_registry_is_the_one_list_of_provider_names(ws: Path) -> None:
    with (ws / "outreach.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[channels.fax]\nprovider = "fax"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(ws)
    assert str(refused.value).endswith(
        f'provider: "fax" is not a provider; use one of {", ".join(REGISTRY)}'
    )
    assert [f.value for f in IngestFormat] == ["jsonl", *REGISTRY, "eml", "mbox", "maildir"]
    for name in REGISTRY:
        assert provider_class(name).name == name


def test_no_provider_name_is_written_outside_channels() -> None:
    """Nothing outside ``channels/`` asks for a provider by name: string literals only
    (comments, help text and docstrings may still mention a provider)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "channels":
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text("utf-8")).readline)
        for token in tokens:
            if token.type == tokenize.STRING and token.string.strip("\"'") in REGISTRY:
                found.append(f"{path.relative_to(PACKAGE)}:{token.start[0]} {token.string}")
    assert found == []


# one inbound "hi" in each webhook provider's own format
SAMPLES = {
    "twilio": b"From=%2B31612345601&Body=hi&MessageSid=SM1",
    "whatsapp-cloud": json.dumps(
        {
            "entry": [
                {
                    "changes": [
                        {
                            "value": {
                                "messages": [
                                    {
                                        "from": "31612345601",
                                        "id": "wamid.1",
                                        "timestamp": "1764583200",
                                        "type": "text",
                                        "text": {"body": "hi"},
                                    }
                                ]
                            }
                        }
                    ]
                }
            ]
        }
    ).encode(),
    "sunshine": json.dumps(
        {
            "events": [
                {
                    "type": "conversation:message",
                    "createdAt": "2026-12-01T09:00:00Z",
                    "payload": {
                        "message": {
                            "id": "m1",
                            "author": {"type": "user"},
                            "content": {"type": "text", "text": "hi"},
                            "source": {"type": "whatsapp", "client": {"externalId": "31612345601"}},
                            "received": "2026-12-01T09:00:00Z",
                        }
                    },
                }
            ]
        }
    ).encode(),
    "webhook": json.dumps({"from": "anna", "text": "hi", "id": "h1"}).encode(),
}


def test_every_webhook_provider_has_a_sample() -> None:
    assert set(SAMPLES) == {n for n in REGISTRY if provider_class(n).receives_webhooks}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_provider_built_for_parsing_needs_no_settings_or_secrets(name: str) -> None:
    parser = provider_class(name).for_parsing(ChannelConfig(name="in", provider=name, settings={}))
    [event] = parser.parse(_request(body=SAMPLES[name]))
    assert isinstance(event, InboundMessage)
    assert (event.channel, event.text) == ("in", "hi")


def test_the_address_kind_and_medium_come_from_the_provider() -> None:
    def channel(name: str, provider: str, **settings: object) -> ChannelConfig:
        return ChannelConfig(name=name, provider=provider, settings=settings)

    assert address_kind(channel("mail", "outbox")) == "email"
    assert address_kind(channel("sms", "outbox")) == "phone"
    assert address_kind(channel("sms", "outbox", address="user")) == "user"
    assert address_kind(channel("hook", "webhook")) == "id"
    assert [
        medium(channel("whatsapp", "outbox")),
        medium(channel("mail", "outbox")),
        medium(channel("sms", "outbox")),
        medium(channel("wa", "whatsapp-cloud")),
        medium(channel("wa", "twilio", whatsapp=True)),
        medium(channel("sms", "twilio")),
        medium(channel("hook", "webhook")),
    ] == ["whatsapp", "email", "sms", "whatsapp", "whatsapp", "sms", "other"]


def test_ingest_refuses_the_format_of_a_provider_without_webhooks(cli: Cli, ws: Path) -> None:
    (ws / "in.jsonl").write_text('{"x": 1}\n')
    result = cli(
        "replies", "ingest", "--format", "smtp", "--channel", "email", str(ws / "in.jsonl")
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --format smtp: that provider receives no webhooks, so there are no payloads "
        "of its own to read; use --format jsonl, or eml, mbox or maildir for emails"
    ]
