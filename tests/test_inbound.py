"""Inbound domain: matching, dedup, keywords, survey answers, attention, out-of-hours replies.

Everything runs on a real workspace (``outreach init``), a real SQLite file and the real
sending engine with the outbox provider: a reply that was "sent" is a file in outbox/.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outreach import clock, consent
from outreach.channels.base import StatusEvent
from outreach.conversations.inbox import InboundSummary, Inbox, apply_events, normalize_phone
from outreach.conversations.ingest import ingest
from outreach.store.sqlite import SqliteStore
from outreach.workspace import Workspace

# Tuesday 1 December 2026, 11:00 in Amsterdam: inside business hours (Mon-Fri 09:00-17:30)
OPEN = "2026-12-01T10:00:00Z"
# Saturday 5 December 2026, 12:00 in Amsterdam: closed
CLOSED = "2026-12-05T11:00:00Z"

REPLY_TEMPLATES = {
    "stop_confirmation": "STOPPED {{ customer.id }}",
    "start_confirmation": "STARTED {{ customer.id }}",
    "help": "HELP: {{ help_text }}",
    "out_of_hours": "CLOSED until {{ next_opening }}",
    "nps_thanks": "THANKS {{ customer.id }}",
}

CUSTOMERS = [
    # id, name, email, phone, preferred_channel, timezone
    ("anna", "Anna de Vries", "anna@example.nl", "+31612345601", "sms", "Europe/Amsterdam"),
    ("joost", "Joost Bakker", "joost@example.nl", "+31612345602", "whatsapp", "Europe/Amsterdam"),
    ("emma", "Emma Smith", "emma@example.co.uk", "+447911123423", "sms", "Europe/London"),
]


def write_reply_templates(root: Path) -> None:
    """Plain one-line reply templates, so that tests can check exactly what was sent."""
    for name, text in REPLY_TEMPLATES.items():
        folder = root / "templates" / name
        folder.mkdir(parents=True, exist_ok=True)
        for channel in ("sms", "whatsapp"):
            (folder / f"{channel}.j2").write_text(text + "\n", encoding="utf-8")
        for stale in folder.glob("*.nl*.j2"):
            stale.unlink()


def sqlite_store(workspace: Workspace) -> SqliteStore:
    """The workspace's store, for the tests that reach its SQLite tables directly."""
    store = workspace.store
    assert isinstance(store, SqliteStore)
    return store


def sqlite_conn(workspace: Workspace) -> sqlite3.Connection:
    return sqlite_store(workspace).conn


def add_customers(workspace: Workspace, opted_in: dict[str, list[str]] | None = None) -> None:
    store = workspace.store
    with store.write():
        store.customers.upsert_customers(
            ["id", "name", "email", "phone", "preferred_channel", "timezone"],
            CUSTOMERS,
            clock.iso(clock.now()),
        )
    for customer, channels in (opted_in or {}).items():
        for channel in channels:
            consent.record(store, workspace.config, [customer], channel, "opted_in", source="cli")


def add_survey_delivery(
    workspace: Workspace,
    customer: str,
    *,
    channel: str = "sms",
    sent_at: str = "2026-12-01T09:30:00Z",
    survey_type: str = "nps",
    choices: list[str] | None = None,
    expires_seconds: int = 7 * 86400,
    campaign: str = "nps",
    occurrence: str = "2026-12-01T09:00:00Z",
) -> str:
    """A campaign delivery that was sent, for an occurrence with a survey snapshot."""
    survey = {
        "question": "How likely are you to recommend us?",
        "type": survey_type,
        "choices": choices or [],
        "expires_seconds": expires_seconds,
        "follow_up": "nps_thanks",
    }
    delivery = f"d-{campaign}-{customer}-{occurrence}"
    with sqlite_store(workspace).write() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO occurrences (campaign, occurrence, kind, status, audience, "
            "planned_at, survey) VALUES (?, ?, 'survey', 'planned', 1, ?, ?)",
            (campaign, occurrence, sent_at, json.dumps(survey)),
        )
        conn.execute(
            "INSERT INTO deliveries (id, campaign, occurrence, customer_id, channel, purpose, "
            "template, status, not_before, provider_message_id, created_at, updated_at, sent_at) "
            "VALUES (?, ?, ?, ?, ?, 'campaign', 'nps', 'sent', ?, ?, ?, ?, ?)",
            (
                delivery,
                campaign,
                occurrence,
                customer,
                channel,
                sent_at,
                f"pm-{delivery}",
                sent_at,
                sent_at,
                sent_at,
            ),
        )
    return delivery


