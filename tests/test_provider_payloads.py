"""The providers' documented example payloads, every message type, through both ways in:
``replies ingest --format PROVIDER`` and signed webhooks to a running ``outreach serve``
(a subprocess). Each case asserts what is stored (kind, text, media, coordinates,
contacts), what is exported, and that nothing but what a customer wrote is read as a survey
answer or a keyword."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import Cli
from tests.healthz import healthz
from tests.provider_payloads import CASES, PHONES, Case
from tests.servers.fixtures import (
    ENV,
    META_APP_SECRET,
    META_PHONE_ID,
    SUNSHINE_APP,
    SUNSHINE_KEY_ID,
    SUNSHINE_WEBHOOK_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
)
from tests.servers.fixtures import meta_server as meta_server
from tests.servers.fixtures import sunshine_server as sunshine_server
from tests.servers.fixtures import twilio_server as twilio_server
from tests.servers.meta import MetaEmulator
from tests.servers.sunshine import SunshineEmulator
from tests.servers.twilio import TwilioEmulator

SURVEY_AT = "2026-12-01T09:30:00Z"  # Tuesday 10:30 in Amsterdam: the NPS survey goes out
REPLIES_AT = "2026-12-01T10:00:00Z"  # inside business hours: no automatic replies

CHANNELS = """
[channels.sms]
provider = "twilio"
account_sid = "{twilio_sid}"
auth_token_env = "TWILIO_AUTH_TOKEN"
from = "+3197010000000"
base_url = "{twilio}"

[channels.wa]
provider = "twilio"
account_sid = "{twilio_sid}"
auth_token_env = "TWILIO_AUTH_TOKEN"
from = "+3197010000000"
whatsapp = true
base_url = "{twilio}"

[channels.whatsapp]
provider = "whatsapp-cloud"
phone_number_id = "{meta_phone_id}"
access_token_env = "WHATSAPP_TOKEN"
app_secret_env = "WHATSAPP_APP_SECRET"
verify_token_env = "WHATSAPP_VERIFY_TOKEN"
base_url = "{meta}"

[channels.messenger]
provider = "sunshine"
app_id = "{sunshine_app}"
key_id = "{sunshine_key_id}"
key_secret_env = "SUNSHINE_KEY_SECRET"
webhook_secret_env = "SUNSHINE_WEBHOOK_SECRET"
integration_id = "5e4af71a81966cfff3ef6550"
base_url = "{sunshine}"
"""


def configure(ws: Path, cli: Cli, urls: dict[str, str]) -> None:
    """Provider channels (on the loopback emulators, which receive the follow-ups) beside
    the outbox email, a customer per case, and an NPS survey sent to every one of them by
    email (so each has an open survey when it writes)."""
    toml = (ws / "outreach.toml").read_text(encoding="utf-8")
    start = toml.index("[channels.sms]")
    end = toml.index("[server]")
    channels = CHANNELS.format(
        twilio_sid=TWILIO_SID,
        meta_phone_id=META_PHONE_ID,
        sunshine_app=SUNSHINE_APP,
        sunshine_key_id=SUNSHINE_KEY_ID,
        **urls,
    )
    (ws / "outreach.toml").write_text(
        toml[:start] + channels.lstrip() + "\n" + toml[end:], encoding="utf-8"
    )
    # the follow-up on the channels the examples have no file for (wa, messenger)
    (ws / "templates" / "nps_thanks" / "default.j2").write_text("Thanks!", encoding="utf-8")
    rows = ["id,name,email,phone,preferred_channel,locale,timezone,opted_in"]
    rows += [
        f"p_{name},Kerry {name},{name}@example.nl,{phone},email,en-GB,Europe/Amsterdam,"
        "email;sms;wa;whatsapp;messenger"
        for name, phone in sorted(PHONES.items())
    ]
    (ws / "customers.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = cli("customers", "import", str(ws / "customers.csv"))
    assert result.exit_code == 0, result.stderr
    result = cli("--now", SURVEY_AT, "run", "nps", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sent"] == len(PHONES)


def contains(actual: Any, expected: Any) -> bool:
    """``expected`` is ``actual`` or, for objects, a subset of it (lists element-wise)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(contains(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


def ingest_all(ws: Path, cli: Cli, cases: list[Case]) -> list[dict[str, Any]]:
    summaries = []
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.fmt, case.channel), []).append(case)
    for (fmt, channel), group in groups.items():
        path = ws / f"{fmt}-{channel}.jsonl"
        path.write_text("".join(json.dumps(c.payload) + "\n" for c in group), encoding="utf-8")
        result = cli(
            "--now",
            REPLIES_AT,
            "replies",
            "ingest",
            str(path),
            "--format",
            fmt,
            "--channel",
            channel,
            "--json",
            env=ENV,
        )
        assert result.exit_code == 0, (fmt, result.stdout, result.stderr)
        summaries.append(json.loads(result.stdout))
    return summaries


