"""A reply by email from a template without ``Subject:`` (a ``default.j2`` shared by every
channel) answers the message it replies to: ``Re: <its subject>``, with ``In-Reply-To`` and
``References``, so it threads in the customer's mail client. Through the real CLI on the
outbox (the .eml files are what an SMTP server would get)."""

from __future__ import annotations

import email
import json
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import Cli

CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in
anna,Anna de Vries,anna@example.nl,,email,en-GB,Europe/Amsterdam,email
"""
SURVEY_AT = "2026-12-01T09:30:00Z"  # Tuesday 10:30 in Amsterdam
OPEN = "2026-12-01T10:00:00Z"
CLOSED = "2026-12-05T11:00:00Z"  # Saturday


def only_default(ws: Path, name: str, text: str) -> None:
    """templates/NAME/ holds one default.j2 (no Subject: line), for every channel."""
    folder = ws / "templates" / name
    for old in folder.glob("*.j2"):
        old.unlink()
    (folder / "default.j2").write_text(text, encoding="utf-8")


@pytest.fixture
def surveyed(ws: Path, cli: Cli) -> Path:
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    only_default(ws, "nps_thanks", "Thanks, {{ customer.name }}!\n")
    only_default(ws, "out_of_hours", "We answer from {{ next_opening }}.\n")
    result = cli("--now", SURVEY_AT, "run", "nps", "--json")
    assert result.exit_code == 0, result.stderr
    return ws


def mails(ws: Path) -> list[EmailMessage]:
    found = []
    for path in sorted((ws / "outbox" / "email").glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


def test_a_follow_up_from_a_default_template_answers_the_email_it_replies_to(
    surveyed: Path, cli: Cli
) -> None:
    [survey] = mails(surveyed)
    reply = (
        "From: Anna de Vries <anna@example.nl>\r\nTo: outbox@localhost\r\n"
        f"Subject: Re: {survey['Subject']}\r\n"
        "Message-ID: <reply-1@mail.example.nl>\r\n"
        f"In-Reply-To: {survey['Message-ID']}\r\nReferences: {survey['Message-ID']}\r\n"
        "Date: Tue, 01 Dec 2026 10:58:00 +0100\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n9\r\n"
    )
    (surveyed / "reply.eml").write_text(reply, encoding="utf-8")
    result = cli(
        "--now",
        OPEN,
        "replies",
        "ingest",
        str(surveyed / "reply.eml"),
        "--format",
        "eml",
        "--channel",
        "email",
        "--json",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert (summary["survey_answers"], summary["replies_sent"]) == (1, 1), summary
    [thanks] = [m for m in mails(surveyed) if m["Message-ID"] != survey["Message-ID"]]
    assert thanks["Subject"] == f"Re: {survey['Subject']}"  # never "Re: Re: …"
    assert thanks["In-Reply-To"] == "<reply-1@mail.example.nl>"
    assert thanks["References"].split() == [survey["Message-ID"], "<reply-1@mail.example.nl>"]
    assert thanks.get_content().strip() == "Thanks, Anna de Vries!"


def test_an_out_of_hours_reply_without_a_subject_threads_with_the_mail_the_customer_answered(
    surveyed: Path, cli: Cli
) -> None:
    [survey] = mails(surveyed)
    line = {
        "channel": "email",
        "from": "anna@example.nl",
        "text": "Can someone call me?",
        "in_reply_to": survey["Message-ID"],
        "id": "r-2",
        "received_at": CLOSED,
    }
    result = cli("--now", CLOSED, "replies", "ingest", "-", "--json", input=json.dumps(line) + "\n")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["auto_replies"] == 1
    [auto] = [m for m in mails(surveyed) if m["Message-ID"] != survey["Message-ID"]]
    assert auto["Subject"] == f"Re: {survey['Subject']}"
    # the customer's message has no Message-ID of its own here: thread with ours
    assert auto["In-Reply-To"] == survey["Message-ID"]
    assert auto["References"] == survey["Message-ID"]
    assert auto.get_content().startswith("We answer from")
