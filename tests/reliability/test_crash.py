"""Crash safety of ``outreach run`` against a non-idempotent provider (Twilio).

The Twilio emulator runs in a thread of the test process, so it outlives every ``run``
process the test kills and is the witness of what customers actually received. Kill
moments are seeded: most are "after k more messages reached the provider" (k random over
what is left), the rest are random times that also hit start-up and planning.

Invariants after every kill, and at the end:
- at most ``concurrency`` deliveries are left ``sending`` by a killed run (so at most that
  many become ``unknown``); clean signals (SIGINT, SIGTERM) leave none;
- every customer received at most one message, and every message the provider received
  belongs to a delivery recorded ``sent`` or ``unknown``;
- re-runs finish the campaign: every delivery ends sent, failed, skipped or unknown.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from outreach.deliveries import DUE_STATES, Status
from outreach.sending import journal
from outreach.sending.channel import JOURNALED_BUDGET
from outreach.sending.lease import HOST
from outreach.sending.results import Result
from outreach.store import open_store
from tests.servers.twilio import TwilioEmulator

from .support import (
    TERMINAL,
    make_workspace,
    outreach_toml,
    phone,
    post_count,
    query,
    run_cli,
    run_json,
    sends_per_to,
    spawn,
    statuses,
    stop,
    twilio_channel,
    wait_until,
)

CONCURRENCY = 16


def _toml(server: TwilioEmulator, concurrency: int = CONCURRENCY) -> str:
    return outreach_toml(twilio_channel(server.url, concurrency=concurrency))


def _workspace(tmp_path: Path, server: TwilioEmulator, customers: int) -> Path:
    return make_workspace(tmp_path / "ws", _toml(server), customers=customers)


def _sending(ws: Path) -> set[str]:
    return {r[0] for r in query(ws, "SELECT id FROM deliveries WHERE status = 'sending'")}


def _phones_with(ws: Path, status: str) -> set[str]:
    rows = query(
        ws,
        "SELECT c.phone FROM deliveries d JOIN customers c ON c.id = d.customer_id "
        "WHERE d.status = ?",
        (status,),
    )
    return {r[0] for r in rows}


def _finish(ws: Path) -> list[dict[str, Any]]:
    """Re-run until nothing is left queued; return each run's report."""
    reports = []
    for _ in range(4):
        reports.append(run_json(ws, "blast"))
        left = statuses(ws)
        if not (left["queued"] or left["deferred"] or left["sending"]):
            break
    return reports


def _reached(
    server: TwilioEmulator, target: int, proc: subprocess.Popen[str]
) -> Callable[[], bool]:
    """Has the emulator received ``target`` requests in all (or has the run ended)?"""
    return lambda: post_count(server) >= target or proc.poll() is not None


def _kill_at_random_moments(
    ws: Path, server: TwilioEmulator, customers: int, kills: int, seed: int
) -> set[str]:
    rng = random.Random(seed)
    left_sending: set[str] = set()
    for _ in range(kills):
        remaining = customers - len(sends_per_to(server))
        proc = spawn(ws, "run", "blast", "--json")
        if remaining <= 1 or rng.random() < 0.25:
            wait_until(_reached(server, 10**9, proc), timeout=rng.uniform(0.2, 1.5))
        else:
            target = post_count(server) + rng.randint(1, remaining - 1)
            assert wait_until(_reached(server, target, proc), timeout=60)
        code, _, err = stop(proc, signal.SIGKILL)
        assert code in (137, 0, 3), err
        in_flight = _sending(ws)
        # a run killed before its recovery step leaves the previous run's rows as they were
        fresh = in_flight - left_sending
        # claimed ahead of the sends (the send journal tells the next run which of them
        # were never started, and which had an answer)
        assert len(fresh) <= max(CONCURRENCY, JOURNALED_BUDGET), f"{len(fresh)} claimed"
        left_sending |= in_flight
        assert max(sends_per_to(server).values(), default=0) <= 1
    return left_sending


