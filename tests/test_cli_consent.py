"""outreach consent grant|revoke|show through the real CLI: an append-only ledger."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Cli


@pytest.fixture
def people(cli: Cli, tmp_path: Path) -> Cli:
    path = tmp_path / "people.csv"
    path.write_text("id,phone,opted_in\nC1,+31612345678,sms\nC2,+31612345679,\n", "utf-8")
    assert cli("customers", "import", str(path)).exit_code == 0
    return cli


def show(cli: Cli, customer: str) -> dict[str, object]:
    result = cli("consent", "show", customer, "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_grant_then_revoke_keeps_the_whole_history(people: Cli) -> None:
    granted = people(
        "--now",
        "2026-12-01T10:00:00Z",
        "consent",
        "grant",
        "C2",
        "--channel",
        "whatsapp",
        "--source",
        "web-form",
        "--evidence",
        "form 42",
    )
    assert granted.exit_code == 0, granted.stderr
    revoked = people("--now", "2026-12-02T10:00:00Z", "consent", "revoke", "C2", "-c", "whatsapp")
    assert revoked.exit_code == 0
    data = show(people, "C2")
    assert data["current"]["whatsapp"] == {  # type: ignore[index]
        "status": "opted_out",
        "source": "cli",
        "recorded_at": "2026-12-02T10:00:00Z",
    }
    assert data["current"]["sms"]["status"] is None  # type: ignore[index]
    assert data["history"] == [
        {
            "channel": "whatsapp",
            "status": "opted_in",
            "source": "web-form",
            "evidence": "form 42",
            "recorded_at": "2026-12-01T10:00:00Z",
        },
        {
            "channel": "whatsapp",
            "status": "opted_out",
            "source": "cli",
            "evidence": None,
            "recorded_at": "2026-12-02T10:00:00Z",
        },
    ]


def test_grant_many_customers_at_once(people: Cli) -> None:
    result = people("consent", "grant", "C1", "C2", "--channel", "email")
    assert result.exit_code == 0
    assert "2 customers" in result.stderr
    for cid in ("C1", "C2"):
        assert show(people, cid)["current"]["email"]["status"] == "opted_in"  # type: ignore[index]


def test_revoke_overrides_the_import(people: Cli) -> None:
    assert show(people, "C1")["current"]["sms"]["source"] == "import:people.csv"  # type: ignore[index]
    assert people("consent", "revoke", "C1", "--channel", "sms").exit_code == 0
    data = show(people, "C1")
    assert data["current"]["sms"]["status"] == "opted_out"  # type: ignore[index]
    assert len(data["history"]) == 2  # type: ignore[arg-type]


def test_unknown_customer_exits_2_and_records_nothing(people: Cli) -> None:
    result = people("consent", "grant", "C1", "NOPE", "--channel", "email")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        'error: customer "NOPE" does not exist; see outreach customers list'
    )
    assert show(people, "C1")["current"]["email"]["status"] is None  # type: ignore[index]
    assert people("consent", "show", "NOPE").exit_code == 2


def test_unknown_channel_exits_4(people: Cli) -> None:
    result = people("consent", "grant", "C1", "--channel", "fax")
    assert result.exit_code == 4
    assert 'channel "fax" is not configured' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_ledger_cannot_be_rewritten(people: Cli, ws: Path) -> None:
    db = sqlite3.connect(ws / "outreach.db")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE consent SET status = 'opted_out'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM consent")
    finally:
        db.close()


def test_show_as_text(people: Cli) -> None:
    result = people("consent", "show", "C1")
    assert result.exit_code == 0
    assert "import:people.csv" in result.stdout and "opted_in" in result.stdout


@pytest.mark.parametrize("command", [[], ["grant"], ["revoke"], ["show"]])
def test_every_consent_command_has_help(cli: Cli, command: list[str]) -> None:
    result = cli("consent", *command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout
