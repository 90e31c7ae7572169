"""What the CLI prints: counts that add up, grammar, local times, tables that keep ids whole."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli

SEND_AT = "2026-12-01T09:30:00Z"  # 10:30 in Amsterdam
CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in
a1,Anna de Vries,anna.devries.with.a.long.address@example.nl,+31612345601,sms,nl-NL,,sms;email
a2,Joost Bakker,joost@example.nl,+31612345602,sms,nl-NL,,sms
a3,Olivia Johnson,olivia@example.com,+12125550116,sms,en-US,America/New_York,sms
a4,Sem Peters,sem@example.nl,+31612345604,sms,nl-NL,,sms
"""
REPLIES = (
    "\n".join(
        json.dumps(
            {
                "channel": "sms",
                "from": sender,
                "text": text,
                "id": mid,
                "received_at": "2026-12-01T10:00:00Z",
            }
        )
        for sender, text, mid in [
            ("+31612345601", "9", "m1"),
            ("+31612345601", "9", "m1"),  # the same message twice
            ("+31612345602", "no idea", "m2"),
            ("+31612345602", "still no idea, call me", "m3"),
            ("+31600000000", "who is this?", "m4"),
        ]
    )
    + "\n"
)


@pytest.fixture
def sent(ws: Path, cli: Cli) -> Path:
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    result = cli("--now", SEND_AT, "run", "nps")
    assert result.exit_code == 0, result.stderr
    return ws


def test_import_summary_is_grammatical(ws: Path, cli: Cli) -> None:
    (ws / "one.csv").write_text("id,name\nk1,Kim\n", encoding="utf-8")
    out = cli("customers", "import", str(ws / "one.csv")).stdout
    assert "Imported 1 customer from one.csv (1 new, 0 updated); 0 rows rejected; " in out
    assert "duplicate" not in out
    (ws / "dup.csv").write_text("id,name\nk1,Kim\nk1,Kym\n", encoding="utf-8")
    out = cli("customers", "import", str(ws / "dup.csv")).stdout
    assert "1 duplicate id (last row wins)" in out


def test_ingest_summary_counts_what_it_says(sent: Path, cli: Cli) -> None:
    out = cli("--now", "2026-12-01T10:05:00Z", "replies", "ingest", "-", input=REPLIES).stdout
    assert "4 messages stored, 1 duplicate, 1 new contact;" in out
    assert "3 survey answers (1 valid, 2 unclear)" in out
    # Joost twice and the stranger: two conversations, as `conversations list` shows
    assert "2 conversations need attention" in out
    listed = cli("conversations", "list", "--needs-attention", "--json").stdout
    assert len(json.loads(listed)) == 2


def test_a_reply_from_the_future_is_refused(sent: Path, cli: Cli) -> None:
    line = (
        json.dumps(
            {
                "channel": "sms",
                "from": "+31612345601",
                "text": "9",
                "id": "f1",
                "received_at": "2026-12-01T20:00:00Z",
            }
        )
        + "\n"
    )
    result = cli("--now", "2026-12-01T10:05:00Z", "replies", "ingest", "-", input=line)
    assert result.exit_code == 3
    assert 'stdin:1: "received_at" 2026-12-01T20:00:00Z is in the future' in result.stderr
    assert "0 messages stored" in result.stdout


def test_a_rerun_says_already_planned(sent: Path, cli: Cli) -> None:
    out = cli("--now", SEND_AT, "run", "nps").stdout
    assert "already planned by an earlier run" in out
    assert "audience 0" not in out
    out = cli("--now", SEND_AT, "run", "nps", "--dry-run").stdout
    assert "already planned by an earlier run" in out
    # cron, once Olivia's window opens in New York: sends what the first run planned
    out = cli("--now", "2026-12-01T14:05:00Z", "run", "--due").stdout
    assert "already planned by an earlier run · sent 1 · deferred 0" in out


