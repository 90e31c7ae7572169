"""replies ingest, conversations list|show|close, reply and serve through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach import clock
from outreach.workspace import Workspace
from tests.conftest import Cli
from tests.test_inbound import (
    CLOSED,
    OPEN,
    add_customers,
    add_survey_delivery,
    sent_files,
    write_reply_templates,
)


@pytest.fixture
def prepared(ws: Path) -> Iterator[Path]:
    """A workspace with three customers (anna opted in on sms, joost on whatsapp)."""
    write_reply_templates(ws)
    clock.set_now(OPEN)
    workspace = Workspace.load(ws)
    add_customers(workspace, {"anna": ["sms"], "joost": ["whatsapp"]})
    add_survey_delivery(workspace, "joost", channel="whatsapp")
    workspace.close()
    clock.set_now(None)
    yield ws


def jsonl(*rows: dict[str, str]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


REPLIES = jsonl(
    {
        "channel": "sms",
        "from": "+31612345601",
        "text": "Where is my parcel?",
        "received_at": "2026-12-01T10:00:00Z",
        "id": "m1",
    },
    {
        "channel": "whatsapp",
        "from": "+31612345602",
        "text": "9/10",
        "received_at": "2026-12-01T10:05:00Z",
        "id": "m2",
    },
    {
        "channel": "sms",
        "from": "+31612345609",
        "text": "STOP",
        "received_at": "2026-12-01T10:04:00Z",
        "id": "m3",
    },
)


def test_ingest_from_stdin_reports_what_happened_as_json(prepared: Path, cli: Cli) -> None:
    result = cli("--now", OPEN, "replies", "ingest", "-", "--json", input=REPLIES)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["stored"] == 3
    assert summary["keywords"] == {"STOP": 1}
    assert summary["survey_answers"] == 1
    assert summary["new_contacts"] == 1
    assert summary["rejected"] == []
    assert (summary["replies"], summary["replies_sent"]) == (2, 2)  # STOP confirmation, thanks
    again = cli("--now", OPEN, "replies", "ingest", "-", "--json", input=REPLIES)
    assert json.loads(again.stdout)["duplicates"] == 3


def test_ingest_of_a_file_with_bad_lines_exits_3_and_names_them(
    prepared: Path, cli: Cli, tmp_path: Path
) -> None:
    file = tmp_path / "replies.jsonl"
    file.write_bytes(REPLIES.encode() + b'[1, 2]\n{"channel": "sms", "from": "+1", "text": 5}\n')
    result = cli("--now", OPEN, "replies", "ingest", str(file))
    assert result.exit_code == 3
    assert "replies.jsonl:4: expected a JSON object, got a list" in result.stderr
    assert "replies.jsonl:5:" in result.stderr
    assert "3 messages stored" in result.stdout


def test_ingest_of_a_missing_file_is_a_usage_error(prepared: Path, cli: Cli) -> None:
    result = cli("replies", "ingest", "no-such-file.jsonl")
    assert result.exit_code == 2
    assert "no-such-file.jsonl: cannot read it" in result.stderr


def test_ingest_twilio_payloads_with_format(prepared: Path, cli: Cli) -> None:
    lines = (
        "MessageSid=SM1&From=%2B31612345601&To=%2B3197010000000&Body=stop+&AccountSid=AC1\n"
        + json.dumps(
            {
                "MessageSid": "SM2",
                "From": "whatsapp:+31612345602",
                "Body": "Hi there",
                "AccountSid": "AC1",
            }
        )
        + "\n"
    )
    result = cli(
        "--now",
        OPEN,
        "replies",
        "ingest",
        "-",
        "--format",
        "twilio",
        "--channel",
        "sms",
        "--json",
        input=lines,
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["keywords"] == {"STOP": 1}
    assert summary["stored"] == 2


def test_list_show_and_close(prepared: Path, cli: Cli) -> None:
    cli("--now", "2026-12-01T10:30:00Z", "replies", "ingest", "-", input=REPLIES)
    listed = cli("conversations", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = {r["customer_id"]: r for r in json.loads(listed.stdout)}
    assert rows["anna"]["needs_attention"] is True
    assert rows["anna"]["attention_reason"] == "reply"
    assert rows["joost"]["needs_attention"] is False
    assert rows["contact:sms:+31612345609"]["verified"] is False
    attention = json.loads(cli("conversations", "list", "--needs-attention", "--json").stdout)
    assert [r["customer_id"] for r in attention] == ["anna"]
    later = json.loads(
        cli("conversations", "list", "--since", "2026-12-01T10:04:00Z", "--json").stdout
    )
    assert {r["customer_id"] for r in later} == {"joost", "contact:sms:+31612345609"}
    relative = json.loads(
        cli(
            "--now", "2026-12-01T10:34:00Z", "conversations", "list", "--since", "30m", "--json"
        ).stdout
    )
    assert {r["customer_id"] for r in relative} == {"joost", "contact:sms:+31612345609"}

    shown = cli("conversations", "show", "joost", "--json")
    transcript = json.loads(shown.stdout)
    assert [(m["direction"], m["text"]) for m in transcript["messages"]] == [
        ("in", "9/10"),
        ("out", "THANKS joost"),
    ]
    assert transcript["messages"][0]["survey"]["answer"] == "9"
    assert transcript["messages"][0]["at"] == "2026-12-01T10:05:00Z"

    people = cli("conversations", "show", "joost")
    assert "2026-12-01 11:05 CET" in people.stdout  # workspace zone for people
    assert "answer 9" in people.stdout
    table = cli("conversations", "list")
    assert "anna" in table.stdout and "reply" in table.stdout

    closed = cli("conversations", "close", "anna")
    assert closed.exit_code == 0, closed.stderr
    after = {r["customer_id"]: r for r in json.loads(cli("conversations", "list", "--json").stdout)}
    assert after["anna"]["status"] == "closed"
    assert after["anna"]["needs_attention"] is False


def test_show_of_an_unknown_customer_is_exit_2(prepared: Path, cli: Cli) -> None:
    result = cli("conversations", "show", "nobody")
    assert result.exit_code == 2
    assert 'customer "nobody" does not exist' in result.stderr


def test_reply_goes_on_the_channel_last_written_and_clears_attention(
    prepared: Path, cli: Cli
) -> None:
    cli("--now", OPEN, "replies", "ingest", "-", input=REPLIES)
    result = cli("--now", OPEN, "reply", "anna", "It arrives tomorrow.", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["channel"] == "sms"
    files = [f for f in sent_files(prepared, "sms") if f["customer_id"] == "anna"]
    assert [f["body"] for f in files] == ["It arrives tomorrow."]
    rows = {r["customer_id"]: r for r in json.loads(cli("conversations", "list", "--json").stdout)}
    assert rows["anna"]["needs_attention"] is False
    transcript = json.loads(cli("conversations", "show", "anna", "--json").stdout)
    assert transcript["messages"][-1]["direction"] == "out"
    assert transcript["messages"][-1]["text"] == "It arrives tomorrow."


def test_reply_to_an_unknown_contact_within_24_hours_of_their_message(
    prepared: Path, cli: Cli
) -> None:
    hello = jsonl(
        {"channel": "sms", "from": "+31612345677", "text": "hello", "received_at": OPEN, "id": "h1"}
    )
    cli("--now", OPEN, "replies", "ingest", "-", input=hello)
    ok = cli("--now", OPEN, "reply", "contact:sms:+31612345677", "Hi! Who are you?")
    assert ok.exit_code == 0, ok.stderr
    late = cli("--now", "2026-12-03T10:00:00Z", "reply", "contact:sms:+31612345677", "Hello?")
    assert late.exit_code == 2
    assert "not opted in on sms nor written there in the last 24 hours" in late.stderr


def test_reply_on_a_channel_the_customer_opted_out_of_is_refused(prepared: Path, cli: Cli) -> None:
    stop = jsonl(
        {"channel": "sms", "from": "+31612345601", "text": "STOP", "received_at": OPEN, "id": "s1"}
    )
    cli("--now", OPEN, "replies", "ingest", "-", input=stop)
    result = cli("--now", OPEN, "reply", "anna", "Sorry to see you go", "--channel", "sms")
    assert result.exit_code == 2
    assert "opted out on sms" in result.stderr
    assert [f["body"] for f in sent_files(prepared, "sms")] == ["STOPPED anna"]


def test_out_of_hours_auto_reply_through_the_cli(prepared: Path, cli: Cli) -> None:
    msg = jsonl(
        {
            "channel": "sms",
            "from": "+31612345601",
            "text": "anyone?",
            "received_at": CLOSED,
            "id": "z1",
        }
    )
    result = cli("--now", CLOSED, "replies", "ingest", "-", "--json", input=msg)
    assert json.loads(result.stdout)["auto_replies"] == 1
    assert [f["body"][:12] for f in sent_files(prepared, "sms")] == ["CLOSED until"]


def test_every_command_has_help(cli: Cli) -> None:
    for args in (
        ["replies", "ingest"],
        ["conversations", "list"],
        ["conversations", "show"],
        ["conversations", "close"],
        ["reply"],
        ["serve"],
    ):
        result = cli(*args, "--help")
        assert result.exit_code == 0, (args, result.stderr)
        assert "Example" in result.stdout or "Usage" in result.stdout


def test_ingest_whatsapp_cloud_and_webhook_payloads(prepared: Path, cli: Cli) -> None:
    meta = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "contacts": [{"profile": {"name": "Joost"}, "wa_id": "31612345602"}],
                            "messages": [
                                {
                                    "from": "31612345602",
                                    "id": "wamid.B1",
                                    "timestamp": "1796119200",
                                    "type": "text",
                                    "text": {"body": "negen"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    result = cli(
        "--now",
        OPEN,
        "replies",
        "ingest",
        "-",
        "--format",
        "whatsapp-cloud",
        "--channel",
        "whatsapp",
        "--json",
        input=json.dumps(meta) + "\n[]\n",
    )
    assert result.exit_code == 3  # the second line is a list, not a payload
    summary = json.loads(result.stdout)
    assert summary["survey_answers"] == 1
    assert summary["rejected"] == [{"line": 2, "reason": "expected a JSON object, got a list"}]
    hook = json.dumps({"from": "anna", "text": "hello from the app", "id": "app-1"})
    result = cli(
        "--now",
        OPEN,
        "replies",
        "ingest",
        "-",
        "--format",
        "webhook",
        "--channel",
        "email",
        "--json",
        input=hook + "\n",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["stored"] == 1


def test_a_reply_that_cannot_be_rendered_is_reported_and_consent_still_recorded(
    prepared: Path, cli: Cli
) -> None:
    # a missing template falls back to the built-in text; a broken one cannot be sent
    (prepared / "templates" / "stop_confirmation" / "sms.j2").write_text(
        "{{ customer.no_such_column }}", encoding="utf-8"
    )
    stop = jsonl(
        {"channel": "sms", "from": "+31612345601", "text": "STOP", "received_at": OPEN, "id": "t1"}
    )
    result = cli("--now", OPEN, "replies", "ingest", "-", input=stop)
    assert result.exit_code == 3, result.stderr  # a reply it had to send was not sent
    assert "reply not sent:" in result.stderr
    assert "0 of 1 replies sent" in result.stdout
    workspace = Workspace.load(prepared)
    try:
        assert workspace.store.consent.current_consent_for("anna", "sms") == "opted_out"
    finally:
        workspace.close()
