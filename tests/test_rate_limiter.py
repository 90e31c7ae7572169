"""The send rate limiter: slots from the store, shared by every process on the database.

Two limiters on two connections of one database stand for two processes (the real
processes are in tests/reliability/test_shared_rate.py); without the shared schedule each
would allow the whole rate and together they would send twice as fast.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach.config import Rate
from outreach.sending.channel import RateLimiter
from outreach.store import Store, open_store
from tests.postgresql import empty_database
from tests.reliability.support import (
    make_workspace,
    outreach_toml,
    run_cli,
    statuses,
    twilio_channel,
)
from tests.servers.twilio import TwilioEmulator


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "outreach.db")
        return
    url = request.getfixturevalue("postgresql_database")
    yield url
    empty_database(url)


async def _send_times(limiter: RateLimiter, n: int, concurrency: int) -> list[float]:
    stop = asyncio.Event()
    times: list[float] = []

    async def sender(count: int) -> None:
        for _ in range(count):
            await limiter.acquire(stop)
            times.append(time.monotonic())

    share = [n // concurrency] * concurrency
    await asyncio.gather(*(sender(k) for k in share))
    return times


def _in_window(times: list[float], start: float, length: float) -> int:
    return sum(1 for t in times if start <= t < start + length)


def _two_processes(stores: list[Store], rate: Rate, n: int) -> list[float]:
    limiters = [RateLimiter.shared(rate, s.limits, "channel:sms") for s in stores]

    async def both() -> list[float]:
        runs = await asyncio.gather(*(_send_times(lim, n, 4) for lim in limiters))
        return sorted(t for run in runs for t in run)

    return asyncio.run(both())


def test_two_senders_on_one_database_share_the_rate(database: str) -> None:
    stores = [open_store(database), open_store(database)]
    try:
        times = _two_processes(stores, Rate(100, 1.0), 40)
    finally:
        for s in stores:
            s.close()
    assert len(times) == 80
    # 80 slots at 100/s, starting at once: the last one 0.79 s after the first
    assert times[-1] - times[0] >= 0.79 - 0.01
    # any half second holds at most 50 slots, plus what a late send (50 ms) lets in
    assert max(_in_window(times, t, 0.5) for t in times) <= 50 + 5 + 1


def test_a_stalled_sender_gives_up_its_missed_slots_instead_of_sending_them_at_once() -> None:
    limiter = RateLimiter(Rate(100, 1.0))

    async def stalled() -> list[float]:
        stop = asyncio.Event()
        times = []
        for i in range(30):
            await limiter.acquire(stop)
            times.append(time.monotonic())
            if i == 9:
                time.sleep(0.2)  # the event loop is blocked: 20 slots go by
        return times

    times = asyncio.run(stalled())
    # after the stall the sends go on at the rate, not 20 of them back to back
    after = times[10:]
    assert after[-1] - after[0] >= 19 * 0.01 - 0.005


def test_a_slot_is_reserved_a_batch_at_a_time_not_per_message(tmp_path: Path) -> None:
    store = open_store(tmp_path / "outreach.db")
    calls: list[int] = []

    def reserve(count: int) -> float:
        calls.append(count)
        return store.limits.reserve("channel:sms", 1000.0, count)

    limiter = RateLimiter(Rate(1000, 1.0), reserve)
    asyncio.run(_send_times(limiter, 200, 8))
    store.close()
    # one slot first, then doubling up to what the 8 waiting sends need, or 10 ms of slots
    assert calls[:6] == [1, 2, 4, 8, 10, 10]
    assert len(calls) <= 200 / 8
    # and the last batch left few slots unused, lost to every other sender
    assert 200 <= sum(calls) <= 200 + 10


def test_a_stopped_sender_does_not_wait_for_its_slot() -> None:
    limiter = RateLimiter(Rate(1, 3600.0))  # one a hour

    async def stopped() -> float:
        stop = asyncio.Event()
        await limiter.acquire(stop)  # the first slot is now
        asyncio.get_running_loop().call_later(0.05, stop.set)
        t0 = time.monotonic()
        await limiter.acquire(stop)
        return time.monotonic() - t0

    assert asyncio.run(stopped()) < 1.0


def test_without_a_slot_from_the_database_nothing_is_sent_and_the_deliveries_stay_queued(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    toml = outreach_toml(twilio_channel(twilio_server.url, rate="100/s"))
    ws = make_workspace(tmp_path / "ws", toml, customers=5)
    with sqlite3.connect(ws / "outreach.db") as conn:
        conn.execute("DROP TABLE rate_limits")  # a database fault where the slots are kept
    result = run_cli(ws, "run", "blast", "--json")
    # as for a full disk under the outbox: one line, exit 0, everything left for later
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1, result.stderr
    assert "circuit open (no send slot from the database" in problems[0]
    assert "rate_limits" in problems[0] and "Traceback" not in result.stderr
    assert twilio_server.requests == []
    assert statuses(ws) == {"queued": 5}