def test_dry_run_says_would_send(sent: Path, cli: Cli) -> None:
    (sent / "campaigns" / "again.toml").write_text(
        (sent / "campaigns" / "nps.toml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    out = cli("--now", SEND_AT, "run", "again", "--dry-run").stdout
    # three in the window now, Olivia (04:30 in New York) later
    assert "would send 3 · would defer 1" in out
    assert "sent 0" not in out


def test_report_uses_one_base_and_unknown_receipts(sent: Path, cli: Cli) -> None:
    out = cli("--now", "2026-12-01T19:00:00Z", "report", "nps").stdout
    assert "(survey, 1 occurrence)" in out
    assert "response rate 0.0% (0 replied of 3 sent)" in out
    assert "of sent" in out
    delivered = next(line for line in out.splitlines() if "delivered" in line)
    assert "unknown" in delivered and "0.0%" not in delivered


def test_queue_and_status_show_local_time_with_zone(sent: Path, cli: Cli) -> None:
    queue = cli("--now", SEND_AT, "queue").stdout
    # Olivia's window opens at 09:00 in New York: 15:00 in Amsterdam
    assert "2026-12-01 15:00 CET" in queue
    assert "T14:00:00Z" not in queue
    status = cli("--now", SEND_AT, "status").stdout
    assert "at 2026-12-01 10:30 CET" in status
    assert "next not before │ 2026-12-01 15:00 CET" in status
    data = json.loads(cli("--now", SEND_AT, "queue", "--json").stdout)
    assert data[0]["not_before"] == "2026-12-01T14:00:00Z"


def test_narrow_terminal_never_breaks_ids_emails_or_times(sent: Path, cli: Cli) -> None:
    out = cli("customers", "list", env={"COLUMNS": "80"}).stdout
    assert "anna.devries.with.a.long.address@example.nl" in out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    queue = cli("--now", SEND_AT, "queue", env={"COLUMNS": "80"})
    ids = [r["id"] for r in json.loads(cli("queue", "--json").stdout)]
    assert ids and all(i in queue.stdout for i in ids)
    assert "2026-12-01 15:00 CET" in queue.stdout
    assert "not shown at this width" in queue.stderr


def test_a_pipe_gets_the_full_width(sent: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "outreach", "-w", str(sent), "customers", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) > 100  # every column, one line per customer
    assert len([line for line in lines if re.match(r"│ a\d ", line)]) == 4


def test_templates_check_names_a_shared_broken_file_once_on_stderr(ws: Path, cli: Cli) -> None:
    folder = ws / "templates" / "shared"
    folder.mkdir()
    (folder / "default.j2").write_text("Hi {{ customer.name }\n", encoding="utf-8")
    result = cli("templates", "check", "shared")
    assert result.exit_code == 4
    assert "error:" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if "default.j2:1" in line]
    assert len(lines) == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: 1 template error in ")


def test_a_customer_without_a_name_is_thanked_without_there(ws: Path, cli: Cli) -> None:
    (ws / "anon.csv").write_text(
        "id,phone,preferred_channel,locale,opted_in\nn1,+31612345699,sms,en,sms\n"
        "n2,+31612345698,sms,nl,sms\n",
        encoding="utf-8",
    )
    assert cli("customers", "import", str(ws / "anon.csv")).exit_code == 0
    assert cli("--now", SEND_AT, "run", "nps").exit_code == 0
    replies = "".join(
        json.dumps(
            {
                "channel": "sms",
                "from": number,
                "text": "9",
                "id": f"t{i}",
                "received_at": "2026-12-01T10:00:00Z",
            }
        )
        + "\n"
        for i, number in enumerate(["+31612345699", "+31612345698"])
    )
    result = cli("--now", "2026-12-01T10:01:00Z", "replies", "ingest", "-", input=replies)
    assert result.exit_code == 0, result.stderr
    bodies = [
        json.loads(p.read_text(encoding="utf-8"))["body"]
        for p in (ws / "outbox" / "sms").glob("*.json")
    ]
    thanks = [b for b in bodies if b.startswith(("Thank", "Bedankt"))]
    assert len(thanks) == 2, bodies
    assert any(b.startswith("Thank you! ") for b in thanks)
    assert any(b.startswith("Bedankt! ") for b in thanks)
    assert not any("there" in b or "daar" in b for b in thanks)


def test_an_agents_email_reply_has_a_subject_in_the_customers_language(ws: Path, cli: Cli) -> None:
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    # c003 (Dutch, email) has never written: nothing to answer "Re:" to
    result = cli("reply", "c003", "We hebben je bestelling gevonden.", "--channel", "email")
    assert result.exit_code == 0, result.stderr
    mail = next((ws / "outbox" / "email").glob("*.eml")).read_text(encoding="utf-8")
    assert "Subject: Re: je bericht aan Acme" in mail
    result = cli("reply", "c017", "We found your order.", "--channel", "email")  # en-US
    assert result.exit_code == 0, result.stderr
    subjects = [p.read_text(encoding="utf-8") for p in (ws / "outbox" / "email").glob("*.eml")]
    assert any("Subject: Re: your message to Acme" in s for s in subjects)


def test_the_html_report_says_receipts_are_unknown(sent: Path, cli: Cli) -> None:
    page = sent / "nps.html"
    assert cli("--now", "2026-12-01T19:00:00Z", "report", "nps", "--html", str(page)).exit_code == 0
    text = page.read_text(encoding="utf-8")
    assert "1 occurrence ·" in text and "occurrence(s)" not in text
    assert "delivered, read: unknown (no delivery receipts" in text
    assert "<div>delivered</div>" not in text
