"""Two ``outreach serve`` replicas, real processes, on one PostgreSQL database.

A provider that gets no answer retries, and behind a load balancer its retry may reach
the other replica while the first is still storing: the same message arrives at both at
once. Here every signed webhook is posted to both replicas at the same moment, and
several messages of one customer go through the two replicas side by side. Whatever the
order, each message is stored once and acted on once (one opt-out, also from a one-click
unsubscribe posted to both, one survey response,
one follow-up, one automatic reply per closed period, each sent once by whichever
replica's sender claimed it), and the conversation keeps its strongest attention reason
and latest message.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from outreach.channels.base import StatusEvent
from outreach.channels.webhook import decode_secret, sign
from outreach.conversations.inbox import InboundSummary
from outreach.mail.bounces import apply_bounce
from outreach.store import open_store
from outreach.tokens import make_unsubscribe_token
from outreach.workspace import Workspace
from tests.healthz import healthz
from tests.postgresql import empty_database
from tests.servers.fixtures import ENV, WEBHOOK_SECRET
from tests.servers.http import Recorded, Reply
from tests.servers.webhook_receiver import WebhookReceiver

from .support import (
    customers_csv,
    free_port,
    in_process,
    make_workspace,
    outreach_toml,
    spawn,
    stop,
    wait_until,
)

pytestmark = pytest.mark.postgresql

SURVEY = """kind = "survey"
template = "nps"
channels = ["hook"]

[schedule]
start = "2026-12-01 08:00"
window = "00:00-24:00"

[survey]
question = "How likely are you to recommend Acme?"
type = "nps"
follow_up = "nps_thanks"
"""


def _closed_now() -> str:
    """Business hours that are closed now (one hour, six hours away), so that a message
    that needs a person gets the automatic reply."""
    hour = (datetime.now(ZoneInfo("Europe/Amsterdam")).hour + 6) % 24
    hour = min(hour, 22)
    return f"Mon-Sun {hour:02d}:00-{hour + 1:02d}:00"


def _workspace(
    folder: Path, receiver: WebhookReceiver, customers: int, *, timeout: float = 5
) -> Path:
    channels = (
        '[channels.sms]\nprovider = "outbox"\n\n'  # the customers' preferred channel
        "[channels.hook]\n"
        'provider = "webhook"\n'
        f'url = "{receiver.url}/hooks/outreach"\n'
        'secret_env = "WEBHOOK_SECRET"\n'
        'address = "id"\n'
        "concurrency = 4\n"
        f"timeout = {timeout}\n"
    )
    ws = make_workspace(
        folder,
        outreach_toml(channels, business_hours=_closed_now()),
        campaigns={"nps": SURVEY},
        customers_text=customers_csv(customers, opted_in="hook"),
    )
    for template in ("nps", "nps_thanks"):
        folder = ws / "templates" / template
        (folder / "hook.j2").write_text((folder / "sms.j2").read_text())
    return ws


@contextmanager
def _serve(ws: Path, url: str) -> Iterator[str]:
    port = free_port()
    proc = spawn(ws, "serve", "--port", str(port), now=None, env={"OUTREACH_DATABASE_URL": url})
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        return healthz(base) == 200 or proc.poll() is not None

    try:
        assert wait_until(answering, timeout=60)
        assert proc.poll() is None, proc.communicate()[1]
        yield base
    finally:
        code, _, stderr = _stopped(proc)
        assert code == 0, stderr
        assert "Traceback" not in stderr, stderr


def _stopped(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    if proc.poll() is None:
        return stop(proc, signal.SIGTERM)
    out, err = proc.communicate()
    return proc.returncode, out, err


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


async def _fire(posts: list[tuple[str, bytes, dict[str, str]]]) -> list[int]:
    """Every (URL, body, headers) at once, 32 in flight; each status (retried on a
    connection error or a 5xx, as a provider does)."""
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
            async with limit:
                for _ in range(20):
                    try:
                        answer = await client.post(url, content=body, headers=headers)
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                        continue
                    if answer.status_code < 500:
                        return answer.status_code
                    await asyncio.sleep(0.2)
                return 599

        return await asyncio.gather(*(post(*p) for p in posts))


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql)]


def _signing_key(url: str) -> bytes:
    store = open_store(url)
    try:
        return store.meta.signing_key()
    finally:
        store.close()


def _sends(receiver: WebhookReceiver) -> Counter[str]:
    """POSTs the receiver got, per delivery (the webhook-id header)."""
    counts: Counter[str] = Counter()
    for request in list(receiver.requests):
        if request.method == "POST":
            headers = {k.lower(): v for k, v in request.headers.items()}
            counts[headers.get("webhook-id", "?")] += 1
    return counts


@pytest.fixture
def url(postgresql_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The module's database for this test (emptied after it), for every command here."""
    monkeypatch.setenv("OUTREACH_DATABASE_URL", postgresql_database)
    yield postgresql_database
    empty_database(postgresql_database)


