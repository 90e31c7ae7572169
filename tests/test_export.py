"""Export of reply logs and transcripts: columns, filters, formats, spreadsheet safety."""

from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach import clock
from outreach.errors import NotFoundError, UsageError
from outreach.reports.export import (
    ExportFilter,
    csv_cell,
    export,
    iter_rows,
    make_filter,
    write_rows,
)
from outreach.reports.output import atomic_output
from outreach.store import Store
from outreach.store.sqlite import SqliteStore
from outreach.workspace import Workspace

T0 = "2026-11-01T00:00:00Z"


# -- helpers that put real rows into a real workspace database (shared by the other
# -- test modules of export, report and status); their SQL is SQLite's -----------------


def add_customer(store: Store, cid: str, name: str | None = None, *, verified: int = 1) -> None:
    assert isinstance(store, SqliteStore)
    with store.write() as conn:
        conn.execute(
            "INSERT INTO customers (id, name, phone, verified, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                cid,
                name if name is not None else f"Name {cid}",
                f"+3161000{cid[-4:]:0>4}",
                verified,
                T0,
                T0,
            ),
        )


def add_occurrence(
    store: Store,
    campaign: str,
    occurrence: str,
    *,
    kind: str = "survey",
    audience: int = 0,
    survey: dict[str, Any] | None = None,
    status: str = "planned",
) -> None:
    assert isinstance(store, SqliteStore)
    with store.write() as conn:
        conn.execute(
            "INSERT INTO occurrences (campaign, occurrence, kind, status, audience, planned_at, "
            "survey) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                campaign,
                occurrence,
                kind,
                status,
                audience,
                occurrence,
                json.dumps(survey) if survey else None,
            ),
        )


def add_delivery(
    store: Store,
    did: str,
    campaign: str | None,
    occurrence: str | None,
    customer: str,
    status: str,
    *,
    sent_at: str | None = None,
    reason: str | None = None,
    error: str | None = None,
    channel: str = "sms",
    purpose: str = "campaign",
    not_before: str = T0,
) -> None:
    assert isinstance(store, SqliteStore)
    with store.write() as conn:
        conn.execute(
            "INSERT INTO deliveries (id, campaign, occurrence, customer_id, channel, purpose, "
            "template, status, reason, error, not_before, created_at, updated_at, sent_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 't', ?, ?, ?, ?, ?, ?, ?)",
            (
                did,
                campaign,
                occurrence,
                customer,
                channel,
                purpose,
                status,
                reason,
                error,
                not_before,
                T0,
                T0,
                sent_at,
            ),
        )


def add_message(
    store: Store,
    customer: str,
    direction: str,
    text: str,
    at: str,
    *,
    channel: str = "sms",
    campaign: str | None = None,
    delivery_id: str | None = None,
    subject: str | None = None,
) -> int:
    assert isinstance(store, SqliteStore)
    with store.write() as conn:
        row = conn.execute(
            "SELECT id FROM conversations WHERE customer_id = ?", (customer,)
        ).fetchone()
        if row is None:
            conv = conn.execute(
                "INSERT INTO conversations (customer_id, created_at, updated_at) VALUES (?, ?, ?)",
                (customer, at, at),
            ).lastrowid
        else:
            conv = row[0]
        cur = conn.execute(
            "INSERT INTO messages (conversation_id, customer_id, direction, channel, subject, "
            "text, delivery_id, campaign, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (conv, customer, direction, channel, subject, text, delivery_id, campaign, at),
        )
        return int(cur.lastrowid or 0)


def add_response(
    store: Store,
    message_id: int,
    delivery_id: str,
    customer: str,
    campaign: str,
    occurrence: str,
    answer: str | None,
    score: int | None,
    *,
    valid: bool = True,
    question: str = "How likely are you to recommend us?",
    kind: str = "nps",
) -> None:
    assert isinstance(store, SqliteStore)
    with store.write() as conn:
        conn.execute(
            "INSERT INTO survey_responses (message_id, delivery_id, customer_id, campaign, "
            "occurrence, question, type, answer, score, valid, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                delivery_id,
                customer,
                campaign,
                occurrence,
                question,
                kind,
                answer,
                score,
                int(valid),
                T0,
            ),
        )


