"""Fixture emails (real clients' formats, under fixtures/) addressed to a real sent email."""

from __future__ import annotations

import email
import json
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Cli

FIXTURES = Path(__file__).parent / "fixtures"
NOW = "2026-12-01T09:00:01Z"  # the survey goes out as the occurrence starts
LATER = "2026-12-01T10:30:00Z"
CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in
nl2,Joost Bakker,joost@example.nl,+31612345602,email,nl-NL,Europe/Amsterdam,email
"""


@dataclass(frozen=True)
class Sent:
    """The survey email outreach sent: its Reply-To token and Message-ID."""

    token: str
    message_id: str  # without <>
    delivery_id: str


def send_survey(ws: Path, cli: Cli) -> Sent:
    """Import Joost (email only) and run the workspace's nps survey: one email, in the outbox."""
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    result = cli("--now", NOW, "run", "nps", "--json")
    assert result.exit_code == 0, result.stderr
    [file] = (ws / "outbox" / "email").glob("*.eml")
    sent = email.message_from_bytes(file.read_bytes())
    token = str(sent["Reply-To"]).split("+", 1)[1].split("@")[0]
    return Sent(token, str(sent["Message-ID"]).strip("<>"), file.stem)


def fixture(name: str, sent: Sent | None = None) -> bytes:
    """A fixture email, answering ``sent`` when given (its token and Message-ID filled in)."""
    raw = (FIXTURES / name).read_bytes()
    if sent is not None:
        raw = raw.replace(b"aaaaaaaaaaaaaaaa", sent.token.encode())
        raw = raw.replace(b"DELIVERY@acme.example", sent.message_id.encode())
    return raw


def show(cli: Cli, customer: str, *extra: str) -> dict[str, object]:
    result = cli("conversations", "show", customer, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data
