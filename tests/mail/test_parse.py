"""Parsing real mail clients' replies: the new text, the kind, attachments, charsets."""

from __future__ import annotations

import pytest

from outreach.mail.html import html_to_text
from outreach.mail.parse import MAX_MESSAGE_BYTES, parse_email
from outreach.mail.quotes import new_text
from tests.mail.helpers import fixture


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("gmail_en.eml", "9"),
        (
            "gmail_nl.eml",
            "Een 8, de levering was snel maar de verpakking was kapot.\n\nGroet,\nBram",
        ),
        ("outlook_en.eml", "I'd say 7. Support was slow last month."),
        ("outlook_nl.eml", "10! Altijd tevreden."),
        ("apple_mail_en.eml", "a 9!"),
        ("apple_mail_nl.eml", "Een 6. De app crasht bij het afrekenen."),
        ("thunderbird_en.eml", "4"),  # bottom-posted between quotes, signature below
        ("thunderbird_nl.eml", "Een dikke 9, jullie zijn top."),
        ("attachment.eml", "The box arrived damaged, photo attached."),
        ("html_only.eml", "Een 7, prima service & snel.\n\nLotte"),
        ("iso_8859_1.eml", "Danke, der Café war großartig. Grüße!"),
        ("windows_1252.eml", "“Thanks” \u2013 the €50 refund arrived."),
        ("windows_1252_labelled_latin1.eml", "“Great”, €12 saved."),
    ],
)
def test_a_reply_keeps_only_the_new_text(name: str, text: str) -> None:
    parsed = parse_email(fixture(name))
    assert parsed.kind == "reply"
    assert parsed.text == text
    assert parsed.problem is None


def test_the_full_body_is_kept_with_its_quoted_history() -> None:
    parsed = parse_email(fixture("gmail_en.eml"))
    assert "How likely are you to recommend Acme" in parsed.full_text
    assert parsed.text == "9"


def test_reply_headers_give_the_token_and_the_messages_answered() -> None:
    parsed = parse_email(fixture("gmail_en.eml"))
    assert parsed.reply_token == "aaaaaaaaaaaaaaaa"
    assert parsed.in_reply_to == "DELIVERY@acme.example"
    assert parsed.references == ("DELIVERY@acme.example",)
    assert parsed.message_id == "CAJ3xYq9fG0k2vL8nWmR4tD1sE7hB5uP@mail.gmail.com"
    assert (parsed.sender, parsed.sender_name) == ("anna@example.nl", "Anna de Vries")
    assert parsed.subject == "Re: How likely are you to recommend Acme?"


def test_an_encoded_sender_name_and_subject_are_decoded() -> None:
    parsed = parse_email(fixture("iso_8859_1.eml"))
    assert parsed.sender_name == "Renée Müller"
    assert parsed.subject == "Re: Café order"


def test_attachments_are_kept_as_name_type_and_size() -> None:
    parsed = parse_email(fixture("attachment.eml"))
    assert parsed.attachments_json() == [
        {"name": "IMG_2041.jpg", "type": "image/jpeg", "size": 159}
    ]


@pytest.mark.parametrize(
    "raw",
    [
        fixture("out_of_office_en.eml"),  # Auto-Submitted, "Automatic reply:"
        fixture("out_of_office_nl.eml"),  # only the subject: "Afwezig:"
        b"From: a@b.example\nX-Autoreply: yes\nSubject: Re: hi\n\nThanks, 9\n",
        b"From: a@b.example\nPrecedence: bulk\nSubject: Re: hi\n\n9\n",
        b"From: a@b.example\nPrecedence: auto_reply\nSubject: Re: hi\n\n9\n",
        b"From: a@b.example\nSubject: Out of Office: back Monday\n\n9\n",
        b"From: a@b.example\nSubject: Automatisch antwoord: Uw bestelling\n\n9\n",
    ],
)
def test_automatic_replies_are_recognised(raw: bytes) -> None:
    assert parse_email(raw).kind == "auto_reply"


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b.example\nAuto-Submitted: no\nSubject: Re: hi\n\n9\n",
        b"From: a@b.example\nPrecedence: list\nSubject: Re: hi\n\n9\n",
        b"From: a@b.example\nSubject: Re: about my office move\n\n9\n",
    ],
)
def test_ordinary_replies_are_not_taken_for_automatic_ones(raw: bytes) -> None:
    assert parse_email(raw).kind == "reply"