class Serve:
    """``outreach serve`` in a subprocess on a free loopback port."""

    def __init__(self, ws: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")} | ENV
        env["OUTREACH_NOW"] = REPLIES_AT
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "outreach", "-w", str(ws), "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while healthz(self.url) is None:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.02)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def post(self, case: Case) -> httpx.Response:
        path = f"/webhooks/{case.channel}"
        if case.fmt == "twilio":
            params = {str(k): str(v) for k, v in case.payload.items()}
            signature = RequestValidator(TWILIO_TOKEN).compute_signature(self.url + path, params)
            return self.http.post(
                path,
                content=urlencode(params).encode(),
                headers={
                    "X-Twilio-Signature": signature,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
        body = json.dumps(case.payload).encode()
        if case.fmt == "whatsapp-cloud":
            digest = hmac.new(META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-Hub-Signature-256": f"sha256={digest}"}
        else:
            headers = {"X-API-Key": SUNSHINE_WEBHOOK_SECRET}
        return self.http.post(
            path, content=body, headers=headers | {"Content-Type": "application/json"}
        )

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture
def configured(
    ws: Path,
    cli: Cli,
    twilio_server: TwilioEmulator,
    meta_server: MetaEmulator,
    sunshine_server: SunshineEmulator,
) -> Path:
    configure(
        ws,
        cli,
        {"twilio": twilio_server.url, "meta": meta_server.url, "sunshine": sunshine_server.url},
    )
    return ws


@pytest.fixture
def served(configured: Path) -> Iterator[Serve]:
    server = Serve(configured)
    yield server
    server.stop()


def inbound(cli: Cli, customer: str) -> list[dict[str, Any]]:
    result = cli("conversations", "show", customer, "--json")
    if result.exit_code == 2:  # no such customer: nothing stored for it
        return []
    assert result.exit_code == 0, result.stderr
    return [m for m in json.loads(result.stdout)["messages"] if m["direction"] == "in"]


def check_stored(cli: Cli, cases: list[Case]) -> None:
    exported = cli("export", "replies", "--format", "jsonl")
    assert exported.exit_code == 0, exported.stderr
    rows = {r["customer_id"]: r for r in map(json.loads, exported.stdout.splitlines())}
    problems = []
    for case in cases:
        messages = inbound(cli, case.customer)
        if case.kind is None:
            if messages:
                problems.append(f"{case.name}: a status was stored as a message: {messages}")
            continue
        if len(messages) != 1:
            problems.append(f"{case.name}: {len(messages)} messages stored")
            continue
        [m] = messages
        got = (m.get("kind"), m["text"], m.get("survey", {}).get("answer"))
        if got != (case.kind, case.text, case.answer):
            problems.append(
                f"{case.name}: stored {got}, expected {(case.kind, case.text, case.answer)}"
            )
        if not contains(m.get("details") or {}, case.details):
            problems.append(f"{case.name}: details {m.get('details')} lack {case.details}")
        row = rows.get(case.customer)
        if (
            row is None
            or (row.get("kind"), row["answer"]) != (case.kind, case.answer)
            or not contains(json.loads(row.get("details") or "{}"), case.details)
        ):
            problems.append(f"{case.name}: exported as {row}")
        if case.answer is None and m.get("survey"):
            problems.append(f"{case.name}: read as a survey answer {m['survey']}")
    assert not problems, "\n".join(problems)
    # nothing an event carried was a keyword: every customer is still opted in everywhere
    for case in cases:
        if case.kind is not None:
            shown = json.loads(cli("consent", "show", case.customer, "--json").stdout)
            assert "opted_out" not in json.dumps(shown), (case.name, shown)


def test_replies_ingest_keeps_every_documented_message_type_as_what_it_is(
    configured: Path, cli: Cli
) -> None:
    summaries = ingest_all(configured, cli, CASES)
    assert all(s["rejected"] == [] for s in summaries), summaries
    answers = sum(1 for c in CASES if c.answer)
    assert sum(s["survey_answers"] for s in summaries) == answers
    assert sum(s["replies_sent"] for s in summaries) == answers  # the follow-ups
    assert sum(s["unclear_answers"] for s in summaries) == 0
    assert sum(s["keywords"].get("STOP", 0) for s in summaries) == 0
    assert sum(s["status_updates"] + s["status_ignored"] for s in summaries) == sum(
        1 for c in CASES if c.kind is None
    )
    check_stored(cli, CASES)


def test_signed_webhooks_keep_every_documented_message_type_as_what_it_is(
    served: Serve, cli: Cli
) -> None:
    for case in CASES:
        response = served.post(case)
        assert response.status_code in (200, 204), (case.name, response.text)
    served.stop()  # every webhook is answered after its commit; stop before reading
    check_stored(cli, CASES)


Ingest = Callable[[Path, Cli, list[Case]], list[dict[str, Any]]]
