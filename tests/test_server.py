"""`outreach serve`: the real Starlette app under uvicorn on a loopback port, real signed
requests (Standard Webhooks via `standardwebhooks`, Twilio via its own RequestValidator),
and a real Twilio emulator receiving the confirmations it sends."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook
from twilio.request_validator import RequestValidator

from outreach import clock
from outreach.server.app import create_app
from outreach.tokens import make_unsubscribe_token, read_unsubscribe_token
from outreach.workspace import Workspace
from tests.conftest import Cli
from tests.healthz import healthz
from tests.servers.fixtures import (
    ENV,
    META_APP_SECRET,
    META_VERIFY_TOKEN,
    SUNSHINE_WEBHOOK_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    WEBHOOK_SECRET,
)
from tests.servers.twilio import TwilioEmulator
from tests.test_inbound import add_customers, add_survey_delivery, sqlite_conn

PUBLIC_URL = "https://hooks.example.com"


def write_config(root: Path, twilio_url: str) -> None:
    (root / "outreach.toml").write_text(
        f"""
[workspace]
timezone = "Europe/Amsterdam"
default_region = "NL"
business_hours = "Mon-Sun 00:00-24:00"

[sending]
sender_name = "Acme"

[channels.sms]
provider = "twilio"
account_sid = "{TWILIO_SID}"
auth_token_env = "TWILIO_AUTH_TOKEN"
from = "+3197010000000"
base_url = "{twilio_url}"

[channels.hooks]
provider = "webhook"
url = "http://127.0.0.1:9/unused"
secret_env = "WEBHOOK_SECRET"

[channels.whatsapp]
provider = "whatsapp-cloud"
phone_number_id = "109876543210987"
access_token_env = "WHATSAPP_TOKEN"
app_secret_env = "WHATSAPP_APP_SECRET"
verify_token_env = "WHATSAPP_VERIFY_TOKEN"
base_url = "http://127.0.0.1:9"

[channels.email]
provider = "outbox"

[channels.messenger]
provider = "sunshine"
app_id = "5963c0d619a30a2e00de36b8"
key_id = "app_5963c0d619a30a2e00de36b9"
key_secret_env = "SUNSHINE_KEY_SECRET"
webhook_secret_env = "SUNSHINE_WEBHOOK_SECRET"
integration_id = "5e4af71a81966cfff3ef6550"
base_url = "http://127.0.0.1:9"

