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

import random
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.servers.twilio import TwilioEmulator

from .support import (
    TERMINAL,
    make_workspace,
    outreach_toml,
    phone,
    post_count,
    query,
    run_json,
    sends_per_to,
    spawn,
    statuses,
    stop,
    twilio_channel,
    wait_until,
)

CONCURRENCY = 16


def _workspace(tmp_path: Path, server: TwilioEmulator, customers: int) -> Path:
    toml = outreach_toml(twilio_channel(server.url, concurrency=CONCURRENCY))
    return make_workspace(tmp_path / "ws", toml, customers=customers)


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
        assert len(fresh) <= CONCURRENCY, f"{len(fresh)} deliveries in flight at the kill"
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
    # each killed run's in-flight rows, and only those, became unknown
    unknown_ids = {r[0] for r in query(ws, "SELECT id FROM deliveries WHERE status = 'unknown'")}
    assert unknown_ids == left_sending
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
