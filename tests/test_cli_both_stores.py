"""The commands end to end on both stores: the same workspace, once on its SQLite file and
once on PostgreSQL (OUTREACH_DATABASE_URL), must give the same results."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach.workspace import Workspace
from tests.conftest import Cli
from tests.postgresql import empty_database
from tests.servers.fixtures import ENV, TWILIO_SID, TWILIO_TOKEN
from tests.servers.twilio import TwilioEmulator
from tests.test_server import (
    Served,
    standard_webhook,
    twilio_post,
    write_config,
)

NOW = "2026-12-01T09:30:00Z"
LATER = "2026-12-01T10:15:00Z"
CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in,plan
nl1,Anna de Vries,anna@example.nl,+31612345601,sms,nl-NL,Europe/Amsterdam,sms;email,pro
nl2,Joost Bakker,joost@example.nl,+31612345602,email,nl-NL,Europe/Amsterdam,email,pro
nl3,Daan Mulder,daan@example.nl,+31612345606,sms,nl-NL,Europe/Amsterdam,,basic
"""
REPLY = (
    json.dumps(
        {"channel": "sms", "from": "+31612345601", "text": "9", "received_at": LATER, "id": "in-1"}
    )
    + "\n"
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Which store the workspace uses: its SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    url = request.getfixturevalue("postgresql_database")
    monkeypatch.setenv("OUTREACH_DATABASE_URL", url)
    yield "postgresql"
    empty_database(url)


@pytest.fixture
def imported(database: str, ws: Path, cli: Cli) -> Path:
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    result = cli("customers", "import", str(ws / "customers.csv"))
    assert result.exit_code == 0, result.stderr
    return ws


def json_of(cli: Cli, *args: str, input: str | None = None) -> object:
    result = cli(*args, "--json", input=input)
    assert result.exit_code in (0, 3), result.stderr
    return json.loads(result.stdout)


def test_run_ingest_export_and_report_agree_on_both_stores(
    database: str, imported: Path, cli: Cli
) -> None:
    first = json_of(cli, "--now", NOW, "run", "nps")
    assert isinstance(first, dict)
    files = sorted(p.name for p in (imported / "outbox").rglob("*") if p.is_file())
    assert len(files) == 2  # nl1 by sms, nl2 by email; nl3 has no consent
    again = json_of(cli, "--now", NOW, "run", "nps")
    assert isinstance(again, dict)
    assert sorted(p.name for p in (imported / "outbox").rglob("*") if p.is_file()) == files

    ingested = json_of(cli, "--now", LATER, "replies", "ingest", "-", input=REPLY)
    assert isinstance(ingested, dict) and ingested["stored"] == 1
    repeated = json_of(cli, "--now", LATER, "replies", "ingest", "-", input=REPLY)
    assert isinstance(repeated, dict) and repeated["stored"] == 0

    exported = cli("export", "replies", "--format", "csv")
    assert exported.exit_code == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["customer_id"], r["campaign"], r["answer"], r["text"]) for r in rows] == [
        ("nl1", "nps", "9", "9")
    ]

    report = json_of(cli, "report", "nps")
    assert isinstance(report, dict)
    text = json.dumps(report)
    assert '"sent": 2' in text or '"sent":2' in text, text
    assert '"replied": 1' in text, text

    status = json_of(cli, "status")
    assert isinstance(status, dict)
    assert status["customers"] == 3

    listed = json_of(cli, "customers", "list", "--where", "plan = 'pro'")
    assert isinstance(listed, list)
    assert [c["id"] for c in listed] == ["nl1", "nl2"]


@pytest.fixture
def serving(database: str, ws: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with TwilioEmulator(TWILIO_SID, TWILIO_TOKEN) as twilio:
        write_config(ws, twilio.url)
        loaded = Workspace.load(ws)
        with loaded.store.write():
            loaded.store.customers.upsert_customers(
                ["id", "name", "phone"], [["anna", "Anna", "+31612345601"]], NOW
            )
        loaded.close()
        server = Served(Workspace.load(ws))
        try:
            yield server
        finally:
            server.stop()


def test_serve_stores_a_webhook_once_on_both_stores(serving: Served, ws: Path) -> None:
    body, headers = standard_webhook({"from": "anna", "text": "hello"}, "msg_1")
    first = serving.http.post("/webhooks/hooks", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 1
    again = serving.http.post("/webhooks/hooks", content=body, headers=headers)
    assert again.json()["duplicates"] == 1
    sms = twilio_post(serving, {"From": "+31612345601", "Body": "STOP", "MessageSid": "SM1"})
    assert sms.status_code == 200, sms.text
    assert serving.http.get("/healthz").json() == {"status": "ok"}
    workspace = Workspace.load(ws)
    try:
        texts = [
            m["text"]
            for m in workspace.store.conversations.transcript("anna")
            if m["direction"] == "in"
        ]
        assert texts == ["hello", "STOP"]
        assert workspace.store.consent.current_consent_for("anna", "sms") == "opted_out"
    finally:
        workspace.close()