def add_consent(store: Store, customer: str, channel: str, status: str, at: str) -> None:
    assert isinstance(store, SqliteStore)
    with store.write() as conn:
        conn.execute(
            "INSERT INTO consent (customer_id, channel, status, source, recorded_at) "
            "VALUES (?, ?, ?, 'cli', ?)",
            (customer, channel, status, at),
        )


# -- tests -----------------------------------------------------------------------------


@pytest.fixture
def space(ws: Path) -> Iterator[Workspace]:
    workspace = Workspace.load(ws)
    yield workspace
    workspace.close()


def _seed_replies(store: Store) -> None:
    for cid in ("c1", "c2", "c3"):
        add_customer(store, cid)
    add_occurrence(store, "nps", "2026-11-02T09:00:00Z")
    add_delivery(
        store,
        "d1",
        "nps",
        "2026-11-02T09:00:00Z",
        "c1",
        "delivered",
        sent_at="2026-11-02T09:00:00Z",
    )
    add_delivery(
        store, "d2", "nps", "2026-11-02T09:00:00Z", "c2", "sent", sent_at="2026-11-02T09:00:00Z"
    )
    add_message(
        store, "c1", "out", "How likely…?", "2026-11-02T09:00:00Z", delivery_id="d1", campaign="nps"
    )
    m1 = add_message(store, "c1", "in", "9", "2026-11-02T10:00:00Z")
    add_response(store, m1, "d1", "c1", "nps", "2026-11-02T09:00:00Z", "9", 9)
    m2 = add_message(
        store, "c2", "in", "what is this about?", "2026-11-03T10:00:00Z", channel="whatsapp"
    )
    m3 = add_message(store, "c2", "in", "eight or nine", "2026-11-03T11:00:00Z")
    add_response(store, m3, "d2", "c2", "nps", "2026-11-02T09:00:00Z", None, None, valid=False)
    # wrote before anything was sent to them: no campaign
    add_message(store, "c3", "in", "hello?", "2026-11-01T08:00:00Z", channel="email")
    add_message(store, "c1", "out", "Thanks!", "2026-11-02T10:01:00Z", campaign=None)
    assert m2


