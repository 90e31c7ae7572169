"""RFC 5322 building shared by the smtp and outbox providers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach import clock
from outreach.channels.base import OutboundMessage, ProviderContext
from outreach.channels.mime import domain_of, plus_address, render_email
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
    parsed = message_from_bytes(
        render_email(message(), sender="Acme <hello@acme.example>"), policy=policy.default
    )
    assert parsed["Date"] == "Tue, 01 Dec 2026 09:30:00 +0000"
    assert parsed["Message-ID"] == "<01JDX@acme.example>"
    assert parsed["Reply-To"] is None
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().strip() == "Tekst met é"


def test_each_second_has_its_own_date() -> None:
    """The Date header is formatted once per second: the next second gets its own."""
    dates = []
    for second in (0.25, 0.75, 1.5, 0.5):
        clock.set_now(datetime(2026, 12, 1, 9, 30, tzinfo=UTC) + timedelta(seconds=second))
        parsed = message_from_bytes(render_email(message(), sender="hello@acme.example"))
        dates.append(parsed["Date"])
    clock.set_now(None)
    assert dates == [
        "Tue, 01 Dec 2026 09:30:00 +0000",
        "Tue, 01 Dec 2026 09:30:00 +0000",
        "Tue, 01 Dec 2026 09:30:01 +0000",
        "Tue, 01 Dec 2026 09:30:00 +0000",
    ]


def test_non_ascii_headers_and_bodies_survive_the_wire() -> None:
    msg = message(
        subject="Zou je Acme aanbevelen? ✓ " * 4,
        customer_name="Zoë Ó Briain",
        html="<p>Hallo é 🙏</p>",
    )
    raw = render_email(msg, sender="Açme <hello@acme.example>")
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Zou je Acme aanbevelen? ✓ " * 4
    assert parsed["To"].addresses[0].display_name == "Zoë Ó Briain"
    assert parsed["From"].addresses[0].display_name == "Açme"
    html = parsed.get_body(("html",))
    assert html is not None
    assert html.get_content().strip() == "<p>Hallo é 🙏</p>"


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


# typed: through hypothesis's decorators mypy infers a bare ("Cs",) as tuple[str]
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
# Any text a template or a customer record can produce: every plane, line breaks of all
# kinds, "From " and "." at line starts, long lines, quoted-printable's own "=", lines of
# 998 octets (the most that may go unencoded) and of 999, in characters of 2 and 3 octets.
_TEXT = st.text(
    st.characters(blacklist_categories=_SURROGATES, blacklist_characters="\x00"), max_size=300
) | st.sampled_from(
    [
        "From me\n.\n=_x",
        "a" * 2000,
        "é" * 500 + "\r\n" + " " * 80,
        "",
        "ü" * 499 + "\n" + "a" * 998,
        "x\n" + "€" * 333,
    ]
)
_LINE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=200
)


@settings(max_examples=200, deadline=None)
@given(
    subject=_LINE,
    body=_TEXT,
    html=st.none() | _TEXT.filter(bool),
    name=st.none() | _LINE,
    # a configured sender name: words (the config refuses an address there)
    sender_name=st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=30),
    eight_bit=st.booleans(),
)
def test_any_text_comes_back_from_the_wire_as_it_went_in(
    subject: str,
    body: str,
    html: str | None,
    name: str | None,
    sender_name: str,
    eight_bit: bool,
) -> None:
    """The bytes written by hand parse back, with the email package, to the same message,
    for a server with 8BITMIME (8-bit parts where they fit) as for one without (ASCII)."""
    clock.set_now(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    msg = message(
        subject=subject,
        body=body,
        html=html,
        customer_name=name,
        reply_token="tok",
        unsubscribe_url="https://x.example/u/1",
    )
    raw = render_email(msg, sender=f"{sender_name} <hello@acme.example>", eight_bit=eight_bit)
    assert raw.isascii() or eight_bit
    assert all(len(line) <= 998 for line in raw.split(b"\n"))
    assert b"\0" not in raw
    parsed = message_from_bytes(raw, policy=policy.default)
    assert not parsed.defects
    assert " ".join(parsed["Subject"].split()) == " ".join(subject.split())
    assert parsed["To"].addresses[0].addr_spec == "anna@example.nl"
    if name is not None:
        assert " ".join(parsed["To"].addresses[0].display_name.split()) == " ".join(name.split())
    assert parsed["From"].addresses[0].addr_spec == "hello@acme.example"
    assert parsed["Reply-To"] == "hello+tok@acme.example"
    assert parsed["List-Unsubscribe"] == "<https://x.example/u/1>"
    assert parsed["Date"] == "Tue, 01 Dec 2026 09:30:00 +0000"

    def lf(text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text if text.endswith("\n") else text + "\n"

    def unencoded(text: str) -> str:
        """The transfer encoding a text part must have: none where it may go as it is."""
        fits = all(len(line) <= 998 for line in lf(text).encode().split(b"\n"))
        if not fits or "\0" in text:
            return "quoted-printable"
        if text.isascii():
            return "7bit"
        return "8bit" if eight_bit else "quoted-printable"

    text = parsed.get_body(("plain",))
    assert text is not None and text.get_content() == lf(body)
    assert text["Content-Transfer-Encoding"] == unencoded(body)
    if html is None:
        assert parsed.get_content_type() == "text/plain"
    else:
        assert parsed.get_content_type() == "multipart/alternative"
        part = parsed.get_body(("html",))
        assert part is not None and part.get_content() == lf(html)
        assert part["Content-Transfer-Encoding"] == unencoded(html)


@pytest.mark.parametrize("eight_bit", [False, True])
def test_a_nul_is_never_sent_unencoded(eight_bit: bool) -> None:
    """No transfer encoding but quoted-printable may carry a NUL (RFC 2045 2.7, 2.8)."""
    raw = render_email(
        message(body="a\0b é", html="<p>\0</p>"), sender="hello@acme.example", eight_bit=eight_bit
    )
    assert b"\0" not in raw
    parsed = message_from_bytes(raw, policy=policy.default)
    for subtype, text in (("plain", "a\0b é\n"), ("html", "<p>\0</p>\n")):
        part = parsed.get_body((subtype,))
        assert part is not None and part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content() == text


def test_the_outbox_writes_ascii_parts_as_they_are_and_the_rest_quoted_printable(
    tmp_path: Path,
) -> None:
    """The outbox's .eml files stay ASCII whatever the text: an ASCII part needs no
    encoding (7bit), a non-ASCII one is quoted-printable, as no 8BITMIME server carries
    it; a reader parses both back."""
    provider = OutboxProvider(
        ChannelConfig("email", "outbox", {}), ProviderContext(str(tmp_path), {}, sender_name="Acme")
    )
    html = '<p style="color:#18181b">Hallo Zoë</p>'
    asyncio.run(provider.send(message(body="Hello Anna,\nRate us.", html=html)))
    raw = (tmp_path / "outbox" / "email" / "01JDX.eml").read_bytes()
    assert raw.isascii()
    assert b"Content-Transfer-Encoding: 7bit\n\nHello Anna,\nRate us.\n" in raw
    mail = message_from_bytes(raw, policy=policy.default)
    text, part = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text is not None and text.get_content() == "Hello Anna,\nRate us.\n"
    assert part is not None and part["Content-Transfer-Encoding"] == "quoted-printable"
    assert part.get_content() == html + "\n"


@pytest.mark.parametrize("offset", [0, 1, 2, 499, 500, 501, 998, 999, 1000, 1499])
@pytest.mark.parametrize("length", [998, 999])
def test_a_line_over_998_octets_is_found_wherever_it_starts(offset: int, length: int) -> None:
    """The longest line that may go unencoded has 998 octets, wherever in the text it is
    (the check looks at chunks of the text, not at each line)."""
    body = "a\n" * (offset // 2) + "\n" * (offset % 2) + "é" + "b" * (length - 2) + "\nend\n"
    raw = render_email(message(body=body), sender="hello@acme.example", eight_bit=True)
    part = message_from_bytes(raw, policy=policy.default)
    expected = "quoted-printable" if length > 998 else "8bit"
    assert part["Content-Transfer-Encoding"] == expected
    assert part.get_content() == body