def test_a_hard_bounce_names_the_recipient_status_and_the_message_sent() -> None:
    parsed = parse_email(fixture("bounce_hard.eml"))
    assert parsed.kind == "bounce" and parsed.bounce is not None
    assert parsed.bounce.recipient == "gone@example.org"
    assert parsed.bounce.status == "5.1.1" and parsed.bounce.permanent
    assert parsed.bounce.original_message_id == "DELIVERY@acme.example"
    assert "User unknown" in (parsed.bounce.diagnostic or "")


def test_a_soft_bounce_is_not_permanent() -> None:
    parsed = parse_email(fixture("bounce_soft.eml"))
    assert parsed.bounce is not None and not parsed.bounce.permanent
    assert parsed.bounce.original_message_id == "DELIVERY@acme.example"


def test_a_delay_notice_is_no_bounce() -> None:
    raw = fixture("bounce_soft.eml").replace(b"Action: failed", b"Action: delayed")
    parsed = parse_email(raw)
    assert parsed.kind == "bounce" and parsed.bounce is None and parsed.delayed


def test_a_malformed_message_is_flagged_and_its_text_kept() -> None:
    parsed = parse_email(fixture("malformed.eml"))
    assert parsed.malformed and parsed.problem and "malformed" in parsed.problem
    assert "This body has no boundary at all, 10" in parsed.text
    assert parsed.message_id == "malformed-0001@example.com"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe",
        b"From:\n\n",
        b"Content-Type: multipart/mixed\n\n--x\n",
        b"From: =?utf-8?b?broken <x@y>\nSubject: =?bad?q?x?=\n\nhi",
        b"Message-ID: <a>\nContent-Type: text/plain; charset=nonesuch\n\n\xe9t\xe9",
    ],
)
def test_junk_never_raises(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert isinstance(parsed.text, str) and parsed.message_id


def test_a_message_without_a_message_id_is_named_by_its_bytes() -> None:
    one = parse_email(b"From: a@b.example\n\nhello")
    assert one.message_id.startswith("sha256:")
    assert one.message_id == parse_email(b"From: a@b.example\n\nhello").message_id


def test_an_oversized_message_is_metadata_with_its_text_truncated() -> None:
    head = fixture("attachment.eml")
    parsed = parse_email(head, size=MAX_MESSAGE_BYTES + 1)
    assert parsed.truncated and parsed.problem and "over the 25 MB limit" in parsed.problem
    assert not parsed.malformed
    assert parsed.text == "The box arrived damaged, photo attached."


def test_a_long_text_is_truncated_not_refused() -> None:
    parsed = parse_email(b"From: a@b.example\n\n" + b"word " * 20_000)
    assert parsed.truncated and len(parsed.text) <= 60_000


def test_html_quotes_become_quoted_lines_and_scripts_vanish() -> None:
    text = html_to_text(
        "<p>Yes &amp; no<br>line two</p><script>alert(1)</script>"
        "<blockquote><p>old</p></blockquote>"
    )
    assert text == "Yes & no\nline two\n\n> old"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("9\n\nOn Tue, 1 Dec 2026 at 09:00, Acme <a@b> wrote:\n> 0 to 10?\n", "9"),
        ("9\n\nOp di 1 dec 2026 om 09:00 schreef Acme <a@b>:\n> 0 tot 10?\n", "9"),
        ("9\n\nOp 1 dec. 2026, om 09:00 heeft Acme <a@b> het volgende geschreven:\n> x\n", "9"),
        ("> 0 to 10?\n\n9\n", "9"),
        ("8\n\n-----Original Message-----\nFrom: Acme\nSent: today\n\n0 to 10?\n", "8"),
        ("7\n\nVan: Acme\nVerzonden: dinsdag\nAan: Piet\nOnderwerp: vraag\n\n0 tot 10?\n", "7"),
        ("Thanks!\n\nSent from my iPhone\n", "Thanks!"),
    ],
)
def test_quote_styles_are_stripped(body: str, expected: str) -> None:
    assert new_text(body) == expected