[server]
public_url = "{PUBLIC_URL}"
""",
        encoding="utf-8",
    )


class Served:
    """The app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, workspace: Workspace) -> None:
        config = uvicorn.Config(
            create_app(workspace), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def twilio() -> Iterator[TwilioEmulator]:
    with TwilioEmulator(TWILIO_SID, TWILIO_TOKEN) as server:
        assert isinstance(server, TwilioEmulator)
        yield server


@pytest.fixture
def workspace(
    ws: Path, twilio: TwilioEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    write_config(ws, twilio.url)
    loaded = Workspace.load(ws)
    clock.set_now("2026-11-25T10:00:00Z")
    add_customers(loaded, {"anna": ["sms", "email"], "joost": ["sms"]})
    clock.set_now(None)
    yield loaded
    loaded.close()


@pytest.fixture
def served(workspace: Workspace) -> Iterator[Served]:
    server = Served(Workspace(workspace.config))
    yield server
    server.stop()


def standard_webhook(
    payload: Any, msg_id: str, *, at: datetime | None = None, secret: str = WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, stamp, body.decode())
    return body, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def twilio_post(
    served: Served, params: dict[str, str], *, token: str = TWILIO_TOKEN
) -> httpx.Response:
    signature = RequestValidator(token).compute_signature(f"{PUBLIC_URL}/webhooks/sms", params)
    return served.http.post(
        "/webhooks/sms",
        content=urlencode(params).encode(),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


def inbound_texts(workspace: Workspace, customer: str) -> list[str]:
    return [
        m["text"]
        for m in workspace.store.conversations.transcript(customer)
        if m["direction"] == "in"
    ]


def wait_for(predicate: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_healthz(served: Served) -> None:
    response = served.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_signed_standard_webhook_is_stored_once(served: Served, workspace: Workspace) -> None:
    body, headers = standard_webhook({"from": "anna", "text": "hello"}, "msg_1")
    first = served.http.post("/webhooks/hooks", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 1
    retry = served.http.post("/webhooks/hooks", content=body, headers=headers)
    assert retry.json()["duplicates"] == 1
    assert inbound_texts(workspace, "anna") == ["hello"]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ("forged", 403),
        ("missing", 401),
        ("replayed", 403),
    ],
)
def test_a_bad_signature_changes_nothing(
    served: Served, workspace: Workspace, change: str, status: int
) -> None:
    at = datetime.now(UTC)
    secret = WEBHOOK_SECRET
    if change == "forged":
        secret = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    if change == "replayed":
        at = datetime.fromtimestamp(at.timestamp() - 600, UTC)
    body, headers = standard_webhook(
        {"from": "anna", "text": "STOP"}, "msg_x", at=at, secret=secret
    )
    if change == "missing":
        del headers["webhook-signature"]
    response = served.http.post("/webhooks/hooks", content=body, headers=headers)
    assert response.status_code == status
    assert inbound_texts(workspace, "anna") == []
    assert workspace.store.consent.current_consent_for("anna", "hooks") is None


def test_bodies_over_one_mebibyte_get_413(served: Served, workspace: Workspace) -> None:
    big = b"x" * (1024 * 1024 + 1)
    declared = served.http.post("/webhooks/hooks", content=big)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(11):
            yield b"y" * (1024 * 1024)

    streamed = served.http.post("/webhooks/hooks", content=chunks())
    assert streamed.status_code == 413
    assert served.http.get("/healthz").status_code == 200


def test_nul_text_is_rejected_and_nothing_stored(served: Served, workspace: Workspace) -> None:
    body, headers = standard_webhook({"from": "anna", "text": "a\u0000b"}, "msg_nul")
    response = served.http.post("/webhooks/hooks", content=body, headers=headers)
    assert response.status_code == 400
    assert "NUL" in response.text
    assert inbound_texts(workspace, "anna") == []


def test_unknown_channel_is_404(served: Served) -> None:
    assert served.http.post("/webhooks/fax", content=b"{}").status_code == 404


def test_twilio_stop_opts_out_and_the_confirmation_reaches_twilio(
    served: Served, workspace: Workspace, twilio: TwilioEmulator
) -> None:
    params = {
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": TWILIO_SID,
        "From": "+31612345601",
        "To": "+3197010000000",
        "Body": "stop ",
        "NumMedia": "0",
    }
    response = twilio_post(served, params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response/>" in response.text
    assert workspace.store.consent.current_consent_for("anna", "sms") == "opted_out"
    assert workspace.store.consent.consent_history("anna")[-1]["source"] == "keyword:STOP"
    wait_for(lambda: len(twilio.requests) == 1)
    sent = twilio.requests[0].form()
    assert sent["To"] == "+31612345601"
    assert "START" in sent["Body"]
    # Twilio's retry of the same message: stored once, no second confirmation
    assert twilio_post(served, params).status_code == 200
    time.sleep(0.3)
    assert len(twilio.requests) == 1
    assert inbound_texts(workspace, "anna") == ["stop "]


def test_twilio_forged_signature_is_403(served: Served, workspace: Workspace) -> None:
    params = {"MessageSid": "SM" + "2" * 32, "From": "+31612345601", "Body": "STOP"}
    response = twilio_post(served, params, token="not-the-token")
    assert response.status_code == 403
    assert workspace.store.consent.current_consent_for("anna", "sms") == "opted_in"


def test_twilio_status_callbacks_update_the_delivery(served: Served, workspace: Workspace) -> None:
    delivery = add_survey_delivery(workspace, "joost")
    sid = f"pm-{delivery}"
    for status in ("delivered", "sent"):  # out of order: never backwards
        response = twilio_post(
            served, {"MessageSid": sid, "MessageStatus": status, "AccountSid": TWILIO_SID}
        )
        assert response.status_code == 200
    conn = sqlite_conn(workspace)
    row = conn.execute("SELECT status FROM deliveries WHERE id = ?", (delivery,)).fetchone()
    assert row == ("delivered",)


def test_meta_handshake(served: Served) -> None:
    ok = served.http.get(
        "/webhooks/whatsapp",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": META_VERIFY_TOKEN,
            "hub.challenge": "1158",
        },
    )
    assert (ok.status_code, ok.text) == (200, "1158")
    wrong = served.http.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158"},
    )
    assert wrong.status_code == 403


def test_a_get_on_a_channel_without_a_handshake_is_405(served: Served) -> None:
    for channel in ("sms", "hooks", "email"):
        response = served.http.get(f"/webhooks/{channel}", params={"hub.challenge": "1158"})
        assert (response.status_code, response.text) == (405, "this channel has no GET handshake")


def test_a_json_webhook_is_answered_with_what_it_stored(served: Served) -> None:
    """Every provider but Twilio (TwiML, above) gets the default answer: the counts."""
    body, headers = standard_webhook({"from": "anna", "text": "hello"}, "msg_counts")
    response = served.http.post("/webhooks/hooks", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "messages": 1,
        "stored": 1,
        "duplicates": 0,
        "status_updates": 0,
        "rejected": 0,
    }


def test_meta_signed_inbound_message(served: Served, workspace: Workspace) -> None:
    import hashlib
    import hmac

    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "contacts": [{"profile": {"name": "Joost"}, "wa_id": "31612345602"}],
                            "messages": [
                                {
                                    "from": "31612345602",
                                    "id": "wamid.A1",
                                    "timestamp": "1764583200",
                                    "type": "text",
                                    "text": {"body": "Hoi!"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = served.http.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert inbound_texts(workspace, "joost") == ["Hoi!"]
    forged = served.http.post(
        "/webhooks/whatsapp",
        content=body.replace(b"Hoi", b"Hai"),
        headers={"X-Hub-Signature-256": signature},
    )
    assert forged.status_code == 403
    assert inbound_texts(workspace, "joost") == ["Hoi!"]


def test_one_click_unsubscribe(served: Served, workspace: Workspace) -> None:
    token = make_unsubscribe_token(workspace.store.meta.signing_key(), "anna", "email")
    page = served.http.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert workspace.store.consent.current_consent_for("anna", "email") == "opted_in"

    empty = served.http.post(f"/unsubscribe/{token}", content=b"")
    assert empty.status_code == 400
    response = served.http.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    history = workspace.store.consent.consent_history("anna")
    assert (history[-1]["status"], history[-1]["source"]) == ("opted_out", "unsubscribe-link")
    # a mailbox provider repeating the POST adds nothing
    served.http.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert len(workspace.store.consent.consent_history("anna")) == len(history)


def test_one_click_unsubscribe_as_multipart_form_data(served: Served, workspace: Workspace) -> None:
    # RFC 8058: the POST body SHOULD be multipart/form-data; mailbox providers send either
    token = make_unsubscribe_token(workspace.store.meta.signing_key(), "anna", "email")
    wrong = served.http.post(f"/unsubscribe/{token}", files={"List-Unsubscribe": (None, "No")})
    assert wrong.status_code == 400
    assert workspace.store.consent.current_consent_for("anna", "email") == "opted_in"
    response = served.http.post(
        f"/unsubscribe/{token}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert response.status_code == 200, response.text
    assert response.request.headers["content-type"].startswith("multipart/form-data; boundary=")
    history = workspace.store.consent.consent_history("anna")
    assert (history[-1]["status"], history[-1]["source"]) == ("opted_out", "unsubscribe-link")


def test_a_tampered_unsubscribe_token_is_refused(served: Served, workspace: Workspace) -> None:
    key = workspace.store.meta.signing_key()
    token = make_unsubscribe_token(key, "anna", "email")
    body, tag = token.split(".")
    other = make_unsubscribe_token(key, "joost", "email").split(".")[0]
    # The first base64 character carries six whole bits of the tag, so changing it always
    # changes the tag (the last ones may be padding bits that decode to the same bytes).
    flipped = ("B" if tag[0] == "A" else "A") + tag[1:]
    for bad in (f"{other}.{tag}", f"{body}.{flipped}", "garbage", f"{body}."):
        response = served.http.post(f"/unsubscribe/{bad}", content=b"List-Unsubscribe=One-Click")
        assert response.status_code == 404, bad
    assert workspace.store.consent.current_consent_for("joost", "email") is None
    assert workspace.store.consent.current_consent_for("anna", "email") == "opted_in"


def test_tokens_round_trip_and_are_url_safe() -> None:
    key = b"k" * 32
    token = make_unsubscribe_token(key, "cust/42 ü", "sms")
    assert all(c.isalnum() or c in "-_." for c in token)
    assert read_unsubscribe_token(key, token) == ("cust/42 ü", "sms")


def test_concurrent_webhooks_are_all_stored(served: Served, workspace: Workspace) -> None:
    async def post_all() -> list[int]:
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as client:

            async def one(i: int) -> int:
                body, headers = standard_webhook({"from": "anna", "text": f"n{i}"}, f"c{i}")
                response = await client.post("/webhooks/hooks", content=body, headers=headers)
                return response.status_code

            return await asyncio.gather(*(one(i) for i in range(200)))

    assert set(asyncio.run(post_all())) == {200}
    assert len(inbound_texts(workspace, "anna")) == 200


def test_outreach_serve_runs_as_a_command(ws: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach", "-w", str(ws), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while healthz(f"http://127.0.0.1:{port}") is None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.02)
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert response.json() == {"status": "ok"}
        # an outbox channel receives no webhooks
        assert httpx.post(f"http://127.0.0.1:{port}/webhooks/sms", content=b"x").status_code == 404
    finally:
        proc.terminate()
        proc.wait(10)


def test_sunshine_webhook_with_its_shared_secret(served: Served, workspace: Workspace) -> None:
    payload = {
        "app": {"id": "5963c0d619a30a2e00de36b8"},
        "webhook": {"id": "w", "version": "v2"},
        "events": [
            {
                "id": "e1",
                "createdAt": "2026-12-01T10:00:00.000Z",
                "type": "conversation:message",
                "payload": {
                    "conversation": {"id": "c1", "type": "personal"},
                    "message": {
                        "id": "m1",
                        "received": "2026-12-01T10:00:00Z",
                        "author": {"type": "user", "userId": "u1", "displayName": "Anna"},
                        "content": {"type": "text", "text": "hulp"},
                        "source": {"type": "whatsapp"},
                    },
                },
            }
        ],
    }
    body = json.dumps(payload).encode()
    wrong = served.http.post("/webhooks/messenger", content=body, headers={"X-API-Key": "guess"})
    assert wrong.status_code == 403
    missing = served.http.post("/webhooks/messenger", content=body)
    assert missing.status_code == 401
    ok = served.http.post(
        "/webhooks/messenger", content=body, headers={"X-API-Key": SUNSHINE_WEBHOOK_SECRET}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["stored"] == 1
    conn = sqlite_conn(workspace)
    contacts = conn.execute(
        "SELECT id, name, verified FROM customers WHERE id LIKE 'contact:messenger:%'"
    ).fetchall()
    assert contacts == [("contact:messenger:u1", "Anna", 0)]


def test_twilio_form_with_repeated_keys_is_verified_over_every_value(
    served: Served, workspace: Workspace
) -> None:
    from urllib.parse import quote

    pairs = [
        ("MessageSid", "SM" + "3" * 32),
        ("From", "+31612345601"),
        ("Body", "first"),
        ("Body", "second"),
        ("AccountSid", TWILIO_SID),
    ]
    body = "&".join(f"{k}={quote(v)}" for k, v in pairs).encode()
    # Twilio signs each name followed by each of its values, names sorted
    signed = f"{PUBLIC_URL}/webhooks/sms" + "".join(
        k + v for k, v in sorted(pairs, key=lambda kv: (kv[0], kv[1]))
    )
    import hashlib
    import hmac

    signature = base64.b64encode(
        hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    assert served.http.post("/webhooks/sms", content=body, headers=headers).status_code == 200
    assert inbound_texts(workspace, "anna") == ["first"]
    tampered = body.replace(b"second", b"third")
    assert served.http.post("/webhooks/sms", content=tampered, headers=headers).status_code == 403


def test_serve_and_another_writer_share_the_database(
    served: Served, workspace: Workspace, ws: Path
) -> None:
    """Webhooks arrive while `replies ingest` writes a thousand messages from another
    process: nothing is lost and nobody sees "database is locked"."""
    import subprocess
    import sys

    lines = "".join(
        json.dumps(
            {
                "channel": "email",
                "from": "joost@example.nl",
                "text": f"bulk {i}",
                "id": f"bulk-{i}",
                "received_at": "2026-11-25T10:00:00Z",
            }
        )
        + "\n"
        for i in range(1000)
    )
    file = ws / "bulk.jsonl"
    file.write_text(lines, encoding="utf-8")
    ingest = subprocess.Popen(
        [sys.executable, "-m", "outreach", "-w", str(ws), "replies", "ingest", str(file), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:

            async def one(i: int) -> int:
                body, headers = standard_webhook({"from": "anna", "text": f"w{i}"}, f"p{i}")
                response = await client.post("/webhooks/hooks", content=body, headers=headers)
                return response.status_code

            return await asyncio.gather(*(one(i) for i in range(200)))

    codes = asyncio.run(post_all())
    out, err = ingest.communicate(timeout=120)
    assert ingest.returncode == 0, err.decode()
    assert json.loads(out)["stored"] == 1000
    assert set(codes) == {200}, codes
    assert len(inbound_texts(workspace, "anna")) == 200
    assert len(inbound_texts(workspace, "joost")) == 1000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "expected a JSON object"),
        (b'"just text"', "expected a JSON object"),
        (b"42", "expected a JSON object"),
        (b"{not json", "not valid JSON"),
    ],
)
def test_a_signed_payload_that_is_not_a_json_object_is_400(
    served: Served, workspace: Workspace, body: bytes, reason: str
) -> None:
    stamp = datetime.now(UTC)
    headers = {
        "webhook-id": "bad-1",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign("bad-1", stamp, body.decode()),
    }
    response = served.http.post("/webhooks/hooks", content=body, headers=headers)
    assert response.status_code == 400
    assert reason in response.text


def test_deeply_nested_signed_json_is_400_not_500(served: Served) -> None:
    body = b"[" * 100_000
    stamp = datetime.now(UTC)
    headers = {
        "webhook-id": "deep",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign("deep", stamp, body.decode()),
    }
    response = served.http.post("/webhooks/hooks", content=body, headers=headers)
    assert response.status_code == 400
    assert served.http.get("/healthz").status_code == 200


def test_the_unsubscribe_page_speaks_the_customers_language(
    served: Served, workspace: Workspace, cli: Cli, tmp_path: Path
) -> None:
    (tmp_path / "nl.csv").write_text("id,locale\nanna,nl-NL\n", encoding="utf-8")
    assert cli("customers", "import", str(tmp_path / "nl.csv")).exit_code == 0
    token = make_unsubscribe_token(workspace.store.meta.signing_key(), "anna", "email")
    page = served.http.get(f"/unsubscribe/{token}")
    assert '<html lang="nl">' in page.text and "Geen berichten meer ontvangen via email?" in (
        page.text
    )
    assert ">Afmelden</button>" in page.text
    done = served.http.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert "Afgemeld" in done.text and "Je krijgt geen berichten meer van" in done.text
    # joost has no locale: English
    english = served.http.get(
        f"/unsubscribe/{make_unsubscribe_token(workspace.store.meta.signing_key(), 'joost', 'sms')}"
    )
    assert "Stop receiving messages on sms?" in english.text