def test_two_replicas_store_and_act_on_each_message_once(
    tmp_path: Path, webhook_receiver: WebhookReceiver, url: str
) -> None:
    ws = _workspace(tmp_path / "ws", webhook_receiver, 200)
    sent = in_process(ws, "run", "nps", "--json", env=ENV)
    assert sent.exit_code == 0, sent.stderr
    assert json.loads(sent.stdout)["campaigns"][0]["sent"] == 200

    now = datetime.now(UTC).replace(microsecond=0)
    early, late = (now - timedelta(minutes=2)).isoformat(), (now - timedelta(minutes=1)).isoformat()
    # the same message to both replicas: customers 0-39, one message each
    same = ["STOP", "9", "hello there", "please stop texting me"]
    requests: list[tuple[int, object, str]] = []  # (replica: 0, 1 or 2 for both)
    for i in range(40):
        message = {"from": f"c{i:05d}", "text": same[i % 4], "id": f"same-{i}"}
        requests.append((2, message, f"msg_same_{i}"))
    # two answers of one customer, one through each replica: 40-59
    for i in range(40, 60):
        requests.append((0, {"from": f"c{i:05d}", "text": "8", "id": f"a-{i}"}, f"msg_a_{i}"))
        requests.append((1, {"from": f"c{i:05d}", "text": "10", "id": f"b-{i}"}, f"msg_b_{i}"))
    # a strong and a weak reason, the weak one later, one through each replica: 60-79
    for i in range(60, 80):
        strong = {"from": f"c{i:05d}", "text": "please stop texting me", "received_at": early}
        weak = {"from": f"c{i:05d}", "text": "hello?", "received_at": late}
        requests.append((i % 2, {**strong, "id": f"s-{i}"}, f"msg_s_{i}"))
        requests.append((1 - i % 2, {**weak, "id": f"w-{i}"}, f"msg_w_{i}"))

    with ExitStack() as stack:
        replicas = [stack.enter_context(_serve(ws, url)) for _ in range(2)]
        posts = []
        for replica, payload, hook_id in requests:
            body, headers = _signed(payload, hook_id)
            for n in (0, 1) if replica == 2 else (replica,):
                posts.append((f"{replicas[n]}/webhooks/hook", body, headers))
        # one-click unsubscribes of 80-99, each to both replicas
        key = _signing_key(url)
        for i in range(80, 200):
            path = f"/unsubscribe/{make_unsubscribe_token(key, f'c{i:05d}', 'hook')}"
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            for base in replicas:
                posts.append((f"{base}{path}", b"List-Unsubscribe=One-Click", form))
        statuses = asyncio.run(_fire(posts))
        assert Counter(statuses) == {200: len(posts)}

        def replies_done() -> bool:
            waiting: int = _rows(
                url,
                "SELECT count(*) FROM deliveries WHERE purpose != 'campaign' "
                "AND status NOT IN ('sent', 'failed', 'skipped', 'unknown')",
            )[0][0]
            return waiting == 0

        assert wait_until(replies_done, timeout=60, step=0.2)
        time.sleep(2.5)  # time for a second (wrong) send to show up

    inbound = _rows(url, "SELECT external_id, count(*) FROM messages GROUP BY external_id")
    stored = Counter({external: n for external, n in inbound if external})
    assert len(stored) == 40 + 20 * 2 + 20 * 2 and set(stored.values()) == {1}

    opt_outs = _rows(
        url,
        "SELECT customer_id, count(*) FROM consent WHERE source = 'keyword:STOP' "
        "GROUP BY customer_id",
    )
    assert sorted(opt_outs) == [(f"c{i:05d}", 1) for i in range(0, 40, 4)]

    unsubscribed = _rows(
        url,
        "SELECT customer_id, count(*) FROM consent WHERE source = 'unsubscribe-link' "
        "GROUP BY customer_id",
    )
    assert sorted(unsubscribed) == [(f"c{i:05d}", 1) for i in range(80, 200)]

    responses = Counter(
        dict(
            _rows(
                url,
                "SELECT customer_id, count(*) FROM survey_responses WHERE valid = 1 "
                "GROUP BY customer_id",
            )
        )
    )
    answered = [f"c{i:05d}" for i in range(1, 40, 4)] + [f"c{i:05d}" for i in range(40, 60)]
    assert responses == dict.fromkeys(answered, 1)

    replies = _rows(
        url,
        "SELECT customer_id, purpose, id, status FROM deliveries WHERE purpose != 'campaign'",
    )
    per_purpose = Counter((customer, purpose) for customer, purpose, _, _ in replies)
    assert {c for c, p in per_purpose if p == "follow_up"} == set(answered)
    assert {c for c, p in per_purpose if p == "keyword"} == {f"c{i:05d}" for i in range(0, 40, 4)}
    flagged = (
        [f"c{i:05d}" for i in range(2, 40, 4)]  # "hello there"
        + [f"c{i:05d}" for i in range(40, 80)]  # the answer after the first; "hello?"
    )
    assert {c for c, p in per_purpose if p == "auto_reply"} == set(flagged)
    assert set(per_purpose.values()) == {1}  # one of each, never two
    assert {status for *_, status in replies} == {"sent"}

    sends = _sends(webhook_receiver)
    for _, _, delivery, _ in replies:
        assert sends[delivery] == 1, delivery
    assert max(sends.values()) == 1

    conversations = {
        customer: (needs, reason, last)
        for customer, needs, reason, last in _rows(
            url,
            "SELECT customer_id, needs_attention, attention_reason, last_inbound_at "
            "FROM conversations",
        )
    }
    for i in range(40, 60):
        assert conversations[f"c{i:05d}"][:2] == (1, "reply")
    for i in range(60, 80):
        needs, reason, last = conversations[f"c{i:05d}"]
        assert (needs, reason) == (1, "opt_out_intent")
        assert last == late.replace("+00:00", "Z")


