"""No secret leaves the process: not on screen, not in the database, not in any file.

Every ``*_env`` secret is set to a unique marker. The channels point at emulators that
fail in the most revealing ways a real service or proxy can: 401/500/400 answers and 200s
with error bodies whose text echoes every request header, the Basic credentials decoded,
and the request body. Then the CLI surface runs against it (``channels check`` including
test sends, ``run`` in every output mode and with ``--debug``, ``queue``, ``status``,
``report``, ``export``, ``conversations``, ``reply``, ``templates check``, ``replies
ingest``, ``serve`` refusing a forged webhook) and the markers are searched for in every
stdout and stderr, and in the bytes of every file of the workspace: the database, its
-wal and -shm, the outbox, the exports.
"""

from __future__ import annotations

import base64
import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.healthz import healthz
from tests.servers.fixtures import SMTP_USER, SUNSHINE_KEY_ID, TWILIO_SID
from tests.servers.http import LoopbackServer, Recorded, Reply
from tests.servers.smtp import SmtpEmulator

from .channels import all_channels
from .support import (
    NOW,
    free_port,
    in_process,
    make_workspace,
    outreach_toml,
    query,
    run_cli,
    spawn,
    stop,
    wait_until,
)

_KEY = b"marker-webhook-key-" + uuid.uuid4().hex[:13].encode()
MARKERS = {
    "TWILIO_AUTH_TOKEN": f"MK-twilio-{uuid.uuid4().hex}",
    "WHATSAPP_TOKEN": f"MK-metatoken-{uuid.uuid4().hex}",
    "WHATSAPP_APP_SECRET": f"MK-appsecret-{uuid.uuid4().hex}",
    "WHATSAPP_VERIFY_TOKEN": f"MK-verify-{uuid.uuid4().hex}",
    "SUNSHINE_KEY_SECRET": f"MK-sunkey-{uuid.uuid4().hex}",
    "SUNSHINE_WEBHOOK_SECRET": f"MK-sunhook-{uuid.uuid4().hex}",
    "WEBHOOK_SECRET": "whsec_" + base64.b64encode(_KEY).decode(),
    "SMTP_USERNAME": SMTP_USER,
    "SMTP_PASSWORD": f"MK-smtp-{uuid.uuid4().hex}",
}
NEEDLES = [
    *(v for k, v in MARKERS.items() if k != "SMTP_USERNAME"),
    MARKERS["WEBHOOK_SECRET"].removeprefix("whsec_"),
    _KEY.decode(),
]
CHANNELS = ("sms", "whatsapp", "chat", "hook", "email")


class EchoServer(LoopbackServer):
    """Fails every request, echoing its headers, Basic credentials and body back."""

    def __init__(self) -> None:
        super().__init__()
        self.turn = 0

    def handle(self, request: Recorded) -> Reply:
        echo = " ".join(f"{k}: {v}" for k, v in request.headers.items())
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            echo += " credentials " + base64.b64decode(auth[6:]).decode(errors="replace")
        echo += " body " + request.body.decode(errors="replace")[:2000]
        body: dict[str, Any] = {
            "code": 20003,
            "message": echo,
            "error": {
                "message": echo,
                "code": 190,
                "type": "OAuthException",
                "error_data": {"details": echo},
            },
            "errors": [{"code": "unauthorized", "title": echo}],
        }
        self.turn += 1
        kind = self.turn % 4
        if kind == 0:
            return Reply.json(401, body)
        if kind == 1:
            return Reply(
                500,
                f"<html><body><pre>{echo}</pre></body></html>".encode(),
                {"Content-Type": "text/html"},
            )
        if kind == 2:
            return Reply.json(200, body)
        return Reply.json(400, body)


def _assert_clean(text: str | bytes, where: str, needles: list[str]) -> None:
    data = text.encode() if isinstance(text, str) else text
    for needle in needles:
        assert needle.encode() not in data, f"a secret leaked into {where}"