def lines(*messages: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(m).encode() + b"\n" for m in messages))


def msg(sender: str, text: str, mid: str, channel: str = "sms", at: str = OPEN) -> dict[str, Any]:
    return {"channel": channel, "from": sender, "text": text, "received_at": at, "id": mid}


def sent_files(root: Path, channel: str) -> list[dict[str, Any]]:
    folder = root / "outbox" / channel
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def conversation(workspace: Workspace, customer: str) -> dict[str, Any]:
    row = workspace.store.conversations.get_conversation(customer)
    assert row is not None
    return row


def survey_rows(workspace: Workspace) -> list[tuple[Any, ...]]:
    conn = sqlite_conn(workspace)
    return conn.execute(
        "SELECT customer_id, campaign, type, answer, score, valid FROM survey_responses ORDER BY id"
    ).fetchall()


@pytest.fixture
def workspace(ws: Path) -> Iterator[Workspace]:
    write_reply_templates(ws)
    clock.set_now(OPEN)
    loaded = Workspace.load(ws)
    yield loaded
    loaded.close()


def test_a_reply_is_matched_by_phone_written_locally_and_needs_attention(
    workspace: Workspace,
) -> None:
    add_customers(workspace)
    summary = ingest(workspace, lines(msg("06 12345601", "When does my order arrive?", "m1")))
    assert summary.stored == 1
    assert not summary.rejected
    row = conversation(workspace, "anna")
    assert (row["needs_attention"], row["attention_reason"]) == (1, "reply")
    assert row["last_inbound_channel"] == "sms"
    messages = workspace.store.conversations.transcript("anna")
    assert [(m["direction"], m["text"], m["address"]) for m in messages] == [
        ("in", "When does my order arrive?", "+31612345601")
    ]
    assert sent_files(workspace.root, "sms") == []  # inside business hours: no auto-reply


def test_whatsapp_prefix_and_spacing_are_normalized() -> None:
    assert normalize_phone("whatsapp:+31612345601", "NL") == "+31612345601"
    assert normalize_phone("+31 6 1234 5601", "NL") == "+31612345601"
    assert normalize_phone("0612345601", "NL") == "+31612345601"
    assert normalize_phone("0031612345601", "NL") == "+31612345601"
    assert normalize_phone("31612345601", "NL") == "+31612345601"  # WhatsApp wa_id
    assert normalize_phone("07911 123423", "GB") == "+447911123423"
    assert normalize_phone("(06) 1234-5601", "NL") == "+31612345601"
    assert normalize_phone("not a number", "NL") == "not a number"


def test_stop_in_lower_case_with_spaces_opts_out_and_confirms_once_even_when_replayed(
    workspace: Workspace,
) -> None:
    add_customers(workspace, {"anna": ["sms", "email"]})
    first = ingest(workspace, lines(msg("+31612345601", "stop   ", "m-stop")))
    again = ingest(workspace, lines(msg("+31612345601", "stop   ", "m-stop")))
    assert first.keywords == {"STOP": 1}
    assert (again.stored, again.duplicates, again.keywords) == (0, 1, {})
    assert workspace.store.consent.current_consent_for("anna", "sms") == "opted_out"
    assert workspace.store.consent.current_consent_for("anna", "email") == "opted_in"
    history = [h for h in workspace.store.consent.consent_history("anna") if h["channel"] == "sms"]
    assert [(h["status"], h["source"]) for h in history] == [
        ("opted_in", "cli"),
        ("opted_out", "keyword:STOP"),
    ]
    confirmations = sent_files(workspace.root, "sms")
    assert [(c["to"], c["body"], c["customer_id"]) for c in confirmations] == [
        ("+31612345601", "STOPPED anna", "anna")
    ]
    assert conversation(workspace, "anna")["needs_attention"] == 0
    out = [m for m in workspace.store.conversations.transcript("anna") if m["direction"] == "out"]
    assert [m["text"] for m in out] == ["STOPPED anna"]