class HeldReceiver(WebhookReceiver):
    """Answers no POST until ``release`` is set (the whole emulator waits: one reply at a
    time), so that a reply stays in flight for as long as the test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def handle(self, request: Recorded) -> Reply:
        if request.method == "POST":
            self.release.wait(60)
        return super().handle(request)


def test_a_replica_starting_leaves_the_other_replicas_reply_in_flight_alone(
    tmp_path: Path, url: str
) -> None:
    """Replica B's sweep at start recovers what dead senders left ``sending``; replica A,
    alive and holding its lease, is sending a STOP confirmation right then: it stays A's,
    is sent once, and is never taken for a dead sender's."""
    with HeldReceiver() as receiver:
        assert isinstance(receiver, HeldReceiver)
        ws = _workspace(tmp_path / "ws", receiver, 2, timeout=30)
        with _serve(ws, url) as first:
            body, headers = _signed({"from": "c00000", "text": "STOP", "id": "stop-1"}, "msg_1")
            assert asyncio.run(_fire([(f"{first}/webhooks/hook", body, headers)])) == [200]

            def status() -> str:
                (row,) = _rows(url, "SELECT status FROM deliveries WHERE purpose = 'keyword'")
                return str(row[0])

            assert wait_until(lambda: status() == "sending", timeout=30, step=0.05)
            with _serve(ws, url):  # its sweep has run by the time it answers
                time.sleep(1.0)
                assert status() == "sending"
                receiver.release.set()  # A's request is answered only now
                assert wait_until(lambda: status() == "sent", timeout=30, step=0.1)
        time.sleep(1.0)
        assert sum(_sends(receiver).values()) == 1


def test_a_bounce_that_two_replicas_read_from_the_mailbox_opts_out_once(
    tmp_path: Path, url: str
) -> None:
    """Every replica with ``imap_poll`` syncs the same mailbox, so both may read one bounce
    at once: the second waits for the first's commit, sees its opt-out and adds none."""
    channels = '[channels.sms]\nprovider = "outbox"\n\n[channels.email]\nprovider = "outbox"\n'
    ws = make_workspace(
        tmp_path / "ws", outreach_toml(channels), customers_text=customers_csv(1, opted_in="email")
    )
    bounce = StatusEvent(
        channel="email",
        provider_message_id="<not-ours@example.com>",
        status="bounced",
        at=datetime.now(UTC),
        error_code="5.1.1",
        error_message="no such user",
        recipient="c0@example.com",
        permanent=True,
    )
    first, second = Workspace.load(ws), Workspace.load(ws)
    done = threading.Event()

    def other_replica() -> None:
        with second.store.write():
            apply_bounce(second.store, second.config, bounce, InboundSummary())
        done.set()

    try:
        with first.store.write():
            apply_bounce(first.store, first.config, bounce, InboundSummary())
            waiter = threading.Thread(target=other_replica)
            waiter.start()
            assert not done.wait(0.5)  # held until this commit
        waiter.join(10)
        assert done.is_set()
    finally:
        first.close()
        second.close()
    opt_outs = _rows(url, "SELECT count(*) FROM consent WHERE source = 'provider:bounce'")
    assert opt_outs == [(1,)]
