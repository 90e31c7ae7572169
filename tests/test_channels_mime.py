"""RFC 5322 building shared by the smtp and outbox providers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from outreach import clock
from outreach.channels.base import OutboundMessage, ProviderContext
from outreach.channels.mime import build_email, domain_of, email_bytes, plus_address
from outreach.channels.outbox import OutboxProvider
from outreach.config import ChannelConfig
from outreach.errors import ConfigError


def message(**fields: object) -> OutboundMessage:
    values: dict[str, object] = {
        "delivery_id": "01JDX",
        "channel": "email",
        "customer_id": "c1",
        "to": "anna@example.nl",
        "subject": "Hallo",
        "body": "Tekst met é",
    }
    values.update(fields)
    return OutboundMessage(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "token", "expected"),
    [
        ("replies@acme.example", "t1", "replies+t1@acme.example"),
        ("Acme <hello@acme.example>", "t2", "hello+t2@acme.example"),
        ("replies+old@acme.example", "t3", "replies+t3@acme.example"),
    ],
)
def test_plus_address(address: str, token: str, expected: str) -> None:
    assert plus_address(address, token) == expected


def test_domain_of_needs_an_address() -> None:
    assert domain_of("Acme <Hello@ACME.example>") == "acme.example"
    with pytest.raises(ConfigError):
        domain_of("Acme")


def test_date_comes_from_the_clock_and_message_id_from_the_delivery() -> None:
    clock.set_now(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    mail = build_email(message(), sender="Acme <hello@acme.example>")
    assert mail["Date"] == "Tue, 01 Dec 2026 09:30:00 +0000"
    assert mail["Message-ID"] == "<01JDX@acme.example>"
    assert mail["Reply-To"] is None
    parsed = message_from_bytes(email_bytes(mail), policy=policy.default)
    assert parsed.get_content().strip() == "Tekst met é"


def test_non_ascii_headers_and_bodies_survive_the_wire() -> None:
    msg = message(
        subject="Zou je Acme aanbevelen? ✓ " * 4,
        customer_name="Zoë Ó Briain",
        html="<p>Hallo é 🙏</p>",
    )
    raw = email_bytes(build_email(msg, sender="Açme <hello@acme.example>"))
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Zou je Acme aanbevelen? ✓ " * 4
    assert parsed["To"].addresses[0].display_name == "Zoë Ó Briain"
    assert parsed["From"].addresses[0].display_name == "Açme"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hallo é 🙏</p>"


def test_outbox_eml_uses_the_same_builder(tmp_path: Path) -> None:
    provider = OutboxProvider(
        ChannelConfig("email", "outbox", {}), ProviderContext(str(tmp_path), {}, sender_name="Acme")
    )
    msg = message(unsubscribe_url="https://x.example/u/1", html="<b>hi</b>", reply_token="tok")
    asyncio.run(provider.send(msg))
    raw = (tmp_path / "outbox" / "email" / "01JDX.eml").read_bytes()
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["From"] == "Acme <outbox@localhost>"
    assert mail["Message-ID"] == "<01JDX@outreach.local>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["X-Outreach-Delivery"] == "01JDX"
    assert mail.get_content_type() == "multipart/alternative"