def _check_crash_run(
    tmp_path: Path, server: TwilioEmulator, customers: int, kills: int, seed: int
) -> None:
    ws = _workspace(tmp_path, server, customers)
    left_sending = _kill_at_random_moments(ws, server, customers, kills, seed)
    dangling = _sending(ws)
    reports = _finish(ws)
    final = statuses(ws)
    assert set(final) <= TERMINAL, final
    assert sum(final.values()) == customers
    # only rows claimed at a kill became unknown, and of those only what was in flight:
    # handed to the provider and not yet answered (at most CONCURRENCY a kill)
    unknown_ids = {r[0] for r in query(ws, "SELECT id FROM deliveries WHERE status = 'unknown'")}
    assert unknown_ids <= left_sending
    assert len(unknown_ids) <= kills * CONCURRENCY
    # the run that finds them says so (and how to resend)
    assert bool(dangling) == any("--retry-unknown" in p for p in reports[0]["problems"])

    received = sends_per_to(server)
    assert max(received.values()) == 1, "a customer received two messages"
    sent, unknown = _phones_with(ws, "sent"), _phones_with(ws, "unknown")
    assert sent <= set(received)
    assert set(received) <= sent | unknown
    assert final["sent"] + final["unknown"] >= len(received) >= final["sent"]

    # --retry-unknown resends blindly: Twilio has no idempotency key, so a customer whose
    # message reached Twilio before the crash gets it twice. That is the documented price
    # of the flag (README: unknown means "maybe sent"), so it is opt-in.
    reached_before = unknown & set(received)
    data = run_json(ws, "--retry-unknown")
    assert data["unknown"] == 0
    assert set(statuses(ws)) <= {"sent", "failed", "skipped"}
    after = sends_per_to(server)
    assert {to for to, n in after.items() if n > 1} == reached_before
    assert max(after.values()) <= 2
    assert set(after) == {phone(i) for i in range(customers)}