def _rows(space: Workspace, kind: str = "replies", **filters: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    export(space, kind, make_filter(space, **filters), "jsonl", stdout=out)  # type: ignore[arg-type]
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_replies_have_one_row_per_inbound_message_with_spec_columns(space: Workspace) -> None:
    _seed_replies(space.store)
    rows = _rows(space, campaign=None, since=None, until=None)
    assert list(rows[0]) == [
        "received_at",
        "customer_id",
        "customer_name",
        "channel",
        "campaign",
        "question",
        "answer",
        "text",
        "conversation_id",
        "message_id",
        "provider_message_id",
        "kind",
        "details",
    ]
    assert [(r["customer_id"], r["text"]) for r in rows] == [
        ("c3", "hello?"),
        ("c1", "9"),
        ("c2", "what is this about?"),
        ("c2", "eight or nine"),
    ]
    c3, c1, c2a, c2b = rows
    assert c1["received_at"] == "2026-11-02T10:00:00Z"
    assert (c1["campaign"], c1["answer"]) == ("nps", "9")
    assert c1["question"] == "How likely are you to recommend us?"
    assert c1["customer_name"] == "Name c1"
    # a free message is attributed to the campaign last sent to the customer before it
    assert (c2a["campaign"], c2a["answer"], c2a["channel"]) == ("nps", None, "whatsapp")
    # an unclear answer keeps its campaign and question but has no answer
    assert (c2b["campaign"], c2b["answer"]) == ("nps", None)
    assert c2b["question"]
    assert c3["campaign"] is None
    assert len({r["message_id"] for r in rows}) == 4


def test_replies_filter_by_campaign_and_time_range(space: Workspace) -> None:
    _seed_replies(space.store)
    assert {r["customer_id"] for r in _rows(space, campaign="nps", since=None, until=None)} == {
        "c1",
        "c2",
    }
    # since inclusive, until exclusive; a bare date is midnight in the workspace zone (CET)
    rows = _rows(space, campaign=None, since="2026-11-02T10:00:00Z", until="2026-11-03T11:00:00Z")
    assert [r["text"] for r in rows] == ["9", "what is this about?"]
    rows = _rows(space, campaign=None, since=None, until="2026-11-02")
    assert [r["text"] for r in rows] == ["hello?"]


def test_relative_since_counts_back_from_now(space: Workspace) -> None:
    _seed_replies(space.store)
    clock.set_now("2026-11-03T12:00:00Z")
    assert [r["text"] for r in _rows(space, campaign=None, since="1h", until=None)] == [
        "eight or nine"
    ]
    assert len(_rows(space, campaign=None, since="2d", until=None)) == 3
    flt = make_filter(space, None, "7d", "12h")
    assert flt.since == clock.parse_time("2026-10-27T12:00:00Z")
    assert flt.until == clock.parse_time("2026-11-03T00:00:00Z")


def test_since_after_until_is_a_usage_error(space: Workspace) -> None:
    with pytest.raises(UsageError, match=r"--since .* is after --until"):
        make_filter(space, None, "2026-12-01", "2026-11-01")
    with pytest.raises(UsageError, match="not a time"):
        make_filter(space, None, "last tuesday-ish", None)


def test_unknown_campaign_filter_names_the_known_ones(space: Workspace) -> None:
    _seed_replies(space.store)
    with pytest.raises(NotFoundError, match=r'campaign "nope" not found.*known: .*nps'):
        make_filter(space, "nope", None, None)


def test_conversations_export_every_message_in_transcript_order(space: Workspace) -> None:
    _seed_replies(space.store)
    rows = _rows(space, "conversations", campaign=None, since=None, until=None)
    assert list(rows[0]) == [
        "conversation_id",
        "customer_id",
        "customer_name",
        "direction",
        "channel",
        "at",
        "subject",
        "text",
        "campaign",
        "delivery_id",
        "message_id",
        "provider_message_id",
        "kind",
        "details",
    ]
    assert [(r["customer_id"], r["direction"], r["text"]) for r in rows] == [
        ("c1", "out", "How likely…?"),
        ("c1", "in", "9"),
        ("c1", "out", "Thanks!"),
        ("c2", "in", "what is this about?"),
        ("c2", "in", "eight or nine"),
        ("c3", "in", "hello?"),
    ]
    assert rows[0]["delivery_id"] == "d1"
    assert [r["campaign"] for r in rows[:2]] == ["nps", "nps"]
    # the campaign filter keeps whole transcripts of the customers it was sent to
    kept = _rows(space, "conversations", campaign="nps", since=None, until=None)
    assert {r["customer_id"] for r in kept} == {"c1", "c2"}
    assert len(kept) == 5


CSV_CASES = [
    ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
    ("+31 6 1234", "'+31 6 1234"),
    ("-2+3", "'-2+3"),
    ("@cmd", "'@cmd"),
    ("\tTAB", "'\tTAB"),
    ("\rCR", "'\rCR"),
    ("plain = text", "plain = text"),
    ("line one\nline two", "line one\nline two"),
    ('she said "yes", then left', 'she said "yes", then left'),
    ("a,b,c", "a,b,c"),
    ("great 👍🏽 service", "great 👍🏽 service"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "cell"), CSV_CASES)
def test_csv_cells_are_spreadsheet_safe_and_round_trip(text: str, cell: str) -> None:
    assert csv_cell(text) == cell
    out = io.StringIO(newline="")
    write_rows([(text, 7)], ("text", "n"), "csv", out)
    parsed = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert parsed == [["text", "n"], [cell, "7"]]


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_json_formats_keep_the_text_exactly(fmt: str) -> None:
    texts = [t for t, _ in CSV_CASES]
    out = io.StringIO()
    count = write_rows([(t, i) for i, t in enumerate(texts)], ("text", "n"), fmt, out)
    assert count == len(texts)
    if fmt == "json":
        rows = json.loads(out.getvalue())
    else:
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["text"] for r in rows] == texts
    assert "👍🏽" in out.getvalue()  # written as UTF-8, not \\u escapes


