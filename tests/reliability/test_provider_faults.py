"""Provider faults, end to end: the Twilio emulator misbehaves, ``outreach run`` copes.

To keep this fast, most cases share one workspace and two ``run`` processes: each case is
a channel of its own (all Twilio, all on one emulator, so each has its own retry budget
and circuit) with one customer, and the emulator picks the faults for a request by its
``To`` number. Faults that act on the connection (hang, reset) and the ones that need a
channel to themselves (refused connection, an open circuit) have their own workspace.

What must hold: each delivery ends in the state its fault calls for (sent after an in-run
retry; queued for a later run with the provider's code in ``reason`` and its message in
``error``; failed for good when the answer is permanent or ambiguous) and the emulator
accepted each message at most once.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from tests.servers.fixtures import TWILIO_SID, TWILIO_TOKEN
from tests.servers.http import Recorded, Reply
from tests.servers.twilio import TwilioEmulator

from .support import (
    NOW,
    free_port,
    make_workspace,
    outreach_toml,
    phone,
    query,
    run_cli,
    run_json,
    sends_per_to,
    twilio_channel,
)

LATER = "2026-12-01T10:30:00Z"  # an hour on: every requeue is due again
RETRY_AFTER_1S = Reply.json(
    429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "1"}
)

# case → (faults of its requests, final state after the first run, reason, words in error)
CASES: dict[str, tuple[list[str | Reply], str, str | None, str | None]] = {
    "t429": (["429"], "sent", None, None),
    "t429ra": ([RETRY_AFTER_1S], "sent", None, None),
    "t500": (["500"], "sent", None, None),
    "t502503": (["502", "503"], "sent", None, None),
    "q500": (["500"] * 3, "queued", "20500", "An internal server error has occurred"),
    "q503": (["503"] * 3, "queued", "20500", "server error"),
    "q429": (["429"] * 3, "queued", "20429", "Too Many Requests"),
    "q429date": (["429-date"], "queued", "20429", "too many requests"),
    "fmalformed": (["malformed"], "failed", "bad_response", "not JSON"),
    "fhtml": (["html"], "failed", "bad_response", "text/html"),
    "ferrorbody": (["error-body"], "failed", "21211", "is not a valid phone number"),
    "freject": (["reject"], "failed", "21211", "is not a valid phone number"),
}


class PerRecipient(TwilioEmulator):
    """Twilio whose faults are chosen per ``To`` number instead of in arrival order."""

    def __init__(self) -> None:
        super().__init__(TWILIO_SID, TWILIO_TOKEN)
        self.by_to: dict[str, deque[str | Reply]] = {}

    def _fault_reply(self, fault: str | None, request: Recorded) -> Reply:
        queue = self.by_to.get(request.form().get("To", ""))
        if fault is None and queue:
            planned = queue.popleft()
            return planned if isinstance(planned, Reply) else super()._fault_reply(planned, request)
        return super()._fault_reply(fault, request)


def _ws(tmp_path: Path, url: str, customers: int = 1, concurrency: int = 2) -> Path:
    toml = outreach_toml(twilio_channel(url, concurrency=concurrency, timeout=0.5))
    return make_workspace(tmp_path / "ws", toml, customers=customers)


def _delivery(ws: Path) -> dict[str, Any]:
    [row] = query(
        ws,
        "SELECT status, reason, error, attempts, not_before, provider_message_id FROM deliveries",
    )
    return dict(row)


def test_each_fault_ends_in_its_state_with_the_providers_reason(tmp_path: Path) -> None:
    names = list(CASES)
    with PerRecipient() as server:
        assert isinstance(server, PerRecipient)
        channels = "\n".join(
            twilio_channel(server.url, name=n, concurrency=1, timeout=0.5) for n in names
        )
        lines = ["id,name,phone,preferred_channel,timezone,opted_in"]
        for i, name in enumerate(names):
            lines.append(f"c{i:05d},Customer {i},{phone(i)},{name},Europe/Amsterdam,{name}")
            server.by_to[phone(i)] = deque(CASES[name][0])
        campaign = (
            'kind = "update"\ntemplate = "product_update"\nchannels = ["preferred"]\n'
            '[schedule]\nstart = "2026-12-01 08:00"\nwindow = "00:00-24:00"\n'
        )
        ws = make_workspace(
            tmp_path / "ws",
            outreach_toml(channels),
            campaigns={"blast": campaign},
            customers_text="\n".join(lines) + "\n",
        )
        (ws / "templates" / "product_update" / "default.j2").write_text("News {{ sender }}")
        started = time.monotonic()
        first = run_cli(ws, "run", "blast", "--json")
        assert first.returncode == 3, first.stderr  # the permanent failures
        assert time.monotonic() - started >= 1.0, "Retry-After: 1 was not honoured"
        rows = {
            r["channel"]: dict(r)
            for r in query(ws, "SELECT channel, status, reason, error, not_before FROM deliveries")
        }
        for name, (_, state, reason, words) in CASES.items():
            row = rows[name]
            assert row["status"] == state, (name, row)
            if reason is not None:
                assert row["reason"] == reason, (name, row)
                assert words is not None and words in row["error"], (name, row)
            if state == "queued":
                assert row["not_before"] > NOW
        assert rows["q429date"]["not_before"] >= "2038-12-31T23:59:59Z"  # its Retry-After
        received = sends_per_to(server)
        for i, name in enumerate(names):
            # one request per fault, plus the one that succeeded; none after a 2xx
            faults, state = CASES[name][0], CASES[name][1]
            expected = len(faults) + (state == "sent") if state != "failed" else 1
            assert received[phone(i)] == expected, (name, received[phone(i)])
            assert not server.by_to[phone(i)] or name == "q429date"

        server.by_to.clear()
        later = run_json(ws, "blast", now=LATER)
        # the requeued ones go out now, except the one told to wait until 2038
        assert later["sent"] == 3
        final = {r[0]: r[1] for r in query(ws, "SELECT channel, status FROM deliveries")}
        assert final == {
            n: ("queued" if n == "q429date" else "failed" if CASES[n][1] == "failed" else "sent")
            for n in names
        }
        # a failed delivery is never retried: an ambiguous 2xx may have been a send
        after = sends_per_to(server)
        for i, name in enumerate(names):
            if CASES[name][1] != "queued":
                assert after[phone(i)] == received[phone(i)], name


@pytest.mark.parametrize("fault", ["reset", "hang"])
def test_a_fault_after_the_request_went_out_is_unknown_and_never_resent_by_itself(
    tmp_path: Path, twilio_server: TwilioEmulator, fault: str
) -> None:
    # The request reached the provider and the answer was lost: the message may exist.
    # Twilio takes no idempotency key, so resending on its own could send it twice.
    ws = _ws(tmp_path, twilio_server.url)
    twilio_server.fail(fault)
    data = run_json(ws, "blast", ok=(3,))
    assert data["sent"] == 0 and data["unknown"] == 1
    assert len(twilio_server.requests) == 1
    row = _delivery(ws)
    assert row["status"] == "unknown" and row["reason"] in ("connection", "timeout")
    assert "--retry-unknown" in row["error"]
    assert run_json(ws, "blast", now=LATER, ok=(3,))["sent"] == 0
    assert len(twilio_server.requests) == 1
    retried = run_json(ws, "--retry-unknown", now=LATER, ok=(0,))
    assert retried["sent"] == 1 and len(twilio_server.requests) == 2


def test_connection_refused_requeues_then_sends_when_the_provider_is_back(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    ws = _ws(tmp_path, f"http://127.0.0.1:{free_port()}")
    data = run_json(ws, "blast", ok=(0,))
    assert data["sent"] == 0
    row = _delivery(ws)
    assert row["status"] == "queued" and row["reason"] == "connection"
    assert "connection failed" in row["error"]
    toml = (ws / "outreach.toml").read_text()
    (ws / "outreach.toml").write_text(
        "\n".join(
            f'base_url = "{twilio_server.url}"' if line.startswith("base_url") else line
            for line in toml.splitlines()
        )
        + "\n"
    )
    assert run_json(ws, "blast", now=LATER, ok=(0,))["sent"] == 1
    assert len(twilio_server.requests) == 1


def test_a_provider_that_keeps_failing_opens_the_circuit_and_leaves_the_rest_queued(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    ws = _ws(tmp_path, twilio_server.url, customers=40, concurrency=2)
    twilio_server.fail(*(["503"] * 500))
    data = run_json(ws, "blast", ok=(0,))
    assert data["sent"] == 0 and data["failed"] == 0
    assert any("circuit open" in p for p in data["problems"]), data["problems"]
    statuses = {
        r[0]: r[1] for r in query(ws, "SELECT status, count(*) FROM deliveries GROUP BY status")
    }
    assert statuses == {"queued": 40}
    # the circuit stopped the run long before it tried everyone three times
    assert len(twilio_server.requests) < 40
    twilio_server.faults.clear()
    failed_requests = len(twilio_server.requests)
    assert run_json(ws, "blast", now=LATER, ok=(0,))["sent"] == 40
    accepted = [r.form()["To"] for r in twilio_server.requests[failed_requests:]]
    assert len(accepted) == len(set(accepted)) == 40