def test_localized_and_configured_stop_words_count(workspace: Workspace) -> None:
    add_customers(workspace, {"joost": ["whatsapp"]})
    ingest(workspace, lines(msg("+31612345602", "Afmelden!", "w1", channel="whatsapp")))
    history = workspace.store.consent.consent_history("joost")
    assert history[-1]["source"] == "keyword:AFMELDEN"
    assert history[-1]["status"] == "opted_out"


def test_start_after_stop_opts_in_again_and_confirms(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    ingest(workspace, lines(msg("+31612345601", "STOP", "a1"), msg("+31612345601", "Yes", "a2")))
    assert workspace.store.consent.current_consent_for("anna", "sms") == "opted_in"
    sources = [h["source"] for h in workspace.store.consent.consent_history("anna")]
    assert sources == ["cli", "keyword:STOP", "keyword:YES"]
    assert [c["body"] for c in sent_files(workspace.root, "sms")] in (
        ["STOPPED anna", "STARTED anna"],
        ["STARTED anna", "STOPPED anna"],
    )


def test_yes_from_an_opted_in_customer_is_a_survey_answer_not_a_keyword(
    workspace: Workspace,
) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    add_survey_delivery(workspace, "anna", survey_type="yes_no")
    summary = ingest(workspace, lines(msg("+31612345601", "YES", "y1")))
    assert summary.keywords == {}
    assert summary.survey_answers == 1
    assert survey_rows(workspace) == [("anna", "nps", "yes_no", "yes", None, 1)]
    assert [h["source"] for h in workspace.store.consent.consent_history("anna")] == ["cli"]
    assert [c["body"] for c in sent_files(workspace.root, "sms")] == ["THANKS anna"]


def test_help_answers_with_the_help_text(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    ingest(workspace, lines(msg("+31612345601", "help?", "h1")))
    [reply] = sent_files(workspace.root, "sms")
    assert reply["body"] == f"HELP: {workspace.config.help_text}"
    assert [h["source"] for h in workspace.store.consent.consent_history("anna")] == ["cli"]


def test_stop_in_other_words_changes_nothing_but_needs_attention(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    add_survey_delivery(workspace, "anna")
    ingest(workspace, lines(msg("+31612345601", "niet meer sturen aub", "i1")))
    assert workspace.store.consent.current_consent_for("anna", "sms") == "opted_in"
    row = conversation(workspace, "anna")
    assert (row["needs_attention"], row["attention_reason"]) == (1, "opt_out_intent")
    assert survey_rows(workspace) == []
    # a later ordinary reply does not hide the stronger reason
    ingest(workspace, lines(msg("+31612345601", "and where is my parcel", "i2")))
    assert conversation(workspace, "anna")["attention_reason"] == "opt_out_intent"


def test_an_unknown_sender_becomes_an_unverified_contact_with_its_own_conversation(
    workspace: Workspace,
) -> None:
    add_customers(workspace)
    summary = ingest(
        workspace,
        lines(
            msg("+31699999999", "Who is this?", "u1"),
            msg("+31699999999", "Hello??", "u2"),
        ),
    )
    assert summary.new_contacts == 1
    conn = sqlite_conn(workspace)
    contact = conn.execute(
        "SELECT id, phone, verified FROM customers WHERE id LIKE 'contact:%'"
    ).fetchall()
    assert contact == [("contact:sms:+31699999999", "+31699999999", 0)]
    transcript = workspace.store.conversations.transcript("contact:sms:+31699999999")
    assert [m["text"] for m in transcript] == ["Who is this?", "Hello??"]
    assert conversation(workspace, "contact:sms:+31699999999")["needs_attention"] == 1


def test_a_valid_nps_answer_on_another_channel_is_recorded_and_followed_up(
    workspace: Workspace,
) -> None:
    add_customers(workspace, {"joost": ["whatsapp", "sms"]})
    add_survey_delivery(workspace, "joost", channel="sms")
    summary = ingest(workspace, lines(msg("+31612345602", "a 9!", "w9", channel="whatsapp")))
    assert (summary.survey_answers, summary.needs_attention) == (1, 0)
    assert survey_rows(workspace) == [("joost", "nps", "nps", "9", 9, 1)]
    assert [c["body"] for c in sent_files(workspace.root, "whatsapp")] == ["THANKS joost"]
    assert conversation(workspace, "joost")["needs_attention"] == 0
    # the survey is answered: a later message is conversation, not a second answer
    ingest(workspace, lines(msg("+31612345602", "10", "w10", channel="whatsapp")))
    assert len(survey_rows(workspace)) == 1
    assert conversation(workspace, "joost")["attention_reason"] == "reply"


def test_an_unclear_answer_is_kept_and_needs_attention(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    add_survey_delivery(workspace, "anna")
    summary = ingest(workspace, lines(msg("+31612345601", "8 or 9, hard to say", "q1")))
    assert summary.unclear_answers == 1
    assert survey_rows(workspace) == [("anna", "nps", "nps", None, None, 0)]
    row = conversation(workspace, "anna")
    assert (row["needs_attention"], row["attention_reason"]) == (1, "unclear_answer")
    assert sent_files(workspace.root, "sms") == []
    # the survey stays open: a clear second try counts
    ingest(workspace, lines(msg("+31612345601", "negen", "q2")))
    assert survey_rows(workspace)[-1] == ("anna", "nps", "nps", "9", 9, 1)


def test_choice_answers_use_the_snapshot_choices(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    add_survey_delivery(
        workspace, "anna", survey_type="choice", choices=["Delivery speed", "Price", "Café"]
    )
    ingest(workspace, lines(msg("+31612345601", "cafe", "c1")))
    assert survey_rows(workspace) == [("anna", "nps", "choice", "Café", None, 1)]


def test_an_expired_survey_makes_a_reply_plain_conversation(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    add_survey_delivery(
        workspace, "anna", sent_at="2026-11-20T09:00:00Z", expires_seconds=3 * 86400
    )
    ingest(workspace, lines(msg("+31612345601", "9", "e1")))
    assert survey_rows(workspace) == []
    assert conversation(workspace, "anna")["attention_reason"] == "reply"


def test_the_latest_open_survey_is_answered(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    add_survey_delivery(
        workspace,
        "anna",
        campaign="csat",
        survey_type="csat",
        sent_at="2026-11-30T09:00:00Z",
        occurrence="2026-11-30T09:00:00Z",
    )
    add_survey_delivery(workspace, "anna", campaign="nps", sent_at="2026-12-01T09:00:00Z")
    ingest(workspace, lines(msg("+31612345601", "8", "l1")))
    assert survey_rows(workspace) == [("anna", "nps", "nps", "8", 8, 1)]


def test_out_of_hours_one_auto_reply_per_closed_period(workspace: Workspace) -> None:
    add_customers(workspace, {"anna": ["sms"]})
    clock.set_now(CLOSED)
    summary = ingest(
        workspace,
        lines(
            msg("+31612345601", "Is anyone there?", "o1", at=CLOSED),
            msg("+31612345601", "Hello?", "o2", at=CLOSED),
        ),
    )
    assert summary.auto_replies == 1
    [auto] = sent_files(workspace.root, "sms")
    # next opening: Monday 7 December 09:00 Amsterdam, shown in the customer's zone
    assert auto["body"].startswith("CLOSED until 2026-12-07 09:00:00+01:00")
    assert conversation(workspace, "anna")["auto_reply_until"] == "2026-12-07T08:00:00Z"
    # Sunday, same closed period: nothing new
    clock.set_now("2026-12-06T12:00:00Z")
    ingest(workspace, lines(msg("+31612345601", "???", "o3", at="2026-12-06T12:00:00Z")))
    assert len(sent_files(workspace.root, "sms")) == 1
    # Monday evening is the next closed period: one more
    clock.set_now("2026-12-07T19:00:00Z")
    ingest(workspace, lines(msg("+31612345601", "still waiting", "o4", at="2026-12-07T19:00:00Z")))
    assert len(sent_files(workspace.root, "sms")) == 2


def test_out_of_hours_reply_goes_only_where_allowed(workspace: Workspace) -> None:
    """A customer who opted out, writing again, is stored but gets no auto-reply."""
    add_customers(workspace, {"emma": ["email"]})
    consent.record(workspace.store, workspace.config, ["emma"], "sms", "opted_out", source="cli")
    clock.set_now(CLOSED)
    summary = ingest(workspace, lines(msg("+447911123423", "hi", "x1", at=CLOSED)))
    assert summary.stored == 1
    assert summary.auto_replies == 1  # queued, and refused by the engine's consent check
    assert sent_files(workspace.root, "sms") == []
    conn = sqlite_conn(workspace)
    reason = conn.execute(
        "SELECT status, reason FROM deliveries WHERE purpose = 'auto_reply'"
    ).fetchall()
    assert reason == [("skipped", "opted_out")]


def test_a_closed_conversation_is_reopened_by_a_new_message(workspace: Workspace) -> None:
    from outreach.conversations.agents import close_conversation

    add_customers(workspace)
    ingest(workspace, lines(msg("+31612345601", "hi", "r1")))
    close_conversation(workspace.store, "anna")
    assert conversation(workspace, "anna")["status"] == "closed"
    assert conversation(workspace, "anna")["needs_attention"] == 0
    ingest(workspace, lines(msg("+31612345601", "me again", "r2")))
    assert conversation(workspace, "anna")["status"] == "open"
    assert conversation(workspace, "anna")["needs_attention"] == 1


def test_one_conversation_across_channels_in_order(workspace: Workspace) -> None:
    add_customers(workspace)
    ingest(
        workspace,
        lines(
            msg("+31612345601", "first on sms", "s1", at="2026-12-01T09:00:00Z"),
            msg(
                "anna@example.nl", "then by email", "e1", channel="email", at="2026-12-01T09:05:00Z"
            ),
            msg(
                "+31612345601",
                "then on whatsapp",
                "w1",
                channel="whatsapp",
                at="2026-12-01T09:10:00Z",
            ),
        ),
    )
    conn = sqlite_conn(workspace)
    rows = conn.execute("SELECT count(*) FROM conversations").fetchone()
    assert rows == (1,)
    transcript = workspace.store.conversations.transcript("anna")
    assert [(m["channel"], m["text"]) for m in transcript] == [
        ("sms", "first on sms"),
        ("email", "then by email"),
        ("whatsapp", "then on whatsapp"),
    ]


BAD_LINES = [
    (b'{"channel":"sms","from":"+31612345601","text":"ok","id":"g1"}', None),
    (b'{"channel":"sms","from":"+31612345601","text":"caf\xe9","id":"b1"}', "not UTF-8"),
    (b'{"channel":"sms","from":"+31612345601","text":"a\\u0000b","id":"b2"}', "NUL"),
    (b'{"channel":"sms","from":"+31612345601","text":"x\\ud800y","id":"b3"}', "surrogate"),
    (b'["channel","sms"]', "expected a JSON object, got a list"),
    (b'"just a string"', "expected a JSON object, got a string"),
    (b'{"channel":"sms","text":"no sender","id":"b4"}', '"from" is missing'),
    (b'{"channel":"fax","from":"+31612345601","text":"x","id":"b5"}', "not configured"),
    (b'{"channel":"sms","from":"+31612345601","text":"x","received_at":"soon"}', "not a time"),
    (b"{not json", "not JSON"),
    (
        b'{"channel":"sms","from":"+31612345601","text":"' + b"x" * (2 * 1024 * 1024) + b'"}',
        "longer than",
    ),
    (b'{"channel":"sms","from":"+31612345601","text":"\xf0\x9f\x91\x8d","id":"g2"}', None),
    (b"\x00\x00\x00", "NUL"),
]


def test_bad_lines_are_rejected_with_their_number_and_the_rest_kept(
    workspace: Workspace,
) -> None:
    add_customers(workspace)
    data = b"\n".join(line for line, _ in BAD_LINES) + b"\n\n"
    summary = ingest(workspace, io.BytesIO(data))
    expected = [(n, why) for n, (_, why) in enumerate(BAD_LINES, 1) if why]
    assert [n for n, _ in summary.rejected] == [n for n, _ in expected]
    for (_, reason), (_, why) in zip(summary.rejected, expected, strict=True):
        assert why in reason
    texts = [m["text"] for m in workspace.store.conversations.transcript("anna")]
    assert texts == ["ok", "👍"]


def test_status_events_never_move_a_delivery_backwards(workspace: Workspace) -> None:
    add_customers(workspace)
    delivery = add_survey_delivery(workspace, "anna")
    pid = f"pm-{delivery}"
    summary = InboundSummary()
    at = datetime(2026, 12, 1, 10, tzinfo=UTC)

    def status_of() -> str:
        conn = sqlite_conn(workspace)
        row = conn.execute("SELECT status FROM deliveries WHERE id = ?", (delivery,)).fetchone()
        return str(row[0])

    def send(status: str) -> None:
        apply_events(
            workspace.store, workspace.config, [(1, StatusEvent("sms", pid, status, at))], summary
        )

    send("read")
    assert status_of() == "read"
    send("delivered")
    send("sent")
    send("failed")
    assert status_of() == "read"
    send("read")
    apply_events(
        workspace.store,
        workspace.config,
        [(1, StatusEvent("sms", "no-such-id", "delivered", at))],
        summary,
    )
    assert (summary.status_updates, summary.status_ignored) == (1, 5)


def test_failed_is_recorded_from_sent_with_the_provider_reason(workspace: Workspace) -> None:
    add_customers(workspace)
    delivery = add_survey_delivery(workspace, "anna")
    event = StatusEvent(
        "sms",
        f"pm-{delivery}",
        "failed",
        datetime(2026, 12, 1, tzinfo=UTC),
        error_code="30006",
        error_message="Landline or unreachable carrier",
    )
    apply_events(workspace.store, workspace.config, [(1, event)], InboundSummary())
    conn = sqlite_conn(workspace)
    row = conn.execute(
        "SELECT status, reason, error FROM deliveries WHERE id = ?", (delivery,)
    ).fetchone()
    assert row == ("failed", "provider:30006", "30006 Landline or unreachable carrier")


def test_inbox_handles_an_email_sender_with_a_display_name(workspace: Workspace) -> None:
    add_customers(workspace)
    inbox = Inbox(workspace.store, workspace.config)
    assert inbox.normalize_address("email", "Anna <ANNA@Example.nl>") == "anna@example.nl"


def test_an_email_reply_is_matched_by_its_token_or_the_message_it_answers(
    workspace: Workspace,
) -> None:

    from outreach.channels.base import InboundMessage
    from outreach.tokens import make_reply_token

    add_customers(workspace)
    delivery = add_survey_delivery(workspace, "emma", channel="email")
    at = datetime(2026, 12, 1, 10, tzinfo=UTC)
    token = make_reply_token(workspace.store.meta.signing_key(), "anna")
    with workspace.store.write():  # what sending records when it mails anna
        workspace.store.customers.add_address("reply", token, "anna")
    events = [
        # written from another address, but to anna's plus-address
        InboundMessage(
            "email", "someone.else@example.org", "via token", "e-1", at, reply_token=token
        ),
        # quoting the Message-ID of what emma was sent
        InboundMessage(
            "email",
            "emma.private@example.org",
            "via reference",
            "e-2",
            at,
            in_reply_to=f"pm-{delivery}",
        ),
        # a token never handed out falls back to the address: a new contact
        InboundMessage(
            "email", "mallory@example.org", "forged", "e-3", at, reply_token=token[:-3] + "aaa"
        ),
    ]
    summary = InboundSummary()
    apply_events(workspace.store, workspace.config, list(enumerate(events, 1)), summary)
    assert [m["text"] for m in workspace.store.conversations.transcript("anna")] == ["via token"]
    assert "via reference" in [m["text"] for m in workspace.store.conversations.transcript("emma")]
    assert summary.new_contacts == 1
    assert workspace.store.conversations.get_conversation("contact:email:mallory@example.org")
