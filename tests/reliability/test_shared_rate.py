"""A channel's or a campaign's rate held by four sender processes together.

Four real processes send one campaign on one workspace to the loopback Twilio emulator,
which records when each request arrives. With a limiter per process each would allow the
whole rate and the four together four times as much; with the shared limiter (slots kept
in the database) no one-second window holds more than the rate and its documented margin,
and the whole takes about N / rate.

On PostgreSQL the senders are the real CLI: a ``run`` and three ``outreach worker``s. On
both stores, and for a campaign's rate too, they are the library's send pass
(``send_due_async``) in ``python -c`` processes, started together once the first has
planned the campaign (on SQLite a worker's pass takes the workspace lock, so a run and
workers take turns there). And ``serve``'s reply sender shares the rate with a ``run``
sending a campaign on the same channel.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgresql import empty_database
from tests.servers.twilio import TwilioEmulator

from .support import (
    BLAST,
    NOW,
    Stalls,
    child_env,
    free_port,
    make_workspace,
    outreach_toml,
    sends_per_to,
    spawn,
    stop,
    twilio_channel,
    wait_until,
)
from .test_concurrency import _healthy, _inbound, _post_all

SENDER = """
import asyncio, json, sys
from pathlib import Path
from outreach import clock
from outreach.workspace import Workspace
from outreach.sending.engine import send_due_async

clock.set_now(sys.argv[2])
ws = Workspace.load(Path(sys.argv[1]))
if sys.argv[3] == "plan":
    from outreach.campaigns.files import load_campaign
    from outreach.campaigns.planner import plan_occurrence
    from outreach.campaigns.schedule import latest_occurrence

    campaign = load_campaign(ws.config, "blast")
    occurrence = latest_occurrence(ws.config, campaign, clock.now())
    plan_occurrence(ws.config, ws.store, campaign, occurrence, clock.now())
# what a first send pass imports (the provider, HTTP/2, the connection pool), before
# "ready": on a busy machine they took a second or two, and the four did not start together
import outreach.channels.twilio, h2.connection, httpcore, anyio
print("ready", flush=True)
sys.stdin.readline()  # go: every sender starts at once
summary = asyncio.run(send_due_async(ws))
print(json.dumps({"sent": summary.sent, "problems": summary.problems}), flush=True)
ws.close()
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield "outreach.db"
        return
    url = request.getfixturevalue("postgresql_database")
    yield url
    empty_database(url)