def _basic(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


# what an echoed "Authorization: Basic …" header carries: the secret, one base64 away
ENCODED = [
    _basic(TWILIO_SID, MARKERS["TWILIO_AUTH_TOKEN"]),
    _basic(SUNSHINE_KEY_ID, MARKERS["SUNSHINE_KEY_SECRET"]),
]


class Surface:
    """Everything the CLI printed, and the workspace it left."""

    def __init__(self, ws: Path) -> None:
        self.ws = ws
        self.outputs: list[tuple[str, str]] = []

    def files(self) -> list[Path]:
        return [p for p in self.ws.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def surface(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Surface]:
    echo = EchoServer()
    # the server expects another password: every login fails with 535
    smtp = SmtpEmulator(username=SMTP_USER, password="the-right-password")
    smtp.start()
    try:
        with echo:
            yield _run_surface(tmp_path_factory.mktemp("secrets"), echo, smtp)
    finally:
        smtp.stop()


def _run_surface(tmp_path: Path, echo: EchoServer, smtp: SmtpEmulator) -> Surface:
    port = free_port()
    url = echo.url
    toml = outreach_toml(
        all_channels(twilio=url, meta=url, sunshine=url, hook=url, smtp_port=smtp.port),
        public_url=f"http://127.0.0.1:{port}",
    ).replace(
        'integration_id = "5e4af71a81966cfff3ef6550"',
        'integration_id = "5e4af71a81966cfff3ef6550"\naddress = "phone"',
    )
    lines = ["id,name,email,phone,preferred_channel,timezone,opted_in"]
    for i in range(10):
        lines.append(
            f"c{i:05d},Customer {i},c{i}@example.com,+3161000{i:04d},"
            f"{CHANNELS[i % 5]},Europe/Amsterdam,{';'.join(CHANNELS)}"
        )
    campaign = (
        'kind = "update"\ntemplate = "product_update"\nchannels = ["preferred"]\n'
        '[schedule]\nstart = "2026-12-01 08:00"\nwindow = "00:00-24:00"\n'
    )
    ws = make_workspace(
        tmp_path / "ws", toml, campaigns={"blast": campaign}, customers_text="\n".join(lines) + "\n"
    )
    (ws / "templates" / "product_update" / "default.j2").write_text(
        "Hi {{ customer.name }}, news from {{ sender }}.", encoding="utf-8"
    )
    replies = tmp_path / "replies.jsonl"
    replies.write_text(
        "".join(
            json.dumps(
                {
                    "channel": "sms",
                    "from": f"+3161000{i:04d}",
                    "text": "STOP" if i == 1 else f"question {i}",
                    "id": f"r{i}",
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    surface = Surface(ws)
    env = dict(MARKERS)

    def cli(*args: str, codes: tuple[int, ...] = (0, 3, 4)) -> None:
        """A separate process: where providers are called and their errors printed."""
        result = run_cli(ws, *args, env=env)
        assert result.returncode in codes, (args, result.returncode, result.stderr)
        surface.outputs.append((" ".join(args), result.stdout + result.stderr))

    def read(*args: str) -> None:
        """The CLI in this process, for the commands that only read the store."""
        result = in_process(ws, "--now", NOW, *args, env=env)
        assert result.exit_code in (0, 3, 4), (args, result.stderr)
        surface.outputs.append((" ".join(args), result.stdout + result.stderr))

    read("channels", "check")
    read("channels", "check", "--json")
    for channel, address in [
        ("sms", "+31610000001"),
        ("whatsapp", "+31610000002"),
        ("chat", "+31610000003"),
        ("hook", "c00001"),
        ("email", "c1@example.com"),
    ]:
        cli("channels", "check", "--channel", channel, "--send-test", address)
    cli("--debug", "run", "blast", codes=(0, 1, 3, 4))
    cli("replies", "ingest", str(replies))
    cli("run", "--json", "--retry-unknown")
    cli("reply", "c00003", "Thanks, fixed", "--channel", "sms")
    read("queue")
    read("queue", "--json")
    read("status")
    read("status", "--json")
    read("report", "blast")
    read("report", "blast", "--json")
    read("conversations", "list")
    read("conversations", "show", "c00002")
    read("templates", "check", "--sample", "2")
    read("export", "replies", "--output", str(ws / "replies.csv"))
    read("export", "conversations", "--format", "jsonl", "--output", str(ws / "all.jsonl"))

    # serve: forged and unsigned webhooks are refused, and logged without secrets
    proc = spawn(ws, "serve", "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        return healthz(base) == 200 or proc.poll() is not None

    assert wait_until(up, timeout=30)
    for channel in ("sms", "whatsapp", "chat", "hook"):
        httpx.post(
            f"{base}/webhooks/{channel}",
            content=b"{}",
            headers={
                "X-Twilio-Signature": "AAAA",
                "X-API-Key": "nope",
                "X-Hub-Signature-256": "sha256=00",
                "webhook-id": "m",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,AAAA",
            },
        )
    httpx.get(
        f"{base}/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
    )
    _, out, err = stop(proc, signal.SIGINT)
    surface.outputs.append(("serve", out + err))
    # the emulator saw every provider and answered with their secrets in it
    paths = {r.path for r in echo.requests}
    assert any("Messages.json" in p for p in paths) and any("/messages" in p for p in paths)
    assert any("notifications" in p for p in paths) and "/hooks/outreach" in paths
    return surface


def test_no_secret_in_any_output_row_or_file(surface: Surface) -> None:
    reasons = {r[0] for r in query(surface.ws, "SELECT reason FROM deliveries")}
    assert "20003" in reasons and "535" in reasons  # provider errors were recorded
    for command, text in surface.outputs:
        _assert_clean(text, f"the output of `outreach {command}`", NEEDLES)
    files = surface.files()
    assert {"outreach.db", "replies.csv", "all.jsonl"} <= {p.name for p in files}
    for path in files:
        _assert_clean(path.read_bytes(), str(path.relative_to(surface.ws)), NEEDLES)


def test_no_basic_credentials_in_any_output_row_or_file(surface: Surface) -> None:
    for command, text in surface.outputs:
        _assert_clean(text, f"the output of `outreach {command}`", ENCODED)
    for path in surface.files():
        _assert_clean(path.read_bytes(), str(path.relative_to(surface.ws)), ENCODED)