def test_sigkill_at_random_moments_never_sends_twice(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    _check_crash_run(tmp_path, twilio_server, customers=1500, kills=8, seed=20261201)


@pytest.mark.slow
def test_sigkill_soak_5000(tmp_path: Path, twilio_server: TwilioEmulator) -> None:
    _check_crash_run(tmp_path, twilio_server, customers=5000, kills=14, seed=77)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_drain_and_leave_nothing_unknown(
    tmp_path: Path, twilio_server: TwilioEmulator, sig: signal.Signals
) -> None:
    customers = 500
    ws = _workspace(tmp_path, twilio_server, customers)
    rng = random.Random(int(sig))
    for _ in range(2):
        remaining = customers - len(sends_per_to(twilio_server))
        proc = spawn(ws, "run", "blast", "--json")
        target = post_count(twilio_server) + rng.randint(20, remaining // 3)
        assert wait_until(_reached(twilio_server, target, proc), timeout=60)
        code, _, err = stop(proc, sig)
        # the shell convention: 128 + the signal (130 for SIGINT, 143 for SIGTERM)
        assert code == 128 + int(sig), err
        assert "interrupted" in err
        assert not _sending(ws)
        now = statuses(ws)
        assert set(now) <= {"sent", "queued"} and now["unknown"] == 0
        # what the provider answered is recorded: sent rows = messages received
        assert now["sent"] == len(sends_per_to(twilio_server))
    reports = _finish(ws)
    assert all(not r["problems"] for r in reports)
    assert statuses(ws) == Counter({"sent": customers})
    received = sends_per_to(twilio_server)
    assert len(received) == customers and max(received.values()) == 1


def test_a_kill_with_sends_claimed_ahead_leaves_only_the_unanswered_ones_unknown(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    """The engine claims ahead of its sends (its send journal makes that safe): at a kill,
    the deliveries claimed and never handed to the provider go back to the queue, and only
    those the provider had and never answered become ``unknown``."""
    customers, concurrency = 1200, 4
    ws = make_workspace(tmp_path / "ws", _toml(twilio_server, concurrency), customers=customers)
    twilio_server.hang_seconds = 120  # no answer before the kill
    proc = spawn(ws, "run", "blast", "--json")
    try:
        # the budget follows the pace: a few hundred sends in, it claims far ahead
        assert wait_until(_reached(twilio_server, 400, proc), timeout=60)
        twilio_server.fail(*["hang"] * customers)
        before = post_count(twilio_server)
        assert wait_until(lambda: post_count(twilio_server) >= before + concurrency, 10)
        hung = {r.form()["To"] for r in twilio_server.requests[before:]}
        # what was answered is recorded soon (the periodic flush); the rest stays claimed
        assert wait_until(lambda: statuses(ws)["sent"] >= before, 10)
        claimed = _sending(ws)
        assert len(claimed) > concurrency, "no deliveries claimed ahead of the sends"
    finally:
        stop(proc, signal.SIGKILL)
    twilio_server.faults.clear()
    assert len(hung) == concurrency
    reports = _finish(ws)
    unknown = _phones_with(ws, "unknown")
    assert unknown == hung, "only the sends the provider had and never answered are unknown"
    assert any("--retry-unknown" in p for p in reports[0]["problems"])
    received = sends_per_to(twilio_server)
    assert max(received.values()) == 1, "a customer received two messages"
    assert _phones_with(ws, "sent") == set(received) - hung
    assert statuses(ws) == Counter({"sent": customers - concurrency, "unknown": concurrency})


def _claimed_by_a_dead_sender(ws: Path, count: int) -> tuple[int, int, list[dict[str, Any]]]:
    """``count`` queued deliveries claimed by a sender of this host that has died: its
    worker id, its pid, and the claimed rows."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store = open_store(ws / "outreach.db")
    try:
        worker = store.workers.register(HOST, gone.pid, "run")
        rows = store.deliveries.claim_due(
            "2026-12-01T09:31:00Z", count, from_states=DUE_STATES, worker=worker
        )
    finally:
        store.close()
    assert len(rows) == count
    return worker, gone.pid, rows


def _dead_senders_journal(ws: Path, worker: int, pid: int, boot: str | None) -> journal.Journal:
    """A journal as the dead sender ``pid`` left it (written by the engine's own writer)."""
    kept = journal.Journal(ws, worker, boot or "")
    kept.header = json.dumps({"worker": worker, "pid": pid, "boot": boot}) + "\n"
    (ws / journal.DIRECTORY).mkdir(exist_ok=True)
    kept._next_file()
    return kept


@pytest.mark.parametrize("case", ["same-boot", "its-row-gone", "after-a-reboot"])
def test_the_next_run_settles_a_dead_senders_claims_by_its_journal(
    tmp_path: Path, twilio_server: TwilioEmulator, case: str
) -> None:
    """Answered: recorded as sent, with its conversation message, never sent again; started
    and unanswered: unknown; never started: sent by the next run. So too when the sender's
    row has gone (it ended with results it could not record). A journal of another boot
    (the machine restarted: the file may have lost its last lines) is not trusted."""
    same_boot = case != "after-a-reboot"
    ws = make_workspace(tmp_path / "ws", _toml(twilio_server), customers=6)
    run_json(ws, "blast", "--limit", "1")  # plans all six, sends one
    # the fourth: left sending by another process that had the same worker id (a database
    # restored from a backup gives ids out again); this journal does not name it
    worker, pid, (answered, unanswered, never, foreign) = _claimed_by_a_dead_sender(ws, 4)
    boot = journal.boot_id() if same_boot else "a-boot-before-the-last-restart"
    kept = _dead_senders_journal(ws, worker, pid, boot)
    at = "2026-12-01T09:31:01Z"
    kept.claimed([answered["id"], unanswered["id"], never["id"]])
    kept.started(answered["id"])
    sent = Result(answered["id"], answered["channel"], Status.SENT, at, None, None, "SMx", at)
    outbound = {
        "customer_id": answered["customer_id"],
        "channel": answered["channel"],
        "address": "+31612345678",
        "subject": None,
        "text": "the message the dead sender sent",
        "delivery_id": answered["id"],
        "campaign": "blast",
        "author": "campaign",
        "at": at,
        "reply_token": None,
    }
    kept.finished(sent, outbound)
    kept.started(unanswered["id"])
    os.close(kept.fd)  # killed: the file stays as written
    if case == "its-row-gone":
        with closing(open_store(ws / "outreach.db")) as store:
            store.workers.unregister(worker)
    before = sends_per_to(twilio_server)

    done = run_cli(ws, "run", "blast")
    assert done.returncode == 3, done.stderr  # some are unknown
    told = "1 sends of a run that died were recorded from its send journal" in done.stderr
    assert told == same_boot, done.stderr
    status = {r[0]: r[1] for r in query(ws, "SELECT id, status FROM deliveries")}
    messages = query(ws, "SELECT text FROM messages WHERE delivery_id = ?", (answered["id"],))
    resent = sends_per_to(twilio_server) - before
    if same_boot:
        assert status[answered["id"]] == "sent"
        assert [m[0] for m in messages] == ["the message the dead sender sent"]
        assert status[never["id"]] == "sent"
        assert status[unanswered["id"]] == status[foreign["id"]] == "unknown"
        assert sum(resent.values()) == 2  # the never-started one and the one left queued
    else:
        assert {status[d["id"]] for d in (answered, unanswered, never, foreign)} == {"unknown"}
        assert sum(resent.values()) == 1
    assert max(sends_per_to(twilio_server).values()) == 1
    assert not list((ws / journal.DIRECTORY).iterdir()), "the journal outlived its replay"