def _sender(ws: Path, role: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, str(ws), NOW, role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def _ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.communicate()[1]


def _most_in_one_second(times: list[float]) -> int:
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def _assert_no_second_over_the_rate(
    times: list[float], rate: int, stalls: Stalls, senders: int
) -> None:
    # as sent, a second holds at most rate + 2 (README, Channels); the way from a process
    # to the emulator adds jitter: 100 ms of it, and the requests that the emulator (a
    # thread of this process) stamped late, together, while this process was not scheduled
    most = rate + 2 + math.ceil(rate * (0.1 + stalls.longest))
    # senders each at the whole rate (a limiter per process) would put more in a second
    assert most < senders * rate, f"stalled {stalls.longest:.2f} s: too long to tell apart"
    assert _most_in_one_second(times) <= most, stalls.longest


def _assert_took_n_slots(times: list[float], rate: int, stalls: Stalls, senders: int) -> None:
    # n slots 1/rate apart: the first to the last send takes (n - 1) / rate, and about
    # that: the first send may come up to a slot late and opens a connection (0.25 s),
    # or reach the emulator while this process stalls, the last not, so it may seem that
    # much shorter; starting up and the machine's load stretch it
    n = len(times)
    took = times[-1] - times[0]
    least = (n - 1) / rate - 0.25 - stalls.longest
    # senders each at the whole rate (a limiter per process) would take a 1 / senders
    assert least > (n - 1) / rate / senders, f"stalled {stalls.longest:.2f} s: too long"
    assert least <= took <= (n - 1) / rate * 1.5 + 1.0, took


@pytest.mark.parametrize("limit", ["channel", "campaign"])
def test_four_processes_share_a_channel_or_campaign_rate(
    tmp_path: Path, twilio_server: TwilioEmulator, database: str, limit: str
) -> None:
    rate, n = 20, 50
    channel_rate = f"{rate}/s" if limit == "channel" else None
    toml = outreach_toml(twilio_channel(twilio_server.url, concurrency=4, rate=channel_rate))
    toml = toml.replace('database = "outreach.db"', f'database = "{database}"')
    campaign = BLAST if limit == "channel" else f'{BLAST}\n[limits]\nrate = "{rate}/s"\n'
    ws = make_workspace(tmp_path / "ws", toml, customers=n, campaigns={"blast": campaign})
    # started side by side: the first plans while the others start up
    senders = [_sender(ws, "plan")] + [_sender(ws, "send") for _ in range(3)]
    for proc in senders:
        _ready(proc)
    with Stalls() as stalls:
        for proc in senders:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in senders:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    sent = [r["sent"] for r in results]
    assert sum(sent) == n, results
    assert sum(1 for s in sent if s) >= 3, sent  # they really sent side by side
    assert max(sends_per_to(twilio_server).values()) == 1
    times = sorted(r.at for r in twilio_server.requests if r.method == "POST")
    assert len(times) == n
    _assert_no_second_over_the_rate(times, rate, stalls, senders=4)
    _assert_took_n_slots(times, rate, stalls, senders=4)


def test_serve_replies_and_a_run_share_a_channel_rate(
    tmp_path: Path, twilio_server: TwilioEmulator, database: str
) -> None:
    rate, customers, helps = 20, 40, 30
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    channel = twilio_channel(twilio_server.url, concurrency=4, rate=f"{rate}/s")
    toml = outreach_toml(channel, public_url=url)
    toml = toml.replace('database = "outreach.db"', f'database = "{database}"')
    ws = make_workspace(tmp_path / "ws", toml, customers=customers)
    serve = spawn(ws, "serve", "--port", str(port))
    try:
        assert wait_until(lambda: _healthy(url) or serve.poll() is not None, timeout=30)
        assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
        with Stalls() as stalls:
            run = spawn(ws, "run", "blast", "--json")
            assert wait_until(lambda: bool(twilio_server.requests) or run.poll() is not None, 30)
            # HELP from 30 customers while the campaign goes out: 30 replies from serve
            payloads = [{**_inbound(i, customers), "Body": "HELP"} for i in range(helps)]
            codes = asyncio.run(_post_all(url, payloads, 8))
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
            assert json.loads(out)["sent"] == customers
            assert wait_until(lambda: _posts(twilio_server) >= customers + helps, timeout=60)
    finally:
        code, _, serve_err = stop(serve, signal.SIGINT)
    assert codes == [200] * helps
    assert code == 0, serve_err
    requests = [r for r in twilio_server.requests if r.method == "POST"]
    # the campaign is the init workspace's product update; the rest are serve's replies
    campaign = [r.at for r in requests if "news from" in r.form()["Body"]]
    replies = [r.at for r in requests if "news from" not in r.form()["Body"]]
    assert len(replies) == helps and len(campaign) == customers, len(requests)
    # they went out side by side, not one after the other
    assert replies[0] < campaign[-1]
    _assert_no_second_over_the_rate(sorted(r.at for r in requests), rate, stalls, senders=2)


def _posts(server: TwilioEmulator) -> int:
    return sum(1 for r in list(server.requests) if r.method == "POST")


@pytest.mark.postgresql
def test_a_run_and_three_workers_share_a_channel_rate_on_postgresql(
    tmp_path: Path, twilio_server: TwilioEmulator, postgresql_database: str
) -> None:
    # the real CLI: on PostgreSQL a run takes no workspace lock and workers send beside it
    # (on SQLite a worker's pass takes the lock, so there they take turns)
    empty_database(postgresql_database)
    try:
        _run_and_workers(tmp_path, twilio_server, postgresql_database)
    finally:
        empty_database(postgresql_database)


def _run_and_workers(tmp_path: Path, twilio_server: TwilioEmulator, database: str) -> None:
    rate, n = 20, 50
    toml = outreach_toml(twilio_channel(twilio_server.url, concurrency=4, rate=f"{rate}/s"))
    toml = toml.replace('database = "outreach.db"', f'database = "{database}"')
    ws = make_workspace(tmp_path / "ws", toml, customers=n)
    workers = [spawn(ws, "worker", "--poll", "0.2", "--json") for _ in range(3)]
    try:
        with Stalls() as stalls:
            run = spawn(ws, "run", "blast", "--json")
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
            assert wait_until(lambda: _posts(twilio_server) >= n, timeout=60)
    finally:
        stopped = [stop(w, signal.SIGTERM) for w in workers]
    assert all(code == 0 for code, _, _ in stopped), [e for _, _, e in stopped]
    sent = [json.loads(out)["sent"]] + [json.loads(o)["sent"] for _, o, _ in stopped]
    assert sum(sent) == n, sent
    assert sum(1 for s in sent if s) >= 3, sent  # they really sent side by side
    assert max(sends_per_to(twilio_server).values()) == 1
    times = sorted(r.at for r in twilio_server.requests if r.method == "POST")
    _assert_no_second_over_the_rate(times, rate, stalls, senders=4)
    _assert_took_n_slots(times, rate, stalls, senders=4)
