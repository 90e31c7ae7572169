"""``outreach serve`` under faults, as a real process on a loopback port.

A Standard Webhooks request retried with the same ``webhook-id`` changes nothing the second
time, even when its messages carry no ids; confirmations accepted just before a SIGKILL go
out once after the restart; a damaged database or a full disk is a 503 and an unhealthy
``/healthz``, never a 500 with a traceback; a client that hangs up mid-body or dawdles over
its headers or body costs no traceback and no connection for ever; HEAD is never taken for
POST; SIGTERM is a clean stop (exit 0).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from outreach.channels.webhook import decode_secret, sign
from tests.healthz import healthz
from tests.servers.fixtures import WEBHOOK_SECRET
from tests.servers.webhook_receiver import WebhookReceiver

from .conftest import SmallDisk
from .support import (
    customers_csv,
    free_port,
    make_workspace,
    outreach_toml,
    query,
    spawn,
    stop,
    wait_until,
)
from .test_damaged_store import damage


def _hook_toml(receiver_url: str, port: int) -> str:
    channel = (
        '[channels.sms]\nprovider = "outbox"\n\n'
        "[channels.hook]\n"
        'provider = "webhook"\n'
        f'url = "{receiver_url}/hooks/outreach"\n'
        'secret_env = "WEBHOOK_SECRET"\n'
        'address = "id"\n'
        "concurrency = 4\n"
        "timeout = 2\n"
    )
    return outreach_toml(channel, public_url=f"http://127.0.0.1:{port}")


def _ws(folder: Path, receiver_url: str, port: int, customers: int = 40) -> Path:
    ws = make_workspace(
        folder,
        _hook_toml(receiver_url, port),
        customers_text=customers_csv(customers, opted_in="hook"),
    )
    confirmation = ws / "templates" / "stop_confirmation"
    (confirmation / "hook.j2").write_text((confirmation / "sms.j2").read_text())
    return ws


class Serve:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.stderr = ""


@contextmanager
def serving(ws: Path, port: int, *, healthy: bool = True, prelude: str = "") -> Iterator[Serve]:
    """``outreach serve`` until the block ends (SIGTERM, which must be a clean exit 0)."""
    url = f"http://127.0.0.1:{port}"
    proc = spawn(ws, "serve", "--port", str(port), now=None, prelude=prelude)

    def answering() -> bool:
        status = healthz(url)
        if status is None:
            return proc.poll() is not None
        return status == 200 or not healthy

    assert wait_until(answering, timeout=30)
    assert proc.poll() is None, proc.communicate()[1]
    serve = Serve(proc, url)
    try:
        yield serve
    finally:
        if proc.poll() is None:
            code, _, serve.stderr = stop(proc, signal.SIGTERM)
            assert code == 0, serve.stderr
        else:
            serve.stderr = proc.communicate()[1]
    assert "Traceback" not in serve.stderr, serve.stderr


def _signed(payload: object, msg_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = int(time.time())
    key = decode_secret(WEBHOOK_SECRET, where="test")
    return body, {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, msg_id, stamp, body),
    }


def _posts(receiver: WebhookReceiver) -> list[dict[str, object]]:
    return [r.json() for r in list(receiver.requests) if r.method == "POST"]


def _confirmations_per_customer(receiver: WebhookReceiver) -> Counter[str]:
    counts: Counter[str] = Counter()
    for body in _posts(receiver):
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict):
            counts[str(data.get("to"))] += 1
    return counts


def test_a_retried_webhook_list_without_ids_is_stored_once_with_one_opt_out(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    port = free_port()
    ws = _ws(tmp_path / "ws", webhook_receiver.url, port)
    payload = [
        {"from": "c00001", "text": "STOP"},
        {"from": "c00001", "text": "why?"},
        {"from": "c00002", "text": "hello"},
    ]
    body, headers = _signed(payload, "msg_retried")
    with serving(ws, port) as serve:
        for _ in range(3):  # the sender's retries after a timeout
            answer = httpx.post(
                f"{serve.url}/webhooks/hook", content=body, headers=headers, timeout=10
            )
            assert answer.status_code == 200, answer.text
        assert wait_until(lambda: len(_posts(webhook_receiver)) >= 1, timeout=15)
        time.sleep(2.5)  # time for a second (wrong) confirmation to show up
    stored = query(ws, "SELECT count(*) FROM messages WHERE direction = 'in'")[0][0]
    assert stored == 3
    opt_outs = query(
        ws,
        "SELECT count(*) FROM consent WHERE customer_id = 'c00001' AND "
        "channel = 'hook' AND status = 'opted_out'",
    )[0][0]
    assert opt_outs == 1
    assert len(_posts(webhook_receiver)) == 1


async def _burst(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> list[int]:
    async with httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{url}/webhooks/hook", content=body, headers=headers)
                for body, headers in requests
            )
        )
    return [a.status_code for a in answers]


def test_confirmations_accepted_before_a_sigkill_go_out_once_after_the_restart(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    port = free_port()
    n = 30
    ws = _ws(tmp_path / "ws", webhook_receiver.url, port, customers=n)
    requests = [_signed({"from": f"c{i:05d}", "text": "STOP"}, f"msg_kill_{i}") for i in range(n)]
    proc = spawn(ws, "serve", "--port", str(port), now=None)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _answers(url), timeout=30)
        assert asyncio.run(_burst(url, requests)) == [200] * n
    finally:
        proc.kill()  # SIGKILL: within the sender's gathering second, nothing sent yet
        proc.communicate()
    queued = query(
        ws, "SELECT count(*) FROM deliveries WHERE purpose = 'keyword' AND status = 'queued'"
    )[0][0]
    assert queued > 0, "the kill came too late to leave confirmations queued"
    with serving(ws, port):
        assert wait_until(lambda: len(_posts(webhook_receiver)) >= n, timeout=30), len(
            _posts(webhook_receiver)
        )
        time.sleep(1.5)
    per_customer = _confirmations_per_customer(webhook_receiver)
    assert per_customer == Counter({f"c{i:05d}": 1 for i in range(n)})
    left = query(
        ws, "SELECT status, count(*) FROM deliveries WHERE purpose = 'keyword' GROUP BY status"
    )
    assert {r[0]: r[1] for r in left} == {"sent": n}


def _answers(url: str) -> bool:
    return healthz(url) is not None


def test_a_damaged_database_is_503_and_an_unhealthy_healthz(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    port = free_port()
    ws = _ws(tmp_path / "ws", webhook_receiver.url, port, customers=3000)
    damage(ws / "outreach.db")
    body, headers = _signed({"from": "c00001", "text": "hello", "id": "d1"}, "msg_d1")
    with serving(ws, port, healthy=False) as serve:
        health = httpx.get(f"{serve.url}/healthz", timeout=5)
        assert health.status_code == 503
        assert "damaged" in health.json()["error"]
        answer = httpx.post(f"{serve.url}/webhooks/hook", content=body, headers=headers, timeout=10)
        assert answer.status_code == 503, answer.text
        assert "Traceback" not in answer.text


def test_a_full_disk_makes_healthz_unhealthy(
    small_disk: SmallDisk, webhook_receiver: WebhookReceiver
) -> None:
    port = free_port()
    ws = _ws(small_disk.path / "ws", webhook_receiver.url, port, customers=10)
    with serving(ws, port) as serve:
        small_disk.fill()
        try:
            health = httpx.get(f"{serve.url}/healthz", timeout=5)
            assert health.status_code == 503, health.text
            assert "disk full" in health.json()["error"]
        finally:
            small_disk.free()
        assert httpx.get(f"{serve.url}/healthz", timeout=5).status_code == 200


def _raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(data)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the connection within ``seconds``; what it sent first."""
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        return True, got
    finally:
        sock.close()


