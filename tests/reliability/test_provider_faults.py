"""Provider faults, end to end: the Twilio emulator misbehaves, ``outreach run`` copes.

Each case is one customer and one real ``run`` process. What must hold: the delivery ends
in the state the fault calls for (sent after an in-run retry, queued for a later run with
the provider's code in ``reason`` and its message in ``error``, or failed for good), and
the emulator accepted the message at most once. A channel that keeps failing opens its
circuit: the run says so and leaves the rest queued.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers.http import Reply
from tests.servers.twilio import TwilioEmulator

from .support import (
    NOW,
    free_port,
    make_workspace,
    outreach_toml,
    query,
    run_cli,
    run_json,
    sends_per_to,
    twilio_channel,
)

LATER = "2026-12-01T10:30:00Z"  # an hour on: every requeue is due again


def _ws(tmp_path: Path, url: str, customers: int = 1, concurrency: int = 2) -> Path:
    toml = outreach_toml(twilio_channel(url, concurrency=concurrency, timeout=0.5))
    return make_workspace(tmp_path / "ws", toml, customers=customers)


def _delivery(ws: Path) -> dict[str, Any]:
    [row] = query(ws, "SELECT status, reason, error, attempts, not_before, provider_message_id "
                      "FROM deliveries")
    return dict(row)


@pytest.mark.parametrize(
    ("faults", "requests"),
    [
        (["429"], 2),
        ([Reply.json(429, {"code": 20429, "message": "Too Many Requests"},
                     {"Retry-After": "1"})], 2),
        (["500"], 2),
        (["502", "503"], 3),
        (["reset"], 2),
        (["hang"], 2),
    ],
    ids=["429", "429-retry-after-1s", "500", "502-503", "reset", "hang"],
)
def test_a_temporary_fault_is_retried_in_the_run_and_sent_once(
    tmp_path: Path, twilio_server: TwilioEmulator, faults: list[str | Reply], requests: int
) -> None:
    ws = _ws(tmp_path, twilio_server.url)
    twilio_server.fail(*faults)
    started = time.monotonic()
    data = run_json(ws, "blast", ok=(0,))
    assert data["sent"] == 1 and not twilio_server.faults
    assert len(twilio_server.requests) == requests
    row = _delivery(ws)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("SM")
    if any(isinstance(f, Reply) for f in faults):
        assert time.monotonic() - started >= 1.0, "Retry-After was not honoured"


@pytest.mark.parametrize(
    ("faults", "reason", "words"),
    [
        (["500"] * 3, "20500", "An internal server error has occurred"),
        (["503"] * 3, "20500", "server error"),
        (["429"] * 3, "20429", "Too Many Requests"),
        (["reset"] * 3, "connection", "connection failed"),
        (["hang"] * 3, "timeout", "no answer in time"),
    ],
    ids=["500x3", "503x3", "429x3", "reset-x3", "hang-x3"],
)
def test_a_fault_that_outlasts_the_run_requeues_with_the_providers_reason(
    tmp_path: Path, twilio_server: TwilioEmulator, faults: list[str], reason: str, words: str
) -> None:
    ws = _ws(tmp_path, twilio_server.url)
    twilio_server.fail(*faults)
    data = run_json(ws, "blast", ok=(0,))
    assert data["sent"] == 0 and data["failed"] == 0
    row = _delivery(ws)
    assert row["status"] == "queued" and row["reason"] == reason
    assert words in row["error"]
    assert row["not_before"] > NOW
    # the next run (later) sends it, once
    again = run_json(ws, "blast", now=LATER, ok=(0,))
    assert again["sent"] == 1
    assert _delivery(ws)["status"] == "sent"
    assert list(sends_per_to(twilio_server).values()) == [len(faults) + 1]
    assert len(twilio_server.requests) == len(faults) + 1


def test_retry_after_beyond_a_minute_requeues_for_that_time(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    ws = _ws(tmp_path, twilio_server.url)
    twilio_server.fail("429-date")  # Retry-After: an HTTP date in 2038
    data = run_json(ws, "blast", ok=(0,))
    assert data["sent"] == 0
    row = _delivery(ws)
    assert row["status"] == "queued" and row["reason"] == "20429"
    assert row["not_before"] >= "2038-12-31T23:59:59Z"
    assert len(twilio_server.requests) == 1


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        ("malformed", "bad_response", "not JSON"),
        ("html", "bad_response", "text/html"),
        ("error-body", "21211", "is not a valid phone number"),
        ("reject", "21211", "is not a valid phone number"),
    ],
)
def test_an_ambiguous_or_permanent_answer_fails_without_retry(
    tmp_path: Path, twilio_server: TwilioEmulator, fault: str, reason: str, words: str
) -> None:
    ws = _ws(tmp_path, twilio_server.url)
    twilio_server.fail(fault)
    result = run_cli(ws, "run", "blast", "--json")
    assert result.returncode == 3, result.stderr  # PartialFailure: 1 failed
    row = _delivery(ws)
    assert row["status"] == "failed" and row["reason"] == reason
    assert words in row["error"]
    # a 2xx may mean "accepted": retrying could send twice, so it is never retried
    assert len(twilio_server.requests) == 1
    assert run_json(ws, "blast", now=LATER)["sent"] == 0
    assert len(twilio_server.requests) == 1


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
        "\n".join(f'base_url = "{twilio_server.url}"' if line.startswith("base_url") else line
                  for line in toml.splitlines()) + "\n"
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
    statuses = {r[0]: r[1] for r in query(ws, "SELECT status, count(*) FROM deliveries "
                                               "GROUP BY status")}
    assert statuses == {"queued": 40}
    # the circuit stopped the run long before it tried everyone three times
    assert len(twilio_server.requests) < 40
    twilio_server.faults.clear()
    failed_requests = len(twilio_server.requests)
    assert run_json(ws, "blast", now=LATER, ok=(0,))["sent"] == 40
    accepted = [r.form()["To"] for r in twilio_server.requests[failed_requests:]]
    assert len(accepted) == len(set(accepted)) == 40
