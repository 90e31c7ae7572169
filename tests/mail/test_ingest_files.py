"""`replies ingest --format eml|mbox|maildir`: real client replies into conversations."""

from __future__ import annotations

import json
import mailbox
import sqlite3
from pathlib import Path

from tests.conftest import Cli
from tests.mail.helpers import LATER, fixture, send_survey, show


def ingest(cli: Cli, path: Path, fmt: str, *extra: str) -> dict[str, object]:
    result = cli("--now", LATER, "replies", "ingest", str(path), "--format", fmt, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def survey_answers(ws: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(ws / "outreach.db")
    rows = conn.execute("SELECT answer, valid FROM survey_responses ORDER BY id").fetchall()
    conn.close()
    return [(str(a), int(v)) for a, v in rows]


def test_a_gmail_reply_answers_the_survey_with_the_number_above_the_quote(
    ws: Path, cli: Cli
) -> None:
    sent = send_survey(ws, cli)
    (ws / "reply.eml").write_bytes(fixture("gmail_en.eml", sent))
    summary = ingest(cli, ws / "reply.eml", "eml")
    assert summary["stored"] == 1 and summary["survey_answers"] == 1
    assert survey_answers(ws) == [("9", 1)]
    shown = show(cli, "nl2")
    [reply] = [m for m in shown["messages"] if m["direction"] == "in"]  # type: ignore[attr-defined]
    assert reply["text"] == "9" and reply["subject"].startswith("Re: ")
    assert "full_text" not in reply["email"]
    full = show(cli, "nl2", "--full")
    [reply] = [m for m in full["messages"] if m["direction"] == "in"]  # type: ignore[attr-defined]
    assert "0 to 10" in reply["email"]["full_text"]


def test_show_full_prints_the_quoted_history_and_attachments(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    (ws / "reply.eml").write_bytes(fixture("attachment.eml", sent))
    ingest(cli, ws / "reply.eml", "eml")
    short = cli("conversations", "show", "nl2").stdout
    assert "photo attached" in short and "> Your order has shipped" not in short
    assert "[attachment: IMG_2041.jpg, image/jpeg, 159 bytes]" in short
    assert "> Your order has shipped" in cli("conversations", "show", "nl2", "--full").stdout


def test_a_colleague_writing_to_the_tokened_reply_address_joins_the_conversation(
    ws: Path, cli: Cli
) -> None:
    sent = send_survey(ws, cli)
    (ws / "reply.eml").write_bytes(fixture("colleague.eml", sent))
    summary = ingest(cli, ws / "reply.eml", "eml")
    assert summary["new_contacts"] == 0
    texts = [m["text"] for m in show(cli, "nl2")["messages"]]  # type: ignore[attr-defined]
    assert any("ik neem het over" in t for t in texts)


def test_a_reply_that_lost_its_token_is_matched_by_references(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    raw = fixture("outlook_en.eml", sent).replace(sent.token.encode(), b"")
    # the Message-ID outreach sent is only in References, after an unknown one
    raw = raw.replace(
        b"In-Reply-To: <" + sent.message_id.encode() + b">",
        b"In-Reply-To: <unknown@elsewhere.example>",
    )
    (ws / "reply.eml").write_bytes(raw)
    summary = ingest(cli, ws / "reply.eml", "eml")
    assert summary["new_contacts"] == 0 and summary["survey_answers"] == 1
    assert survey_answers(ws) == [("7", 1)]


def test_an_unknown_sender_without_token_or_reference_is_a_new_contact(ws: Path, cli: Cli) -> None:
    send_survey(ws, cli)
    (ws / "reply.eml").write_bytes(fixture("thunderbird_nl.eml"))
    summary = ingest(cli, ws / "reply.eml", "eml")
    assert summary["new_contacts"] == 1
    assert show(cli, "contact:email:kees@xs4all.nl")["messages"]


def test_an_out_of_office_is_stored_but_never_answers_or_stops(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    box = mailbox.mbox(ws / "in.mbox")
    for name in ("out_of_office_en.eml", "out_of_office_nl.eml"):
        box.add(fixture(name, sent))
    box.close()
    summary = ingest(cli, ws / "in.mbox", "mbox")
    assert summary["stored"] == 2 and summary["automatic"] == 2
    assert summary["survey_answers"] == 0 and summary["keywords"] == {}
    assert summary["needs_attention"] == 0 and summary["replies"] == 0
    assert survey_answers(ws) == []
    shown = show(cli, "nl2")
    assert not shown["needs_attention"]
    autos = [m for m in shown["messages"] if m.get("email")]  # type: ignore[attr-defined]
    assert [m["email"]["kind"] for m in autos] == ["auto_reply", "auto_reply"]
    consent = json.loads(cli("consent", "show", "nl2", "--json").stdout)
    assert consent["current"]["email"]["status"] == "opted_in"


def test_a_hard_bounce_marks_the_delivery_and_stops_mail_to_the_address(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    (ws / "bounce.eml").write_bytes(fixture("bounce_hard.eml", sent))
    summary = ingest(cli, ws / "bounce.eml", "eml")
    assert summary["bounces"] == 1 and summary["stored"] == 0
    conn = sqlite3.connect(ws / "outreach.db")
    row = conn.execute(
        "SELECT status, reason, error FROM deliveries WHERE id = ?", (sent.delivery_id,)
    ).fetchone()
    conn.close()
    assert row[0] == "bounced" and row[1] == "bounce:5.1.1" and "User unknown" in row[2]
    consent = json.loads(cli("consent", "show", "nl2", "--json").stdout)
    assert consent["current"]["email"]["status"] == "opted_out"
    assert consent["current"]["email"]["source"] == "provider:bounce"
    assert [m["direction"] for m in show(cli, "nl2")["messages"]] == ["out"]  # type: ignore
    # the same bounce again changes nothing and adds no ledger row
    ingest(cli, ws / "bounce.eml", "eml")
    again = json.loads(cli("consent", "show", "nl2", "--json").stdout)
    assert len(again["history"]) == len(consent["history"])


def test_a_soft_bounce_marks_the_delivery_but_keeps_consent(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    (ws / "bounce.eml").write_bytes(fixture("bounce_soft.eml", sent))
    assert ingest(cli, ws / "bounce.eml", "eml")["bounces"] == 1
    consent = json.loads(cli("consent", "show", "nl2", "--json").stdout)
    assert consent["current"]["email"]["status"] == "opted_in"


def test_a_malformed_email_is_kept_raw_and_flagged(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    (ws / "bad.eml").write_bytes(fixture("malformed.eml", sent))
    summary = ingest(cli, ws / "bad.eml", "eml")
    assert summary["stored"] == 1 and summary["survey_answers"] == 0
    shown = show(cli, "nl2")
    assert shown["needs_attention"] and shown["attention_reason"] == "unreadable_email"
    conn = sqlite3.connect(ws / "outreach.db")
    [(raw,)] = conn.execute("SELECT raw FROM email_messages").fetchall()
    conn.close()
    assert raw == fixture("malformed.eml", sent)


def test_maildir_ingest_stores_each_message_once(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    box = mailbox.Maildir(ws / "Maildir")
    for name in ("gmail_nl.eml", "apple_mail_nl.eml", "html_only.eml", "windows_1252.eml"):
        box.add(fixture(name, sent))
    first = ingest(cli, ws / "Maildir", "maildir")
    assert first["stored"] == 4 and first["survey_answers"] == 1
    again = ingest(cli, ws / "Maildir", "maildir")
    assert again["stored"] == 0 and again["duplicates"] == 4


def test_an_oversized_email_file_is_stored_as_metadata(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    raw = fixture("attachment.eml", sent)
    head, _ = raw.rsplit(b"--0000000000001122334455667788--", 1)
    body = b"QUFB" * 76 * 90_000  # ~26 MB of base64 in the attachment
    lines = b"\n".join(body[i : i + 76] for i in range(0, len(body), 76))
    (ws / "big.eml").write_bytes(head + lines + b"\n--0000000000001122334455667788--\n")
    summary = ingest(cli, ws / "big.eml", "eml")
    assert summary["stored"] == 1
    conn = sqlite3.connect(ws / "outreach.db")
    [(raw_kept, size, problem)] = conn.execute(
        "SELECT raw, size, problem FROM email_messages"
    ).fetchall()
    conn.close()
    assert raw_kept is None and size > 25 * 1024 * 1024 and "over the 25 MB limit" in problem


def test_mail_formats_need_a_channel_when_there_are_several_email_channels(
    ws: Path, cli: Cli
) -> None:
    with (ws / "outreach.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[channels.email2]\nprovider = "outbox"\naddress = "email"\n')
    (ws / "reply.eml").write_bytes(fixture("gmail_en.eml"))
    result = cli("replies", "ingest", str(ws / "reply.eml"), "--format", "eml")
    assert result.exit_code == 2 and "--channel" in result.stderr


def test_a_missing_mailbox_is_one_line_and_exit_2(ws: Path, cli: Cli) -> None:
    result = cli("replies", "ingest", str(ws / "nope"), "--format", "maildir")
    assert result.exit_code == 2 and "not a Maildir" in result.stderr


def report(cli: Cli) -> dict[str, object]:
    result = cli("--now", LATER, "report", "nps", "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_the_report_counts_a_bounce_as_sent_and_bounced(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    (ws / "bounce.eml").write_bytes(fixture("bounce_hard.eml", sent))
    ingest(cli, ws / "bounce.eml", "eml")
    figures = report(cli)
    assert figures["sent"] == 1 and figures["bounced"] == 1


def test_an_out_of_office_is_not_a_reply_in_the_report(ws: Path, cli: Cli) -> None:
    sent = send_survey(ws, cli)
    (ws / "ooo.eml").write_bytes(fixture("out_of_office_en.eml", sent))
    ingest(cli, ws / "ooo.eml", "eml")
    assert report(cli)["replied"] == 0
    (ws / "reply.eml").write_bytes(fixture("outlook_en.eml", sent))
    ingest(cli, ws / "reply.eml", "eml")
    assert report(cli)["replied"] == 1


def test_at_night_a_reply_gets_the_out_of_hours_answer_but_an_out_of_office_none(
    ws: Path, cli: Cli
) -> None:
    sent = send_survey(ws, cli)
    night = "2026-12-01T22:00:00Z"  # 23:00 in Amsterdam: agents are away
    (ws / "ooo.eml").write_bytes(fixture("out_of_office_nl.eml", sent))
    result = cli(
        "--now", night, "replies", "ingest", str(ws / "ooo.eml"), "--format", "eml", "--json"
    )
    assert json.loads(result.stdout)["replies"] == 0
    (ws / "reply.eml").write_bytes(
        fixture("gmail_nl.eml", sent).replace(b"Een 8, de levering", b"Wanneer komt de levering")
    )
    result = cli(
        "--now", night, "replies", "ingest", str(ws / "reply.eml"), "--format", "eml", "--json"
    )
    assert json.loads(result.stdout)["auto_replies"] == 1


def test_a_batch_finds_its_tokens_and_references_in_a_few_queries(ws: Path, cli: Cli) -> None:
    from outreach.mail.files import ingest_mail
    from outreach.store.sqlite import SqliteStore
    from outreach.workspace import Workspace

    sent = send_survey(ws, cli)
    box = mailbox.mbox(ws / "in.mbox")
    for i in range(60):
        raw = fixture("outlook_en.eml", sent).replace(b"AM9PR07MB72831A2B", f"n{i}-".encode())
        if i % 2:  # half lost their token: found by the Message-ID they answer
            raw = raw.replace(sent.token.encode(), b"")
        box.add(raw)
    box.close()
    workspace = Workspace.load(ws)
    statements: list[str] = []
    store = workspace.store
    assert isinstance(store, SqliteStore)
    store.conn.set_trace_callback(statements.append)
    try:
        summary = ingest_mail(workspace, str(ws / "in.mbox"), "mbox", send=False)
    finally:
        workspace.close()
    assert summary.stored == 60 and summary.new_contacts == 0
    lookups = [
        s
        for s in statements
        if s.startswith("SELECT") and ("FROM addresses" in s or "FROM deliveries" in s)
    ]
    assert len(lookups) < 10, lookups[:5]
