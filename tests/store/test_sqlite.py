"""The SQLite store in particular: pinned schema, migrations (older migrated, newer refused),
its settings, and the read-only audience filter (an authorizer)."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from outreach.deliveries import DUE_STATES, Status
from outreach.errors import StoreError, UsageError
from outreach.store import open_store
from outreach.store.sqlite import SqliteStore, checkpoints
from outreach.store.sqlite.audience import SAFE_FUNCTIONS
from outreach.store.sqlite.migrations import migrations
from outreach.workspace import Workspace
from tests.conftest import Cli

# The schema as shipped. A change here is a change of the on-disk contract: add a
# migration, then update this pin on purpose (as llm's tests/test_migrate.py does).
SCHEMA = {
    "customers": {
        "id": "TEXT",
        "name": "TEXT",
        "email": "TEXT",
        "phone": "TEXT",
        "preferred_channel": "TEXT",
        "locale": "TEXT",
        "timezone": "TEXT",
        "verified": "INTEGER",
        "created_at": "TEXT",
        "updated_at": "TEXT",
    },
    "addresses": {"channel": "TEXT", "address": "TEXT", "customer_id": "TEXT"},
    "consent": {
        "id": "INTEGER",
        "customer_id": "TEXT",
        "channel": "TEXT",
        "status": "TEXT",
        "source": "TEXT",
        "evidence": "TEXT",
        "recorded_at": "TEXT",
    },
    "occurrences": {
        "id": "INTEGER",
        "campaign": "TEXT",
        "occurrence": "TEXT",
        "kind": "TEXT",
        "status": "TEXT",
        "audience": "INTEGER",
        "planned_at": "TEXT",
        "survey": "TEXT",
    },
    "deliveries": {
        "id": "TEXT",
        "campaign": "TEXT",
        "occurrence": "TEXT",
        "customer_id": "TEXT",
        "channel": "TEXT",
        "purpose": "TEXT",
        "template": "TEXT",
        "counts_for_cap": "INTEGER",
        "window": "TEXT",
        "status": "TEXT",
        "reason": "TEXT",
        "error": "TEXT",
        "not_before": "TEXT",
        "attempts": "INTEGER",
        "provider_message_id": "TEXT",
        "context": "TEXT",
        "created_at": "TEXT",
        "updated_at": "TEXT",
        "sent_at": "TEXT",
        "claimed_by": "INTEGER",
    },
    "workers": {
        "id": "INTEGER",
        "host": "TEXT",
        "pid": "INTEGER",
        "kind": "TEXT",
        "started_at": "TEXT",
        "heartbeat_at": "TEXT",
    },
    "conversations": {
        "id": "INTEGER",
        "customer_id": "TEXT",
        "status": "TEXT",
        "needs_attention": "INTEGER",
        "attention_reason": "TEXT",
        "last_inbound_at": "TEXT",
        "last_inbound_channel": "TEXT",
        "auto_reply_until": "TEXT",
        "created_at": "TEXT",
        "updated_at": "TEXT",
    },
    "messages": {
        "id": "INTEGER",
        "conversation_id": "INTEGER",
        "customer_id": "TEXT",
        "direction": "TEXT",
        "channel": "TEXT",
        "address": "TEXT",
        "subject": "TEXT",
        "text": "TEXT",
        "external_id": "TEXT",
        "delivery_id": "TEXT",
        "campaign": "TEXT",
        "author": "TEXT",
        "at": "TEXT",
        "kind": "TEXT",
        "details": "TEXT",
    },
    "survey_responses": {
        "id": "INTEGER",
        "message_id": "INTEGER",
        "delivery_id": "TEXT",
        "customer_id": "TEXT",
        "campaign": "TEXT",
        "occurrence": "TEXT",
        "question": "TEXT",
        "type": "TEXT",
        "answer": "TEXT",
        "score": "INTEGER",
        "valid": "INTEGER",
        "recorded_at": "TEXT",
    },
    "meta": {"key": "TEXT", "value": "TEXT"},
    "email_messages": {
        "message_id": "INTEGER",
        "kind": "TEXT",
        "full_text": "TEXT",
        "raw": "BLOB",
        "size": "INTEGER",
        "attachments": "TEXT",
        "problem": "TEXT",
    },
    "mailbox_sync": {
        "channel": "TEXT",
        "mailbox": "TEXT",
        "uidvalidity": "INTEGER",
        "last_uid": "INTEGER",
        "updated_at": "TEXT",
    },
    "rate_limits": {"key": "TEXT", "next_at": "REAL", "reserved_at": "REAL"},
}
FIRST_MIGRATIONS = [
    "m001_customers",
    "m002_consent",
    "m003_campaigns",
    "m004_conversations",
    "m005_meta",
    "m006_occurrence_survey",
]


def open_sqlite_store(path: Path) -> SqliteStore:
    """``open_store`` on a file: the SQLite store, whose internals this module reaches."""
    store = open_store(path)
    assert isinstance(store, SqliteStore)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = open_sqlite_store(tmp_path / "outreach.db")
    yield opened
    opened.close()


def columns(store: SqliteStore, table: str) -> dict[str, str]:
    return {row[1]: row[2] for row in store.conn.execute(f"PRAGMA table_info({table})")}


def test_schema_is_pinned(store: SqliteStore) -> None:
    assert {t: columns(store, t) for t in SCHEMA} == SCHEMA
    names = [m.name for m in migrations._migrations]
    assert names[: len(FIRST_MIGRATIONS)] == FIRST_MIGRATIONS
    assert len(set(names)) == len(names)


def test_sqlite_settings(store: SqliteStore) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_foreign_keys_are_enforced(store: SqliteStore) -> None:
    with pytest.raises(sqlite3.IntegrityError), store.write():
        store.conn.execute(
            "INSERT INTO consent (customer_id, channel, status, source, recorded_at) "
            "VALUES ('ghost', 'sms', 'opted_in', 'cli', '2026-01-01T00:00:00Z')"
        )


class _Signalled(BaseException):
    """What a signal handler raises (SIGTERM: SystemExit), as one would the moment BEGIN
    IMMEDIATE returns: Python runs handlers right after a C call."""


def test_a_signal_the_moment_begin_returns_leaves_no_write_lock_held(store: SqliteStore) -> None:
    def land_after_begin(frame: object, event: str, arg: object) -> None:
        if event == "c_return" and store.conn.in_transaction:
            sys.setprofile(None)
            raise _Signalled

    sys.setprofile(land_after_begin)
    try:
        with pytest.raises(_Signalled), store.write():
            pytest.fail("the body ran: the signal landed later than meant")
    finally:
        sys.setprofile(None)
    assert not store.conn.in_transaction
    # another process (here a second connection) can write at once
    assert store.path is not None
    other = sqlite3.connect(store.path, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def _automatic_checkpoints(store: SqliteStore) -> int:
    return int(store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def _commit_pages(store: SqliteStore, pages: int) -> int:
    """Commit about ``pages`` pages of new rows; the size of the WAL file after it."""
    with store.write():
        store.conn.execute("CREATE TABLE IF NOT EXISTS scratch (x BLOB)")
        store.conn.executemany("INSERT INTO scratch VALUES (randomblob(3000))", [()] * pages)
    assert store.path is not None
    return Path(f"{store.path}-wal").stat().st_size


@pytest.fixture
def low_mark(store: SqliteStore) -> SqliteStore:
    """Automatic checkpoints every 50 pages: a commit of more would checkpoint."""
    store.conn.execute("PRAGMA wal_autocheckpoint = 50")
    return store


def test_commits_in_a_send_pass_leave_checkpoints_to_the_thread(
    low_mark: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "INTERVAL", 3600.0)  # the thread waits all along
    with low_mark.checkpoints_aside():
        assert _automatic_checkpoints(low_mark) == 0
        first = _commit_pages(low_mark, 200)
        # not checkpointed, so the log was not started over: it grew by as much again
        assert _commit_pages(low_mark, 200) > first * 1.8
    assert _automatic_checkpoints(low_mark) == 50


def test_the_checkpoint_thread_copies_the_log_back_while_the_pass_runs(
    low_mark: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "INTERVAL", 0.02)
    with low_mark.checkpoints_aside():
        size = _commit_pages(low_mark, 200)
        # once the thread has checkpointed it all, the next commit starts the log over
        # instead of adding to it; until then each one adds a page or more
        deadline = time.monotonic() + 10
        while (grown := _commit_pages(low_mark, 1)) > size and time.monotonic() < deadline:
            size = grown
            time.sleep(0.01)
        assert grown <= size
    assert not [t for t in threading.enumerate() if t.name == checkpoints.THREAD_NAME]


def test_overlapping_send_passes_share_one_checkpoint_thread(low_mark: SqliteStore) -> None:
    def threads() -> int:
        return sum(t.name == checkpoints.THREAD_NAME for t in threading.enumerate())

    with low_mark.checkpoints_aside():
        with low_mark.checkpoints_aside():
            assert threads() == 1
        assert _automatic_checkpoints(low_mark) == 0  # the first pass goes on
        assert threads() == 1
    assert _automatic_checkpoints(low_mark) == 50
    assert threads() == 0


def test_a_pass_that_could_not_start_checkpointing_leaves_the_next_one_to_start_it(
    low_mark: SqliteStore,
) -> None:
    closed = sqlite3.connect(":memory:")
    closed.close()
    aside = checkpoints.Checkpoints(closed, low_mark.path or Path())
    with pytest.raises(sqlite3.ProgrammingError), aside.aside():
        pass
    aside.conn = low_mark.conn  # the connection is back
    with aside.aside():
        assert _automatic_checkpoints(low_mark) == 0
    assert _automatic_checkpoints(low_mark) == 50


def test_older_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m004_conversations")
    assert "conversations" not in db.table_names()
    db.close()
    store = open_sqlite_store(path)
    try:
        assert "conversations" in store.db.table_names()
        assert not migrations.pending(store.db)
    finally:
        store.close()


def test_deliveries_of_an_older_database_may_become_bounced(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m190_email_replies")
    db.execute("INSERT INTO customers (id, created_at, updated_at) VALUES ('c', 'x', 'x')")
    row = ("d1", "c", "t", "sent", "x", "x", "x")
    sql = (
        "INSERT INTO deliveries (id, customer_id, template, status, not_before, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    db.execute(sql, row)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(sql, ("d2", *row[1:3], "bounced", *row[4:]))
    db.conn.commit()
    db.close()
    store = open_sqlite_store(path)
    try:
        with store.write():
            store.conn.execute("UPDATE deliveries SET status = 'bounced' WHERE id = 'd1'")
            with pytest.raises(sqlite3.IntegrityError):
                store.conn.execute("UPDATE deliveries SET status = 'nonsense' WHERE id = 'd1'")
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.conn.execute("SELECT status FROM deliveries").fetchone()[0] == "bounced"
    finally:
        store.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('outreach', 'm999_from_the_future', '2030-01-01')"
    )
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"new\.db was written by a newer outreach .*m999"):
        open_store(path)


def test_newer_database_is_one_line_exit_4_in_the_cli(cli: Cli, ws: Path) -> None:
    Workspace.load(ws).store.close()
    db = sqlite3.connect(ws / "outreach.db")
    db.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('outreach', 'm999_from_the_future', '2030-01-01')"
    )
    db.commit()
    db.close()
    result = cli("customers", "list")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: outreach.db was written by a newer outreach")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db: cannot open the database"):
        open_store(path)


# ---------------------------------------------------------------------------- audience


@pytest.fixture
def people(store: SqliteStore) -> SqliteStore:
    store.customers.ensure_columns(["plan", "age"])
    rows = [[f"C{i:03d}", f"n{i}", "pro" if i % 2 else "free", i] for i in range(1, 1201)]
    with store.write():
        store.customers.upsert_customers(
            ["id", "name", "plan", "age"], rows, "2026-01-01T00:00:00Z"
        )
    return store


def test_select_streams_every_match_across_pages(people: SqliteStore) -> None:
    rows = list(people.customers.select_customers("plan = 'pro'"))
    assert len(rows) == 600
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert len(list(people.customers.select_customers(None))) == 1200
    assert len(list(people.customers.select_customers("  "))) == 1200


@pytest.mark.parametrize("limit", [1, 499, 500, 501, 1000, 5000])
def test_select_honours_limit(people: SqliteStore, limit: int) -> None:
    assert len(list(people.customers.select_customers(None, limit=limit))) == min(limit, 1200)


def test_select_columns(people: SqliteStore) -> None:
    row = next(people.customers.select_customers("age = 7", columns=["plan"]))
    assert row == {"id": "C007", "plan": "pro"}
    with pytest.raises(UsageError, match='no customer column "nope"'):
        people.customers.select_customers(None, columns=["nope"])


def test_authorizer_is_gone_even_when_the_iterator_is_abandoned(people: SqliteStore) -> None:
    rows = people.customers.select_customers("age > 10")
    next(rows)  # half-read, as a planner that stops early
    # the shared connection can still write and read other tables
    with people.write():
        people.conn.execute(
            "INSERT INTO consent (customer_id, channel, status, source, recorded_at) "
            "VALUES ('C001', 'sms', 'opted_in', 'cli', '2026-01-01T00:00:00Z')"
        )
    assert people.conn.execute("SELECT count(*) FROM consent").fetchone()[0] == 1
    assert len(list(rows)) == 1200 - 11  # and the iterator goes on


def test_safe_functions_are_all_allowed(people: SqliteStore) -> None:
    calls = {
        "lower": "lower(plan) = 'pro'",
        "upper": "upper(plan) = 'PRO'",
        "length": "length(plan) = 3",
        "substr": "substr(plan, 1, 1) = 'p'",
        "trim": "trim(plan) = 'pro'",
        "coalesce": "coalesce(plan, '') = 'pro'",
        "ifnull": "ifnull(plan, '') = 'pro'",
        "abs": "abs(age) > 0",
        "round": "round(age) > 0",
        "date": "date('2026-01-01') IS NOT NULL",
        "datetime": "datetime(created_at) IS NOT NULL",
        "strftime": "strftime('%Y', created_at) = '2026'",
        "julianday": "julianday(created_at) > 0",
        "like": "plan LIKE 'p%'",
        "glob": "plan GLOB 'p*'",
        "instr": "instr(plan, 'r') = 2",
        "replace": "replace(plan, 'p', 'q') = 'qro'",
        "min": "min(age, 5) = 5",
        "max": "max(age, 5) = age",
        "typeof": "typeof(age) = 'integer'",
        "nullif": "nullif(plan, 'free') IS NOT NULL",
        "iif": "iif(age > 5, 1, 0) = 1",
    }
    for name, where in calls.items():
        assert name in SAFE_FUNCTIONS
        people.customers.validate_where(where)
        assert list(people.customers.select_customers(where, limit=1)), where
    people.customers.validate_where("cast(age AS TEXT) = '3'")


@pytest.mark.parametrize(
    "where",
    [
        "id IN (SELECT customer_id FROM consent)",
        "exists (SELECT 1 FROM temp.sqlite_temp_master)",
        "randomblob(2) IS NOT NULL",
        "sqlite_version() IS NOT NULL",
        "(SELECT count(*) FROM customers) > 0",
        "1; ATTACH DATABASE 'x.db' AS x",
        "1) UNION SELECT * FROM consent --",
    ],
)
def test_validate_where_refuses(people: SqliteStore, where: str) -> None:
    with pytest.raises(UsageError, match="where"):
        people.customers.validate_where(where)


def test_balanced_parentheses_stay_a_condition_over_customers(people: SqliteStore) -> None:
    assert len(list(people.customers.select_customers("0) OR (age = 3"))) == 1


def test_a_claim_reads_what_it_claims_not_the_backlog(store: SqliteStore) -> None:
    """Claiming 16 deliveries out of 20,000 queued costs the same as out of 200.

    Counted in SQLite virtual-machine steps (not seconds, so the test is not flaky): a
    query plan that walks the queue by status instead of by key once made each claim of
    a 100,000-customer run scan the whole backlog.
    """

    def steps_to_claim(backlog: int) -> int:
        at = "2026-12-01T10:00:00Z"
        first = store.conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        ids = [f"c{first + i:07d}" for i in range(backlog)]
        _queue_for(store, ids, at)
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        store.conn.set_progress_handler(count, 100)
        try:
            claimed = store.deliveries.claim_due(at, 16, channels=["email"], from_states=DUE_STATES)
        finally:
            store.conn.set_progress_handler(None, 0)
        assert len(claimed) == 16
        with store.write() as conn:  # leave nothing behind for the next size
            conn.execute("DELETE FROM deliveries")
        return steps

    small, large = steps_to_claim(200), steps_to_claim(20_000)
    assert large < small * 3, (small, large)


def test_a_migrated_database_claims_and_records_from_partial_indexes(tmp_path: Path) -> None:
    """An existing database gets m212/m213 on open: a send pass's claim is one range of the
    partial index deliveries_claim (no scan, no temporary b-tree), and none of the
    statements it writes with builds a temporary b-tree (the status CHECK did, per row).

    The plans are those of the statements as run (traced, with their values written in).
    """
    from outreach.sending.results import Result

    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m212_claim_indexes_partial")
    db.close()
    store = open_sqlite_store(path)
    try:
        indexes = dict(
            store.conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'deliveries' AND sql IS NOT NULL"
            ).fetchall()
        )
        assert set(indexes) == {
            "deliveries_once",
            "deliveries_due",
            "deliveries_provider_id",
            "deliveries_report",
            "deliveries_sent",
            "deliveries_claim",
            "deliveries_cap",
        }
        assert "WHERE status IN ('queued', 'deferred')" in indexes["deliveries_claim"]
        assert "WHERE provider_message_id IS NOT NULL" in indexes["deliveries_provider_id"]

        at = "2026-12-01T10:00:00Z"
        ids = [f"c{i:04d}" for i in range(50)]
        _queue_for(store, ids, at)
        traced: list[str] = []
        store.conn.set_trace_callback(traced.append)
        try:
            rows = store.deliveries.claim_due(
                at, 4, channels=["email"], from_states=DUE_STATES, worker=1
            )
            with store.write():
                store.deliveries.record_results(
                    [
                        Result(
                            r["id"],
                            "email",
                            Status.SENT,
                            at,
                            sent_at=at,
                            provider_message_id=f"<{r['id']}@x>",
                        )
                        for r in rows
                    ],
                    [
                        {
                            "customer_id": r["customer_id"],
                            "channel": "email",
                            "text": "hi",
                            "at": at,
                            "delivery_id": r["id"],
                            "reply_token": f"t{r['id']}",
                        }
                        for r in rows
                    ],
                )
                store.deliveries.claim_due(
                    at, 4, channels=["email"], from_states=DUE_STATES, worker=1
                )
            assert store.deliveries.count_due(at, ["email"]) == 42
            assert store.deliveries.customer_of_sent_message(f"<{rows[0]['id']}@x>") == "c0000"
        finally:
            store.conn.set_trace_callback(None)
        assert [r["customer_id"] for r in rows] == ids[:4]
        statements = [sql for sql in traced if sql.startswith(("SELECT", "UPDATE", "INSERT"))]
        assert any("FROM deliveries d WHERE d.status IN" in sql for sql in statements)
        for sql in statements:
            plan = [r[3] for r in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            assert not [step for step in plan if step.startswith("SCAN")], (sql, plan)
            assert not [step for step in plan if "TEMP B-TREE" in step], (sql, plan)
            program = [r[1] for r in store.conn.execute(f"EXPLAIN {sql}")]
            if not sql.startswith("SELECT"):
                assert "OpenEphemeral" not in program, sql
        # the rule the CHECK states is the same
        with pytest.raises(sqlite3.IntegrityError), store.write():
            store.conn.execute("UPDATE deliveries SET status = 'nonsense' WHERE id = 'dc0010'")
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()


def test_delivery_ids_never_repeat_within_a_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """300,000 ids in one frozen millisecond are all different (random suffixes of 32 bits
    clashed about ten times at this count)."""
    import outreach.deliveries as deliveries

    monkeypatch.setattr("outreach.deliveries.time.time_ns", lambda: 1_796_000_000_000_000_000)
    ids = [deliveries.new_delivery_id() for _ in range(300_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 20 for i in ids[:10])


def test_a_delivery_id_taken_twice_is_an_error_not_a_skipped_customer(store: SqliteStore) -> None:
    at = "2026-12-01T10:00:00Z"
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO customers (id, created_at, updated_at) VALUES (?, ?, ?)",
            [("a", at, at), ("b", at, at)],
        )

    with store.write():
        assert store.deliveries.insert_deliveries([_queued_row("d1", "a", at)]) == 1
        # the same customer again (a re-plan after a crash): kept as it is
        assert store.deliveries.insert_deliveries([_queued_row("d2", "a", at)]) == 0
    with pytest.raises(sqlite3.IntegrityError), store.write():
        store.deliveries.insert_deliveries([_queued_row("d1", "b", at)])


def _queue_for(store: SqliteStore, ids: list[str], at: str) -> None:
    """Customers ``ids``, each with a queued NPS email due at ``at`` (delivery ``d<id>``)."""
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO customers (id, created_at, updated_at) VALUES (?, ?, ?)",
            [(cid, at, at) for cid in ids],
        )
        store.deliveries.insert_deliveries([_queued_row(f"d{cid}", cid, at) for cid in ids])


def _queued_row(delivery: str, customer: str, at: str) -> tuple[object, ...]:
    """A queued NPS email delivery due at ``at``, as ``insert_deliveries`` takes it."""
    from outreach.store import DELIVERY_COLUMNS

    values = {
        "id": delivery,
        "campaign": "nps",
        "occurrence": at,
        "customer_id": customer,
        "channel": "email",
        "purpose": "campaign",
        "template": "nps",
        "counts_for_cap": 1,
        "status": "queued",
        "not_before": at,
        "created_at": at,
        "updated_at": at,
    }
    return tuple(values.get(c) for c in DELIVERY_COLUMNS)
