"""Two processes on one workspace: ``serve`` taking webhooks while ``run`` sends, and two runs.

``serve`` is a real process on a loopback port with ``[server] public_url`` set to that
port, so the X-Twilio-Signature the test computes with Twilio's own ``RequestValidator``
is over the URL the server checks. 32 concurrent connections post inbound messages (some
of them twice, as Twilio retries) while a ``run`` sends the campaign to the emulator.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.healthz import healthz
from tests.servers.fixtures import TWILIO_SID, TWILIO_TOKEN
from tests.servers.twilio import TwilioEmulator

from .support import (
    free_port,
    make_workspace,
    outreach_toml,
    phone,
    query,
    run_json,
    sends_per_to,
    spawn,
    statuses,
    stop,
    twilio_channel,
    wait_until,
)


def _healthy(url: str) -> bool:
    return healthz(url) == 200


def _inbound(i: int, customers: int) -> dict[str, str]:
    return {
        "MessageSid": f"SM{i:032x}",
        "SmsSid": f"SM{i:032x}",
        "AccountSid": TWILIO_SID,
        "From": phone(i % customers),
        "To": "+3197010000000",
        "Body": f"Thanks for the news, question {i}",
        "NumMedia": "0",
    }


async def _post_all(url: str, payloads: list[dict[str, str]], connections: int) -> list[int]:
    validator = RequestValidator(TWILIO_TOKEN)
    target = f"{url}/webhooks/sms"
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    codes: list[int] = []
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                params = queue.get_nowait()
                signature = validator.compute_signature(target, params)
                response = await client.post(
                    target, data=params, headers={"X-Twilio-Signature": signature}
                )
                codes.append(response.status_code)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return codes


def _serve_while_running(
    tmp_path: Path, server: TwilioEmulator, customers: int, webhooks: int
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    toml = outreach_toml(twilio_channel(server.url, concurrency=16), public_url=url)
    ws = make_workspace(tmp_path / "ws", toml, customers=customers)
    serve = spawn(ws, "serve", "--port", str(port))
    try:
        assert wait_until(lambda: _healthy(url) or serve.poll() is not None, timeout=30)
        assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
        run = spawn(ws, "run", "blast", "--json")
        # every fifth message is delivered twice, as a provider retrying a slow answer
        payloads = [_inbound(i, customers) for i in range(webhooks)]
        payloads += payloads[::5]
        assert wait_until(lambda: bool(server.requests) or run.poll() is not None, timeout=30)
        codes = asyncio.run(_post_all(url, payloads, 32))
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert json.loads(out)["sent"] == customers
    finally:
        code, _, serve_err = stop(serve, signal.SIGINT)
    assert codes == [200] * len(payloads)
    assert code == 0, serve_err
    assert "Traceback" not in serve_err
    rows = query(
        ws, "SELECT external_id, count(*) FROM messages WHERE direction = 'in' GROUP BY external_id"
    )
    assert len(rows) == webhooks and all(n == 1 for _, n in rows)
    assert {r[0] for r in rows} == {f"SM{i:032x}" for i in range(webhooks)}
    assert statuses(ws) == {"sent": customers}
    out_rows = query(ws, "SELECT count(*) FROM messages WHERE direction = 'out'")
    assert out_rows[0][0] == customers
    received = sends_per_to(server)
    assert len(received) == customers and max(received.values()) == 1


def test_serve_takes_signed_webhooks_from_32_connections_while_run_sends(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    _serve_while_running(tmp_path, twilio_server, customers=1000, webhooks=400)


@pytest.mark.slow
def test_serve_2000_webhooks_while_run_sends_10000(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    _serve_while_running(tmp_path, twilio_server, customers=10000, webhooks=2000)


def _slow_ws(tmp_path: Path, server: TwilioEmulator) -> Path:
    # 300 messages at 200/s: the first run holds the lock for about 1.5 s of sending
    toml = outreach_toml(twilio_channel(server.url, concurrency=8, rate="200/s"))
    return make_workspace(tmp_path / "ws", toml, customers=300)


def test_two_runs_started_together_one_works_the_other_exits_5(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    ws = _slow_ws(tmp_path, twilio_server)
    procs = [spawn(ws, "run", "blast", "--json") for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 5], [r[1] for r in results]
    loser = next(r for p, r in zip(procs, results, strict=True) if p.returncode == 5)
    assert "another outreach run" in loser[1] and "--wait" in loser[1]
    assert loser[0] == ""
    assert statuses(ws) == {"sent": 300}
    assert max(sends_per_to(twilio_server).values()) == 1


def test_with_wait_the_second_run_waits_then_finds_nothing_to_send(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    ws = _slow_ws(tmp_path, twilio_server)
    first = spawn(ws, "run", "blast", "--json")
    assert wait_until(lambda: bool(twilio_server.requests), timeout=30)
    second = spawn(ws, "run", "blast", "--json", "--wait", "30")
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert json.loads(out1)["sent"] == 300
    assert json.loads(out2)["sent"] == 0
    assert statuses(ws) == {"sent": 300}
    assert len(sends_per_to(twilio_server)) == 300
    assert max(sends_per_to(twilio_server).values()) == 1


def test_a_killed_run_releases_the_lock_at_once(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    ws = _slow_ws(tmp_path, twilio_server)
    first = spawn(ws, "run", "blast", "--json")
    assert wait_until(lambda: bool(twilio_server.requests), timeout=30)
    first.kill()
    first.wait()
    data = run_json(ws, "blast")  # no --wait: the kernel dropped the flock with the process
    assert data["unknown"] <= 8
