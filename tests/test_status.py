"""outreach status: every section from real rows, JSON and tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from outreach import clock
from outreach.reports.status import due_campaigns, workspace_status
from outreach.store.sqlite import SqliteStore
from outreach.workspace import Workspace
from tests.conftest import Cli
from tests.test_export import add_consent, add_customer, add_delivery, add_message, add_occurrence


def seed(ws: Path) -> None:
    space = Workspace.load(ws)
    store = space.store
    try:
        for cid in ("a", "b", "c"):
            add_customer(store, cid)
        add_customer(store, "contact-1", "", verified=0)
        add_consent(store, "a", "sms", "opted_in", "2026-11-01T00:00:00Z")
        add_consent(store, "b", "sms", "opted_in", "2026-11-01T00:00:00Z")
        add_consent(store, "b", "sms", "opted_out", "2026-11-02T00:00:00Z")  # latest wins
        add_consent(store, "c", "email", "opted_in", "2026-11-01T00:00:00Z")
        add_occurrence(store, "nps", "2026-11-02T09:00:00Z")
        add_occurrence(store, "nps", "2026-10-01T09:00:00Z", status="missed")
        add_delivery(
            store,
            "q1",
            "nps",
            "2026-11-02T09:00:00Z",
            "a",
            "queued",
            not_before="2026-11-02T09:00:00Z",
        )
        add_delivery(
            store,
            "q2",
            "nps",
            "2026-11-02T09:00:00Z",
            "b",
            "deferred",
            not_before="2026-11-02T08:00:00Z",
        )
        add_delivery(
            store,
            "q3",
            "nps",
            "2026-11-02T09:00:00Z",
            "c",
            "unknown",
            not_before="2026-11-01T08:00:00Z",
        )
        add_delivery(
            store,
            "q4",
            "news",
            "2026-11-02T09:00:00Z",
            "c",
            "sent",
            not_before="2026-10-01T08:00:00Z",
        )
        add_message(store, "a", "in", "when is my order coming?", "2026-11-02T10:00:00Z")
        add_message(store, "contact-1", "in", "hi", "2026-11-02T11:00:00Z")
        assert isinstance(store, SqliteStore)
        with store.write() as conn:
            conn.execute(
                "UPDATE conversations SET needs_attention = 1, attention_reason = ?, "
                "last_inbound_at = ?, last_inbound_channel = 'sms' WHERE customer_id = ?",
                ("question", "2026-11-02T10:00:00Z", "a"),
            )
            conn.execute(
                "UPDATE conversations SET needs_attention = 1, attention_reason = "
                "'opt_out_intent' WHERE customer_id = 'contact-1'"
            )
    finally:
        space.close()


def test_status_json_has_every_section(ws: Path, cli: Cli) -> None:
    seed(ws)
    result = cli("status", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["customers"], info["unverified_contacts"]) == (3, 1)
    assert info["consent"] == {"email": {"opted_in": 1}, "sms": {"opted_in": 1, "opted_out": 1}}
    assert {"name": "sms", "provider": "outbox"} in info["channels"]
    nps = next(c for c in info["campaigns"] if c["name"] == "nps")
    assert (nps["occurrences_planned"], nps["occurrences_missed"]) == (1, 1)
    assert nps["last_occurrence"] == "2026-11-02T09:00:00Z"
    assert info["queue"] == {
        "queued": 1,
        "deferred": 1,
        "sending": 0,
        "unknown": 1,
        "next_not_before": "2026-11-02T08:00:00Z",  # the unknown one is not waiting
    }
    attention = info["attention"]
    assert attention["total"] == 2
    assert attention["by_reason"] == {"opt_out_intent": 1, "question": 1}
    assert {r["customer_id"] for r in attention["oldest"]} == {"a", "contact-1"}
    assert set(info["due"]) == {"available", "occurrences", "error"}


def test_status_tables_for_people(ws: Path, cli: Cli) -> None:
    seed(ws)
    result = cli("status")
    assert result.exit_code == 0, result.stderr
    for title in (
        "Customers",
        "Consent",
        "Channels",
        "Campaigns",
        "Queue",
        "Conversations needing attention: 2",
    ):
        assert title in result.stdout
    assert "opt_out_intent" in result.stdout
    assert "Due now:" in result.stdout


def test_fresh_workspace_status(ws: Path) -> None:
    space = Workspace.load(ws)
    try:
        info = workspace_status(space)
    finally:
        space.close()
    assert info["customers"] == 0 and info["consent"] == {}
    assert info["queue"]["next_not_before"] is None
    assert info["attention"] == {"total": 0, "by_reason": {}, "oldest": []}


def test_status_survives_a_broken_campaign_file(ws: Path, cli: Cli) -> None:
    (ws / "campaigns" / "broken.toml").write_text("kind = [\n")
    result = cli("status", "--json")
    assert result.exit_code == 0, result.stderr
    due = json.loads(result.stdout)["due"]
    assert not due["available"] or "broken" in (due["error"] or "")


def test_due_lists_the_planners_occurrences(ws: Path) -> None:
    """``due`` is what ``run --due`` would plan: the latest occurrence due, older ones missed."""
    (ws / "campaigns" / "weekly.toml").write_text(
        'kind = "update"\ntemplate = "nps"\nchannels = ["sms"]\n'
        '[schedule]\nstart = "2026-11-02T09:00:00Z"\nrrule = "FREQ=WEEKLY"\n'
    )
    clock.set_now(datetime(2026, 11, 17, 12, tzinfo=UTC))  # the autouse fixture resets it
    space = Workspace.load(ws)
    try:
        due = due_campaigns(space)
    finally:
        space.close()
    weekly = [o for o in due["occurrences"] if o["campaign"] == "weekly"]
    assert due["error"] is None
    assert weekly == [
        {"campaign": "weekly", "occurrence": "2026-11-02T09:00:00Z", "missed": True},
        {"campaign": "weekly", "occurrence": "2026-11-09T09:00:00Z", "missed": True},
        {"campaign": "weekly", "occurrence": "2026-11-16T09:00:00Z", "missed": False},
    ]
