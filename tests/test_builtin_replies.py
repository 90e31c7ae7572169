"""STOP, START, HELP and the out-of-hours reply are answered on any channel, also where the
workspace has no template for them: the built-in text in the customer's language (English
and Dutch), and `templates check` says which channels use it. Through the real CLI on the
outbox, so every reply sent is a file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Cli

OPEN = "2026-12-01T10:00:00Z"  # Tuesday 11:00 in Amsterdam
CLOSED = "2026-12-05T11:00:00Z"  # Saturday 12:00 in Amsterdam

CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in
nl1,Anna de Vries,anna@example.nl,+31612345601,messenger,nl-NL,Europe/Amsterdam,messenger;sms
en1,Emma Smith,emma@example.co.uk,+447911123423,messenger,en-GB,Europe/London,messenger;sms
"""


@pytest.fixture
def messenger(ws: Path, cli: Cli) -> Path:
    """A `messenger` channel (the README's own example name) with no templates of its own."""
    with (ws / "outreach.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[channels.messenger]\nprovider = "outbox"\n')
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    return ws


def ingest(cli: Cli, now: str, *lines: dict[str, str]) -> dict[str, object]:
    text = "".join(json.dumps(line) + "\n" for line in lines)
    result = cli("--now", now, "replies", "ingest", "-", "--json", input=text)
    assert result.exit_code == 0, result.stdout + result.stderr
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def sent(ws: Path, channel: str) -> dict[str, str]:
    """customer id → body of every reply written to outbox/CHANNEL/."""
    folder = ws / "outbox" / channel
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return {d["customer_id"]: d["body"] for d in (json.loads(p.read_text()) for p in files)}


def test_stop_and_start_on_a_channel_without_templates_get_the_built_in_text(
    messenger: Path, cli: Cli
) -> None:
    summary = ingest(
        cli,
        OPEN,
        {"channel": "messenger", "from": "+31612345601", "text": "STOP", "id": "1"},
        {"channel": "messenger", "from": "+447911123423", "text": "stop", "id": "2"},
    )
    assert summary["replies_sent"] == 2, summary
    bodies = sent(messenger, "messenger")
    assert bodies["nl1"].startswith("Acme: je bent afgemeld")
    assert bodies["en1"].startswith("Acme: you are unsubscribed")
    ingest(cli, OPEN, {"channel": "messenger", "from": "+31612345601", "text": "START", "id": "3"})
    assert "welkom terug" in sent(messenger, "messenger")["nl1"]


def test_help_and_out_of_hours_on_a_channel_without_templates(messenger: Path, cli: Cli) -> None:
    ingest(cli, OPEN, {"channel": "messenger", "from": "+447911123423", "text": "HELP", "id": "h"})
    assert "reply STOP to unsubscribe" in sent(messenger, "messenger")["en1"]
    summary = ingest(
        cli,
        CLOSED,
        {
            "channel": "messenger",
            "from": "+31612345601",
            "text": "Waar blijft mijn pakket?",
            "id": "q",
        },
    )
    assert (summary["auto_replies"], summary["replies_sent"]) == (1, 1), summary
    reply = sent(messenger, "messenger")["nl1"]
    assert reply.startswith("Bedankt voor je bericht!")
    assert "maandag om 09:00" in reply


def test_a_workspace_written_by_hand_without_reply_templates_still_confirms_a_stop(
    messenger: Path, cli: Cli
) -> None:
    for name in ("stop_confirmation", "start_confirmation", "help", "out_of_hours"):
        shutil.rmtree(messenger / "templates" / name)
    summary = ingest(
        cli, OPEN, {"channel": "sms", "from": "+31612345601", "text": "Stop", "id": "s"}
    )
    assert summary["replies_sent"] == 1, summary
    assert sent(messenger, "sms")["nl1"].startswith("Acme: je bent afgemeld")
    consent = json.loads(cli("consent", "show", "nl1", "--json").stdout)
    assert "opted_out" in json.dumps(consent)


def test_templates_check_says_which_channels_fall_back_to_the_built_in_texts(
    messenger: Path, cli: Cli
) -> None:
    result = cli("templates", "check")
    assert result.exit_code == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split() + result.stderr.split())
    assert (
        "messenger: no stop_confirmation, start_confirmation, help, out_of_hours "
        "template; the built-in text"
    ) in said
    rows = json.loads(cli("templates", "check", "--json").stdout)
    builtin = {(r["template"], r["channel"]) for r in rows if r["builtin"]}
    assert builtin == {
        (n, "messenger")
        for n in ("stop_confirmation", "start_confirmation", "help", "out_of_hours")
    }
    assert all(r["renders"] == 2 and not r["errors"] for r in rows if r["builtin"])
