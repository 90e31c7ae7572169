"""Exit codes a script or cron can trust (README "Exit codes"): a run with a template error
exits 3 however it is asked for, ``report`` counts template errors as failed, and
``replies ingest`` exits 3 saying why when a reply it had to send was not sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.test_cli_conversations import jsonl
from tests.test_cli_conversations import prepared as prepared
from tests.test_cli_run import NOW
from tests.test_cli_run import imported as imported
from tests.test_inbound import OPEN


@pytest.fixture
def broken(imported: Path) -> Path:
    """A campaign whose sms template fails for every customer (nl1 gets sms, nl2 email)."""
    folder = imported / "templates" / "broken"
    folder.mkdir()
    (folder / "sms.j2").write_text("Hi {{ customer.plann }}", encoding="utf-8")
    (folder / "email.j2").write_text("Subject: hi\n\nHello {{ customer.name }}", encoding="utf-8")
    (imported / "campaigns" / "broken.toml").write_text(
        'kind = "update"\ntemplate = "broken"\nchannels = ["preferred"]\n'
        '[schedule]\nstart = "2026-12-01 10:00"\n',
        encoding="utf-8",
    )
    return imported


@pytest.mark.parametrize(
    "args",
    [("broken",), ("broken", "--quiet"), ("--due",), ("--due", "--quiet"), ("broken", "--json")],
)
def test_a_run_with_a_template_error_exits_3(broken: Path, cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("--now", NOW, "run", *args)
    assert result.exit_code == 3, result.stderr
    assert "1 template errors" in result.stderr


def test_report_counts_template_errors_as_failed(broken: Path, cli: Cli) -> None:
    cli("--now", NOW, "run", "broken")
    data = json.loads(cli("report", "broken", "--json").stdout)
    assert data["failed"] == 1 and data["failed_by_reason"] == {"template_error": 1}
    assert "template_error" not in data["skipped"]
    assert data["sent"] == 1


def test_ingest_exits_3_and_says_why_when_a_confirmation_was_not_sent(
    prepared: Path, cli: Cli
) -> None:
    for path in (prepared / "templates" / "stop_confirmation").glob("sms*.j2"):
        path.write_text("{{ customer.nope }}", encoding="utf-8")
    stop = jsonl(
        {
            "channel": "sms",
            "from": "+31612345601",
            "text": "STOP",
            "received_at": "2026-12-01T10:00:00Z",
            "id": "m1",
        }
    )
    result = cli("--now", OPEN, "replies", "ingest", "-", input=stop)
    assert result.exit_code == 3, result.stderr
    assert "1 of 1 replies were not sent" in result.stderr
    assert "template_error" in result.stderr and "nope" in result.stderr
    # the STOP itself is kept: only the confirmation failed
    assert "1 message stored" in result.stdout


def test_ingest_whose_replies_all_went_exits_0(prepared: Path, cli: Cli) -> None:
    stop = jsonl(
        {
            "channel": "sms",
            "from": "+31612345601",
            "text": "STOP",
            "received_at": "2026-12-01T10:00:00Z",
            "id": "m1",
        }
    )
    result = cli("--now", OPEN, "replies", "ingest", "-", input=stop)
    assert result.exit_code == 0, result.stderr
    assert "1 of 1 replies sent" in result.stdout


def test_run_due_sends_the_valid_campaigns_and_names_every_broken_file(
    imported: Path, cli: Cli
) -> None:
    campaigns = imported / "campaigns"
    (campaigns / "bad_kind.toml").write_text('kind = "newsletter"\ntemplate = "nps"\n')
    (campaigns / "bad_key.toml").write_text('template = "nps"\ncolour = "red"\n')
    (campaigns / "no_template.toml").write_text('template = "missing"\n')
    result = cli("--now", NOW, "run", "--due", "--json")
    assert result.exit_code == 4, result.stderr
    data = json.loads(result.stdout)
    assert data["sent"] == 2  # nps, due on 1 December, went out all the same
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 3
    for name in ("bad_kind", "bad_key", "no_template"):
        assert sum(f"campaigns/{name}.toml" in line for line in lines) == 1
    # asked for by name, a broken campaign is still an error at once
    assert cli("--now", NOW, "run", "bad_kind").exit_code == 4
