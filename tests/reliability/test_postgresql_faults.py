"""PostgreSQL faults under real work: sessions terminated mid-run and mid-serve, a real
deadlock, a server that does not come back.

A session is ended the way a restart or a network drop ends it for the client: the test
terminates every other backend of its own database (``pg_terminate_backend``), never the
shared server. The Twilio emulator in the test process is the witness of what customers
received.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach.errors import StoreError
from outreach.store import open_store
from outreach.workspace import Workspace
from tests.postgresql import POSTGRESQL_ENV, empty_database
from tests.servers.twilio import TwilioEmulator

from .support import (
    customers_csv,
    make_workspace,
    outreach_toml,
    post_count,
    sends_per_to,
    spawn,
    twilio_channel,
    wait_until,
)

pytestmark = pytest.mark.postgresql

CUSTOMERS = 2000
CONCURRENCY = 16
KILL_AT = (150, 600, 1000, 1400)  # messages at the provider when the sessions are ended


def pg(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def terminate_sessions(url: str) -> int:
    """End every other session on the test's own database; how many."""
    rows = pg(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return sum(1 for (ended,) in rows if ended)


@pytest.fixture
def database(postgresql_database: str) -> Iterator[str]:
    yield postgresql_database
    empty_database(postgresql_database)


def _workspace(tmp_path: Path, url: str, twilio: TwilioEmulator) -> Path:
    # a shared rate too: its reservations are statements the losses cut off as well
    toml = outreach_toml(
        twilio_channel(twilio.url, concurrency=CONCURRENCY, rate="1000/s")
    ).replace('database = "outreach.db"', f'database = "{url}"')
    return make_workspace(tmp_path / "ws", toml, customers=CUSTOMERS)


def _statuses(url: str) -> dict[str, int]:
    return dict(pg(url, "SELECT status, count(*) FROM deliveries GROUP BY status"))


def _phones(url: str, *states: str) -> set[str]:
    rows = pg(
        url,
        "SELECT c.phone FROM deliveries d JOIN customers c ON c.id = d.customer_id "
        "WHERE d.status = ANY(%s)",
        (list(states),),
    )
    return {r[0] for r in rows}


def test_a_run_survives_its_sessions_ended_and_sends_no_one_twice(
    tmp_path: Path, database: str, twilio_server: TwilioEmulator
) -> None:
    twilio = twilio_server
    if True:
        ws = _workspace(tmp_path, database, twilio)
        proc = spawn(ws, "run", "blast", "--json")
        ended = 0
        try:
            # once while it plans, then at moments of the sending
            assert wait_until(
                lambda: bool(pg(database, "SELECT 1 FROM deliveries LIMIT 1")), timeout=120
            )
            ended += terminate_sessions(database)
            for target in KILL_AT:
                if not wait_until(
                    lambda t=target: post_count(twilio) >= t or proc.poll() is not None,  # type: ignore[misc]
                    timeout=120,
                ):
                    break
                if proc.poll() is not None:
                    break
                ended += terminate_sessions(database)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert ended >= 3, "the run's sessions were not ended while it worked"
        lines = [line for line in err.strip().splitlines() if line]
        if proc.returncode == 4:
            # stopped cleanly: one line, naming the database, never a password
            assert len(lines) == 1 and lines[0].startswith("error: postgresql://"), err
        else:
            assert proc.returncode == 0, err
            assert json.loads(out)["sent"] > 0
        per_phone = sends_per_to(twilio)
        assert max(per_phone.values()) == 1, "a customer got two messages"
        left = _statuses(database)
        if proc.returncode == 4:
            # what was in flight stays claimed, as a crash leaves it: unknown at the re-run
            assert left.pop("sending", 0) <= CONCURRENCY, left
        assert set(left) <= {"sent", "unknown", "queued", "deferred"}, left
        # every message the provider took is recorded sent, or unknown (in flight)
        assert set(per_phone) <= _phones(database, "sent", "unknown")

        again = spawn(ws, "run", "blast", "--json")
        out, err = again.communicate(timeout=300)
        assert again.returncode in (0, 3), err
        per_phone = sends_per_to(twilio)
        assert max(per_phone.values()) == 1, "a customer got two messages"
        final = _statuses(database)
        assert set(final) <= {"sent", "unknown"}, final
        assert sum(final.values()) == CUSTOMERS
        # sent means the provider has it; the provider's are all sent or unknown
        assert _phones(database, "sent") <= set(per_phone)
        assert set(per_phone) <= _phones(database, "sent", "unknown")
        # at most the messages in flight at each loss are left unknown
        assert final.get("unknown", 0) <= CONCURRENCY * (len(KILL_AT) + 1)


def test_a_real_deadlock_is_run_again(database: str) -> None:
    store = open_store(database)
    other = open_store(database)
    try:
        with store.write():
            store.customers.upsert_customers(
                ["id", "name"], [["x", "X"], ["y", "Y"]], "2026-12-01T09:00:00Z"
            )
        attempts = [0, 0]
        holding = [threading.Event(), threading.Event()]
        done: list[Any] = [None, None]

        def work(i: int, first: str, second: str) -> str:
            s = (store, other)[i]
            attempts[i] += 1
            with s.write() as conn:
                sql = "UPDATE customers SET name = %s WHERE id = %s"
                conn.execute(sql, (f"by {i}", first))  # type: ignore[attr-defined]
                holding[i].set()
                if attempts[i] == 1:
                    holding[1 - i].wait(10)  # each holds one row and wants the other's
                conn.execute(sql, (f"by {i}", second))  # type: ignore[attr-defined]
            return f"{i} done"

        def side(i: int, first: str, second: str) -> None:
            try:
                done[i] = (store, other)[i].retrying(lambda: work(i, first, second))
            except BaseException as exc:
                done[i] = exc

        threads = [
            threading.Thread(target=side, args=(0, "x", "y")),
            threading.Thread(target=side, args=(1, "y", "x")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert done == ["0 done", "1 done"]
        assert sorted(attempts) == [1, 2], "one side was rolled back and run again"
        names = {r[0] for r in pg(database, "SELECT name FROM customers WHERE id IN ('x', 'y')")}
        assert len(names) == 1  # the side run again wrote both rows last
    finally:
        store.close()
        other.close()


def test_a_unit_of_work_cut_off_is_run_again_on_a_new_session(database: str) -> None:
    store = open_store(database)
    try:
        runs = 0

        def work() -> int:
            nonlocal runs
            runs += 1
            with store.write() as conn:
                conn.execute(  # type: ignore[attr-defined]
                    "INSERT INTO meta (key, value) VALUES (%s, %s)", (f"k{runs}", "v")
                )
                if runs == 1:
                    terminate_sessions(database)
                    time.sleep(0.2)
                return int(conn.one("SELECT count(*) FROM meta WHERE key LIKE 'k%%'")[0])  # type: ignore[attr-defined]

        assert store.retrying(work) == 1  # the first attempt's row was rolled back
        assert runs == 2
        # and a plain read after the next loss just asks again
        terminate_sessions(database)
        assert store.deliveries.count_due("2026-12-01T09:00:00Z") == 0
    finally:
        store.close()


def test_a_server_that_stays_away_is_one_line_after_the_reconnect_time(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach.store import postgresql

    monkeypatch.setattr(postgresql, "RECONNECT_S", 2.0)
    admin = os.environ[POSTGRESQL_ENV]  # the server's own database, to lock ours from
    name = database.rsplit("/", 1)[1]
    store = open_store(database)
    try:
        pg(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        pg(
            admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            store.retrying(lambda: store.deliveries.retry_unknown("2026-12-01T09:00:00Z"))
        assert time.monotonic() - started < 20
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"postgresql://postgres@127.0.0.1:5432/{name}: ")
        assert "is not currently accepting connections" in message, message
    finally:
        pg(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        store.close()


def test_serve_stores_webhooks_after_its_sessions_are_ended(
    database: str, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.servers.fixtures import ENV, TWILIO_SID, TWILIO_TOKEN
    from tests.test_server import Served, twilio_post, write_config

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OUTREACH_DATABASE_URL", database)
    with TwilioEmulator(TWILIO_SID, TWILIO_TOKEN) as twilio:
        write_config(ws, twilio.url)
        loaded = Workspace.load(ws)
        with loaded.store.write():
            loaded.store.customers.upsert_customers(
                ["id", "name", "phone"], [["anna", "Anna", "+31612345601"]], "2026-12-01T09:00:00Z"
            )
        loaded.close()
        server = Served(Workspace.load(ws))
        try:
            first = twilio_post(
                server, {"From": "+31612345601", "Body": "one", "MessageSid": "SM1"}
            )
            assert first.status_code == 200, first.text
            assert terminate_sessions(database) >= 1
            second = twilio_post(
                server, {"From": "+31612345601", "Body": "two", "MessageSid": "SM2"}
            )
            assert second.status_code == 200, second.text
            terminate_sessions(database)
            assert server.http.get("/healthz").json() == {"status": "ok"}
            third = twilio_post(
                server, {"From": "+31612345601", "Body": "three", "MessageSid": "SM3"}
            )
            assert third.status_code == 200, third.text
        finally:
            server.stop()
    texts = [
        r[0] for r in pg(database, "SELECT text FROM messages WHERE direction = 'in' ORDER BY id")
    ]
    assert texts == ["one", "two", "three"]


def test_a_fault_not_survived_is_one_line_naming_the_database(
    database: str, cli: Any, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a server that refuses every write (a hot standby, a database set read-only)
    read_only = database + "?options=-c%20default_transaction_read_only%3Don"
    where = "error: postgresql://postgres@127.0.0.1:5432/" + database.rsplit("/", 1)[1]
    monkeypatch.setenv("OUTREACH_DATABASE_URL", read_only)
    opened = cli("customers", "list")  # at open: the migrations cannot be written
    assert opened.exit_code == 4, opened.output
    assert opened.stderr.strip().splitlines() == [
        f"{where}: cannot execute CREATE TABLE in a read-only transaction"
    ]
    monkeypatch.setenv("OUTREACH_DATABASE_URL", database)
    assert cli("customers", "list").exit_code == 0
    monkeypatch.setenv("OUTREACH_DATABASE_URL", read_only)
    (ws / "few.csv").write_text("id,name\nc1,One\n", encoding="utf-8")
    imported = cli("customers", "import", str(ws / "few.csv"))  # later, in a command
    assert imported.exit_code == 4, imported.output
    lines = imported.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{where}: cannot execute "), lines
    assert lines[0].endswith(" in a read-only transaction"), lines


def test_a_session_lost_with_its_planning_lock_takes_it_again_or_stops(database: str) -> None:
    store, rival = open_store(database), open_store(database)
    at = "2026-12-01T08:00:00Z"
    try:
        with store.deliveries.planning_lock("blast", at, caps=True) as got:
            assert got
            terminate_sessions(database)
            time.sleep(0.2)
            # the next unit of work runs on a new session that holds the locks again
            assert store.retrying(lambda: store.deliveries.retry_unknown(at)) == 0
            with rival.deliveries.planning_lock("blast", at, caps=False) as taken:
                assert not taken
            terminate_sessions(database)
            time.sleep(0.2)
            # while it is away, another process takes the plan over: this one stops
            with rival.deliveries.planning_lock("blast", at, caps=False) as taken:
                assert taken
                with pytest.raises(StoreError, match="another process took over the planning"):
                    store.retrying(lambda: store.deliveries.retry_unknown(at))
    finally:
        store.close()
        rival.close()


def _cut_off_inside_a_write(url: str, table: str, proc: subprocess.Popen[str]) -> None:
    """Hold ``table`` against writes until ``proc``'s session waits on it inside its
    transaction, end that session, then let go: the command's unit of work was cut off
    half-way, as a restart or a dropped connection cuts it off."""
    import psycopg

    with psycopg.connect(url) as locker:
        locker.execute(f"LOCK TABLE {table} IN SHARE MODE")  # reads go on, writes wait

        def waiting() -> list[tuple[Any, ...]]:
            return pg(
                url,
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> %s",
                (locker.info.backend_pid,),
            )

        assert wait_until(lambda: bool(waiting()) or proc.poll() is not None, timeout=60)
        blocked = waiting()
        assert blocked, f"the command ended without writing to {table}: {proc.communicate()}"
        for (pid,) in blocked:
            pg(url, "SELECT pg_terminate_backend(%s)", (pid,))
        locker.rollback()


def _finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_consent_and_reply_run_their_write_again_after_the_session_is_lost(
    database: str, tmp_path: Path
) -> None:
    toml = outreach_toml('[channels.sms]\nprovider = "outbox"\n').replace(
        'database = "outreach.db"', f'database = "{database}"'
    )
    ws = make_workspace(tmp_path / "ws", toml)
    # an import cut off stops in one line, its batches whole (2,000 rows each); the scratch
    # list of the ids it has seen went with the session, so it does not go on: run again,
    # it records each opt-in of the file once
    (ws / "people.csv").write_text(customers_csv(2_500), encoding="utf-8")
    imported = spawn(ws, "customers", "import", str(ws / "people.csv"), "--json", now=None)
    _cut_off_inside_a_write(database, "customers", imported)
    code, _, err = _finished(imported)
    assert code == 4, err
    assert len(err.strip().splitlines()) == 1 and "run the command again" in err, err
    assert pg(database, "SELECT count(*) FROM customers")[0][0] in (0, 2_000)
    code, _, err = _finished(
        spawn(ws, "customers", "import", str(ws / "people.csv"), "--json", now=None)
    )
    assert code == 0, err
    assert pg(database, "SELECT count(*) FROM customers") == [(2_500,)]
    assert pg(database, "SELECT count(*), count(DISTINCT customer_id) FROM consent") == [
        (2_500, 2_500)
    ]

    revoked = spawn(ws, "consent", "revoke", "c00007", "--channel", "sms", now=None)
    _cut_off_inside_a_write(database, "consent", revoked)
    code, _, err = _finished(revoked)
    assert code == 0, err
    assert pg(database, "SELECT status FROM consent WHERE customer_id = 'c00007' ORDER BY id") == [
        ("opted_in",),
        ("opted_out",),
    ]

    replied = spawn(ws, "reply", "c00008", "Your parcel left today", "--channel", "sms", now=None)
    _cut_off_inside_a_write(database, "deliveries", replied)
    code, _, err = _finished(replied)
    assert code == 0, err
    assert pg(
        database, "SELECT status, count(*) FROM deliveries WHERE customer_id = 'c00008' GROUP BY 1"
    ) == [("sent", 1)]
    sent = [json.loads(f.read_text()) for f in (ws / "outbox" / "sms").glob("*.json")]
    assert [(m["to"], m["body"]) for m in sent] == [("+31610000008", "Your parcel left today")]

    closed = spawn(ws, "conversations", "close", "c00008", now=None)
    _cut_off_inside_a_write(database, "conversations", closed)
    code, _, err = _finished(closed)
    assert code == 0, err
    assert pg(database, "SELECT status FROM conversations WHERE customer_id = 'c00008'") == [
        ("closed",)
    ]
