"""Campaign files: validation with clear errors, schedules, and which occurrences are due."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.campaigns.files import load_campaign, localized_question
from outreach.campaigns.planner import route
from outreach.campaigns.schedule import due_occurrences, latest_occurrence
from outreach.config import load_config
from outreach.errors import ConfigError, NotFoundError
from outreach.workspace import Workspace


def write_campaign(ws: Path, name: str, text: str) -> None:
    (ws / "campaigns" / f"{name}.toml").write_text(text, encoding="utf-8")


def test_example_campaigns_load(ws: Path) -> None:
    config = load_config(ws)
    nps = load_campaign(config, "nps")
    assert nps.kind == "survey" and nps.survey is not None and nps.survey.type == "nps"
    assert load_campaign(config, "shipped").counts_for_cap is False
    assert load_campaign(config, "product_update").counts_for_cap is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('kind = "spam"\ntemplate = "nps"', 'kind: "spam" is not one of'),
        ('kind = "survey"\ntemplate = "nps"', "question: required"),
        ('template = "nope"', "templates/nope/ does not exist"),
        ('template = "nps"\nchannels = ["fax"]', '"fax" is not configured'),
        ('template = "nps"\n[schedule]\nwindow = "25:00-08:00"', "not a time of day"),
        (
            'template = "nps"\n[schedule]\nstart = "2026-01-01 10:00"\nrrule = "FREQ=SOMETIMES"',
            "not an RFC 5545 rule",
        ),
        (
            'template = "nps"\n[schedule]\nstart = "2026-01-01 10:00"\n'
            'rrule = "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"',
            "yields no occurrence",
        ),
        ('template = "nps"\n[schedule]\nstart = "yesterday-ish"', "is not a time"),
        ('template = "nps"\nbogus = 1', "unknown key 'bogus'"),
        ('template = "nps"\n[schedule\n', "line 2"),
    ],
)
def test_bad_campaign_file_is_one_clear_error(ws: Path, body: str, message: str) -> None:
    write_campaign(ws, "bad", body)
    with pytest.raises(ConfigError) as err:
        load_campaign(load_config(ws), "bad")
    assert message in str(err.value)
    assert "bad.toml" in str(err.value)


def test_unknown_campaign_lists_the_known_ones(ws: Path) -> None:
    with pytest.raises(NotFoundError, match="known: csat, nps"):
        load_campaign(load_config(ws), "nope")


def test_latest_occurrence_of_a_monthly_rule_is_local_ten_oclock(ws: Path) -> None:
    config = load_config(ws)
    nps = load_campaign(config, "nps")
    now = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
    # 1 January 10:00 in Amsterdam (winter, UTC+1)
    assert latest_occurrence(config, nps, now) == "2027-01-01T09:00:00Z"


def test_due_plans_only_the_latest_occurrence_and_records_older_as_missed(ws: Path) -> None:
    workspace = Workspace.load(ws)
    now = datetime(2027, 2, 1, 9, 30, tzinfo=UTC)  # 1 Feb 10:30 Amsterdam
    due = [
        d
        for d in due_occurrences(workspace.config, workspace.store, now)
        if d.campaign.name == "nps"
    ]
    planned = [d.occurrence for d in due if not d.missed]
    missed = [d.occurrence for d in due if d.missed]
    assert planned == ["2027-02-01T09:00:00Z"]
    assert "2026-12-01T09:00:00Z" in missed and "2027-01-01T09:00:00Z" in missed


def test_due_skips_an_occurrence_later_than_late(ws: Path) -> None:
    workspace = Workspace.load(ws)
    now = datetime(2027, 2, 5, 9, 30, tzinfo=UTC)  # 4 days after 1 Feb; late = 2d
    due = [
        d
        for d in due_occurrences(workspace.config, workspace.store, now)
        if d.campaign.name == "nps"
    ]
    assert all(d.missed for d in due)


def test_due_does_not_repeat_a_planned_occurrence_but_resumes_an_interrupted_one(ws: Path) -> None:
    workspace = Workspace.load(ws)
    store = workspace.store
    now = datetime(2027, 2, 1, 9, 30, tzinfo=UTC)
    store.deliveries.begin_occurrence("nps", "2027-02-01T09:00:00Z", "survey", None, "x")
    due = due_occurrences(workspace.config, store, now)
    assert any(d.occurrence == "2027-02-01T09:00:00Z" and not d.missed for d in due)
    store.deliveries.finish_occurrence("nps", "2027-02-01T09:00:00Z", 0)
    due = due_occurrences(workspace.config, store, now)
    assert not any(d.occurrence == "2027-02-01T09:00:00Z" and not d.missed for d in due)


def test_routing_takes_the_first_channel_with_address_and_consent(ws: Path) -> None:
    config = load_config(ws)
    nps = load_campaign(config, "nps")  # ["preferred", "email"]
    customer = {
        "id": "c1",
        "preferred_channel": "sms",
        "phone": "+31612345678",
        "email": "a@example.com",
    }
    assert route(config, nps, customer, {"sms": "opted_in", "email": "opted_in"}) == ("sms", None)
    assert route(config, nps, customer, {"sms": "opted_out", "email": "opted_in"}) == (
        "email",
        None,
    )
    assert route(config, nps, customer, {"sms": "opted_out"}) == (None, "opted_out")
    assert route(config, nps, customer, {}) == (None, "no_consent")
    assert route(config, nps, {"id": "c2", "preferred_channel": "sms"}, {"sms": "opted_in"}) == (
        None,
        "no_address",
    )


def test_survey_question_is_asked_in_the_customers_language(ws: Path) -> None:
    survey = load_campaign(load_config(ws), "nps").survey
    assert survey is not None
    snapshot = survey.snapshot()
    assert localized_question(snapshot, "nl-BE").startswith("Hoe waarschijnlijk")
    assert localized_question(snapshot, "en-US").startswith("How likely")
    assert localized_question(snapshot, None).startswith("How likely")