def test_slow_and_vanishing_clients_cost_no_traceback_and_no_connection_for_ever(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    port = free_port()
    ws = _ws(tmp_path / "ws", webhook_receiver.url, port, customers=3)
    body, headers = _signed({"from": "c00001", "text": "hello", "id": "v1"}, "msg_v1")
    head = (
        "POST /webhooks/hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        "application/json\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k != "Content-Type")
    )
    # serve's deadlines for a request's headers and body at 1 s instead of 10: only time
    # is made up, the connections and the server are real
    quick = "import outreach.server.app as app\napp.HEADER_SECONDS = app.BODY_SECONDS = 1.0"
    with serving(ws, port, prelude=quick) as serve:
        for _ in range(3):  # hang up halfway through the body
            sock = _raw(
                port, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2]
            )
            sock.close()
        slow_headers = _raw(port, b"POST /webhooks/hook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow_body = _raw(port, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        closed, _ = _closed_within(slow_headers, 25)
        assert closed, "a connection that never finishes its headers is closed"
        closed, answer = _closed_within(slow_body, 25)
        assert closed, "a body that never arrives is given up on"
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert httpx.get(f"{serve.url}/healthz", timeout=5).status_code == 200
        assert query(ws, "SELECT count(*) FROM messages WHERE direction = 'in'")[0][0] == 0
    assert "Traceback" not in serve.stderr and "Exception" not in serve.stderr, serve.stderr


def test_head_is_never_taken_for_post(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    from outreach.store import open_store
    from outreach.tokens import make_unsubscribe_token

    port = free_port()
    ws = _ws(tmp_path / "ws", webhook_receiver.url, port, customers=3)
    store = open_store(ws / "outreach.db")
    try:
        token = make_unsubscribe_token(store.meta.signing_key(), "c00001", "hook")
    finally:
        store.close()
    body, headers = _signed({"from": "c00002", "text": "STOP", "id": "h1"}, "msg_h1")
    with serving(ws, port) as serve:
        page = httpx.request(
            "HEAD",
            f"{serve.url}/unsubscribe/{token}",
            content=b"List-Unsubscribe=One-Click",
            timeout=5,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert page.status_code in (200, 405)
        hook = httpx.request(
            "HEAD", f"{serve.url}/webhooks/hook", content=body, headers=headers, timeout=5
        )
        assert hook.status_code in (200, 405)
        for method in ("PUT", "DELETE", "PATCH"):
            other = httpx.request(method, f"{serve.url}/unsubscribe/{token}", timeout=5)
            assert other.status_code == 405
    assert query(ws, "SELECT count(*) FROM consent WHERE status = 'opted_out'")[0][0] == 0
    assert query(ws, "SELECT count(*) FROM messages WHERE direction = 'in'")[0][0] == 0
