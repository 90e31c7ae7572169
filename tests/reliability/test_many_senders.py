"""Many senders on one PostgreSQL database: `run`s and `worker`s started at once, killed
and stopped, as real processes against the loopback Twilio emulator.

The emulator is the witness: every message request it received, per recipient. After each
scenario nobody got two, and every planned delivery is `sent` or (in flight when its
sender was killed) `unknown`, never lost.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgresql import empty_database
from tests.servers.fixtures import TWILIO_SID, TWILIO_TOKEN
from tests.servers.http import Recorded, Reply
from tests.servers.twilio import TwilioEmulator

from .support import (
    BLAST,
    make_workspace,
    outreach_toml,
    run_cli,
    sends_per_to,
    spawn,
    stop,
    twilio_channel,
    wait_until,
)

pytestmark = pytest.mark.postgresql

SECOND = BLAST.replace('start = "2026-12-01 08:00"', 'start = "2026-12-01 08:30"')


class SlowTwilio(TwilioEmulator):
    """Answers each message after ``delay`` seconds (one at a time: the emulator's loop
    waits), so that a sender is caught with messages in flight."""

    delay = 0.0

    def handle(self, request: Recorded) -> Reply:
        time.sleep(self.delay)
        return super().handle(request)


@pytest.fixture
def twilio() -> Iterator[SlowTwilio]:
    with SlowTwilio(TWILIO_SID, TWILIO_TOKEN) as server:
        yield server


def workspace(
    folder: Path,
    url: str,
    twilio_url: str,
    customers: int,
    *,
    campaigns: dict[str, str] | None = None,
    sending: str = "",
) -> Path:
    empty_database(url)
    toml = outreach_toml(twilio_channel(twilio_url, concurrency=4)).replace(
        'database = "outreach.db"', f'database = "{url}"'
    )
    toml = toml.replace("[sending]\n", f"[sending]\n{sending}")
    return make_workspace(folder, toml, customers=customers, campaigns=campaigns)


def pg(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def statuses(url: str) -> dict[str, int]:
    return dict(pg(url, "SELECT status, count(*) FROM deliveries GROUP BY status"))


def test_two_runs_started_at_once_plan_an_occurrence_once(
    postgresql_database: str, tmp_path: Path, twilio: SlowTwilio
) -> None:
    n = 3000
    ws = workspace(tmp_path / "ws", postgresql_database, twilio.url, n)
    runs = [spawn(ws, "run", "blast", "--json") for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in runs]
    for proc, (_, err) in zip(runs, outputs, strict=True):
        assert proc.returncode == 0, err
    reports = [json.loads(out) for out, _ in outputs]
    planned = [line["planned"] for r in reports for line in r["campaigns"] if line["planned"]]
    assert planned == [n]  # one of them planned it; the other sent beside it
    assert sum(r["sent"] for r in reports) == n
    per_to = sends_per_to(twilio)
    assert len(per_to) == n and set(per_to.values()) == {1}
    assert statuses(postgresql_database) == {"sent": n}


def test_a_killed_worker_leaves_its_in_flight_deliveries_unknown_found_by_its_lease(
    postgresql_database: str, tmp_path: Path, twilio: SlowTwilio
) -> None:
    url = postgresql_database
    n = 60
    # a lease far longer than the test: it expires only when the test says so, below
    ws = workspace(tmp_path / "ws", url, twilio.url, n, sending="lease = 600\n")
    twilio.hang_seconds = 60
    twilio.fail(*["hang"] * n)  # every message stays in flight
    worker = spawn(ws, "worker", "--poll", "0.2")
    try:
        assert wait_until(lambda: len(twilio.requests) >= 4, timeout=120)
        assert wait_until(lambda: statuses(url).get("sending", 0) >= 4, timeout=30)
    finally:
        worker.kill()
        worker.wait()
    twilio.faults.clear()
    in_flight = {r[0] for r in pg(url, "SELECT id FROM deliveries WHERE status = 'sending'")}
    assert 4 <= len(in_flight) <= 4  # the channel's concurrency bounds them
    asked = set(sends_per_to(twilio))
    # as if it ran on another host: its pid says nothing here, only its lease does
    pg(url, "UPDATE workers SET host = 'another-host'")
    result = run_cli(ws, "run", "--json", env={})
    assert result.returncode == 0, result.stderr
    assert statuses(url).get("sending") == len(in_flight)  # its lease has not expired
    # time passes: its last heartbeat is older than the lease now (on the server's clock)
    aged = "heartbeat_at - interval '601 seconds'"
    pg(url, f"UPDATE workers SET heartbeat_at = {aged} WHERE host = 'another-host'")
    again = spawn(ws, "worker", "--poll", "0.2", "--json")
    try:
        assert wait_until(lambda: statuses(url).get("unknown") == len(in_flight), timeout=60)
        assert wait_until(lambda: statuses(url).get("sent") == n - len(in_flight), timeout=60)
    finally:
        code, out, err = stop(again, signal.SIGTERM)
    assert code == 0, err
    assert json.loads(out)["recovered_unknown"] == len(in_flight)
    unknown = {r[0] for r in pg(url, "SELECT id FROM deliveries WHERE status = 'unknown'")}
    assert unknown == in_flight
    per_to = sends_per_to(twilio)
    assert len(per_to) == n and set(per_to.values()) == {1}  # never sent twice
    assert set(per_to) >= asked


def test_a_worker_stops_cleanly_on_sigterm(
    postgresql_database: str, tmp_path: Path, twilio: SlowTwilio
) -> None:
    url = postgresql_database
    n = 200
    ws = workspace(tmp_path / "ws", url, twilio.url, n)
    twilio.delay = 0.05
    worker = spawn(ws, "worker", "--poll", "0.2", "--json")
    assert wait_until(lambda: len(twilio.requests) >= 20, timeout=120)
    code, out, err = stop(worker, signal.SIGTERM)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["signal"] == "SIGTERM" and summary["planned"] == ["blast 2026-12-01T07:00:00Z"]
    by_status = statuses(url)
    # what was in flight was finished and recorded; the rest waits in the queue
    assert by_status.get("sending", 0) == 0 and by_status.get("unknown", 0) == 0
    assert by_status["sent"] == len(twilio.requests) == summary["sent"] < n
    assert by_status["sent"] + by_status["queued"] == n
    assert pg(url, "SELECT count(*) FROM workers") == [(0,)]  # its lease is given back


def test_frequency_caps_hold_for_two_processes_planning_two_campaigns_at_once(
    postgresql_database: str, tmp_path: Path, twilio: SlowTwilio
) -> None:
    import psycopg

    url = postgresql_database
    n = 500
    ws = workspace(
        tmp_path / "ws",
        url,
        twilio.url,
        n,
        campaigns={"first": BLAST, "second": SECOND},
        sending='frequency_cap = "1/7d"\n',
    )
    # Hold the first plan half-way: an uncommitted row with the key of its first delivery
    # makes its batch insert wait (its batch uncommitted, so invisible to the second plan)
    with psycopg.connect(url) as blocker:
        blocker.execute(
            "INSERT INTO deliveries (id, campaign, occurrence, customer_id, channel, purpose, "
            "template, counts_for_cap, status, not_before, created_at, updated_at) VALUES "
            "('blocker', 'first', '2026-12-01T07:00:00Z', 'c00000', 'sms', 'campaign', "
            "'product_update', 1, 'queued', %s, %s, %s)",
            ("2026-12-01T07:00:00Z",) * 3,
        )
        first = spawn(ws, "run", "first", "--json")
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event <> 'advisory' "
            "AND query LIKE '%%deliveries%%'"
        )
        assert wait_until(lambda: pg(url, waiting) == [(1,)], timeout=120, step=0.05)
        second = spawn(ws, "run", "second", "--json")
        # the second plan waits for the first (or, were caps per process, plans at once)
        blocked = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        assert wait_until(
            lambda: pg(url, blocked) == [(1,)] or second.poll() is not None,
            timeout=120,
            step=0.05,
        )
        time.sleep(0.5)
        blocker.rollback()
    outputs = [proc.communicate(timeout=300) for proc in (first, second)]
    for proc, (_, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, err
    per_to = sends_per_to(twilio)
    assert len(per_to) == n and set(per_to.values()) == {1}  # one message each, not two
    rows = pg(
        url,
        "SELECT customer_id, count(*) FROM deliveries WHERE status = 'sent' "
        "GROUP BY customer_id HAVING count(*) > 1",
    )
    assert rows == []
    assert statuses(url) == {"sent": n, "skipped": n}