def test_empty_json_export_is_an_empty_list() -> None:
    out = io.StringIO()
    assert write_rows([], ("a",), "json", out) == 0
    assert json.loads(out.getvalue()) == []


def test_export_to_file_is_written_whole(space: Workspace, tmp_path: Path) -> None:
    _seed_replies(space.store)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "replies.csv"
    target.write_text("old contents\n")
    n = export(space, "replies", ExportFilter(), "csv", output=target)
    assert n == 4
    lines = list(csv.reader(target.open(newline="", encoding="utf-8")))
    assert lines[0][0] == "received_at" and len(lines) == 5
    assert sorted(p.name for p in folder.iterdir()) == ["replies.csv"]


def test_failed_export_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"

    def broken() -> Any:
        yield ("a",)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError), atomic_output(target) as out:
        write_rows(broken(), ("x",), "csv", out)
    assert list(tmp_path.iterdir()) == []


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores modes: use /proc)."""
    if os.geteuid() == 0:
        if not Path("/proc/self").is_dir():
            pytest.skip("running as root without /proc")
        return Path("/proc")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked


def test_leftovers_of_killed_exports_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "replies.csv"
    dead = tmp_path / ".replies.csv.4194399.k2j3.tmp"  # above Linux's largest pid: gone
    live = tmp_path / f".replies.csv.{os.getpid()}.x9q1.tmp"  # this process: still writing
    other = tmp_path / ".other.csv.4194399.k2j3.tmp"  # another file's: not ours to touch
    for path in (dead, live, other):
        path.write_text("partial")
    with atomic_output(target) as out:
        out.write("id\n")
    assert target.read_text() == "id\n"
    assert not dead.exists() and live.exists() and other.exists()


def test_unwritable_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = unwritable_folder(tmp_path)
    try:
        with (
            pytest.raises(UsageError, match=f"cannot write in {folder}"),
            atomic_output(folder / "x.csv"),
        ):
            pass
        assert not (folder / "x.csv").exists()
    finally:
        if folder != Path("/proc"):
            folder.chmod(0o700)


def test_missing_output_folder_and_folder_as_file_are_errors(tmp_path: Path) -> None:
    with (
        pytest.raises(UsageError, match="does not exist"),
        atomic_output(tmp_path / "nope" / "x.csv"),
    ):
        pass
    with pytest.raises(UsageError, match="is a folder"), atomic_output(tmp_path):
        pass


def test_export_streams_in_constant_memory(space: Workspace, tmp_path: Path) -> None:
    """200,000 replies are exported without holding them: peak Python memory stays small."""
    store = space.store
    add_customer(store, "c1")
    assert isinstance(store, SqliteStore)
    with store.write() as conn:
        conn.execute(
            "INSERT INTO conversations (customer_id, created_at, updated_at) VALUES ('c1', ?, ?)",
            (T0, T0),
        )
        conn.executemany(
            "INSERT INTO messages (conversation_id, customer_id, direction, channel, text, at) "
            "VALUES (1, 'c1', 'in', 'sms', ?, ?)",
            ((f"reply number {i} with some text", T0) for i in range(200_000)),
        )
    rows = iter_rows(space, "replies", ExportFilter())
    tracemalloc.start()
    try:
        with atomic_output(tmp_path / "big.csv") as out:
            count = write_rows(rows, ("a",) * 10, "csv", out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    # holding the rows would take well over 50 MB; streaming stays at a few batches
    assert peak < 5_000_000, peak
    assert (tmp_path / "big.csv").stat().st_size > 200_000 * 40
