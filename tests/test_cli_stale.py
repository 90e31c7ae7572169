"""Nothing stale goes out: deliveries an earlier run left queued or deferred are never sent
once their occurrence is older than the campaign's ``late``, or a survey's ``expires`` has
passed; they end ``skipped`` with reason ``expired``, and ``report`` counts them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.test_cli_run import CUSTOMERS, outbox_files

FEBRUARY = "2027-02-01T09:30:00Z"  # 10:30 in Amsterdam; the February occurrence is 09:00Z


@pytest.fixture
def imported(ws: Path, cli: Cli) -> Path:
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    result = cli("customers", "import", str(ws / "customers.csv"))
    assert result.exit_code == 0, result.stderr
    return ws


def statuses(ws: Path) -> dict[str, tuple[str, str | None]]:
    conn = sqlite3.connect(ws / "outreach.db")
    rows = conn.execute("SELECT customer_id, status, reason FROM deliveries").fetchall()
    conn.close()
    return {cid: (status, reason) for cid, status, reason in rows}


def plan_in_february_and_stop_after_one(cli: Cli, ws: Path) -> None:
    """An interrupted February run: one message out, one queued, two deferred."""
    result = cli("--now", FEBRUARY, "run", "nps", "--limit", "1", "--json")
    assert result.exit_code == 0, result.stderr
    left = [s for s, _ in statuses(ws).values() if s in ("queued", "deferred")]
    assert sorted(left) == ["deferred", "deferred", "queued"]


def test_a_run_in_august_sends_nothing_from_february_and_records_expired(
    imported: Path, cli: Cli
) -> None:
    plan_in_february_and_stop_after_one(cli, imported)
    before = outbox_files(imported)
    result = cli("--now", "2027-08-01T12:00:00Z", "run", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["sent"] == 0 and outbox_files(imported) == before
    [line] = data["campaigns"]
    assert line["occurrence"] == "2027-02-01T09:00:00Z" and line["skipped"] == {"expired": 3}
    assert list(statuses(imported).values()).count(("skipped", "expired")) == 3
    report = json.loads(cli("report", "nps", "--json").stdout)
    assert report["skipped"]["expired"] == 3
    assert report["planned"] == 4  # planned, then expired: still in the funnel


def test_within_late_an_interrupted_run_is_finished_by_the_next(imported: Path, cli: Cli) -> None:
    plan_in_february_and_stop_after_one(cli, imported)
    # the next day, 09:30 in New York and 01:30 in Sydney: within late = 2d
    data = json.loads(cli("--now", "2027-02-02T14:30:00Z", "run", "--json").stdout)
    assert data["sent"] == 2  # the queued one and New York's
    assert "expired" not in json.dumps(data)


def test_a_survey_past_expires_is_not_sent_even_without_late(imported: Path, cli: Cli) -> None:
    nps = imported / "campaigns" / "nps.toml"
    nps.write_text(
        "\n".join(line for line in nps.read_text().splitlines() if not line.startswith("late")),
        encoding="utf-8",
    )
    plan_in_february_and_stop_after_one(cli, imported)
    # four days on: past late's 2d (not set here) but within expires = 7d
    data = json.loads(cli("--now", "2027-02-05T14:30:00Z", "run", "--json").stdout)
    assert data["sent"] == 2
    # ten days on: the survey has expired
    data = json.loads(cli("--now", "2027-02-11T14:30:00Z", "run", "--json").stdout)
    assert data["sent"] == 0 and data["campaigns"][0]["skipped"] == {"expired": 1}


def test_run_name_still_sends_a_late_occurrence_it_plans_itself(imported: Path, cli: Cli) -> None:
    # 5 February: the 1 February occurrence is past late = 2d, but `run nps` asks for it
    data = json.loads(cli("--now", "2027-02-05T09:30:00Z", "run", "nps", "--json").stdout)
    assert data["sent"] == 2 and "expired" not in json.dumps(data)
