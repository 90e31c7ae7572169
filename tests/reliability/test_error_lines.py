"""What a person reads when something goes wrong: no secret, the real cause, how far it got.

A provider that echoes the credential back in another case or URL-encoded must not get it
into stderr or the stored delivery error; ``--debug`` adds the traceback but keeps the exit
code; a TLS failure says TLS; an interrupted ``customers import`` says how far it got.
"""

from __future__ import annotations

import base64
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme

from tests.servers.fixtures import TWILIO_SID, TWILIO_TOKEN
from tests.servers.http import Reply
from tests.servers.twilio import TwilioEmulator

from .support import (
    customers_csv,
    make_workspace,
    outreach_toml,
    query,
    run_cli,
    spawn,
    stop,
    twilio_channel,
    wait_until,
)


def _ws(tmp_path: Path, url: str, customers: int = 1) -> Path:
    return make_workspace(tmp_path / "ws", outreach_toml(twilio_channel(url)), customers=customers)


def test_a_credential_echoed_in_another_case_or_url_encoded_is_scrubbed(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    basic = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    echoes = [TWILIO_TOKEN.upper(), quote(basic, safe="").lower(), quote(TWILIO_TOKEN + "/x")]
    message = "Authenticate: " + " and ".join(echoes)
    twilio_server.fail(Reply.json(401, {"code": 20003, "message": message, "status": 401}))
    ws = _ws(tmp_path, twilio_server.url)
    done = run_cli(ws, "run", "blast")
    assert done.returncode == 3, done.stderr
    assert "Authenticate" in done.stderr
    error = query(ws, "SELECT error FROM deliveries")[0][0]
    assert "Authenticate" in error
    for text in (done.stderr + done.stdout, error):
        lowered = text.lower()
        assert TWILIO_TOKEN.lower() not in lowered, text
        assert basic.lower() not in lowered and quote(basic, safe="").lower() not in lowered


def test_debug_keeps_the_exit_code_of_a_partial_failure(
    tmp_path: Path, twilio_server: TwilioEmulator
) -> None:
    twilio_server.fail("reject")
    ws = _ws(tmp_path, twilio_server.url)
    done = run_cli(ws, "--debug", "run", "blast")
    assert done.returncode == 3, done.stderr
    assert "Traceback" in done.stderr and "PartialFailure" in done.stderr


@pytest.fixture
def untrusted_tls_port() -> Iterator[int]:
    """A TLS server whose certificate comes from a CA the client does not trust."""
    cert = trustme.CA().issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass  # the client refuses the certificate during the handshake
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        server.close()


def test_a_tls_failure_reads_as_tls_not_as_a_refused_connection(
    tmp_path: Path, untrusted_tls_port: int
) -> None:
    ws = _ws(tmp_path, f"https://127.0.0.1:{untrusted_tls_port}")
    done = run_cli(ws, "run", "blast")
    assert done.returncode == 0, done.stderr
    row = query(ws, "SELECT status, reason, error FROM deliveries")[0]
    assert (row["status"], row["reason"]) == ("queued", "tls"), tuple(row)
    assert "TLS failed (certificate verify failed" in row["error"], row["error"]
    assert "SSL_CERT_FILE" in row["error"]
    assert "connection failed" not in row["error"]


def test_an_interrupted_customers_import_says_how_far_it_got(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", outreach_toml('[channels.sms]\nprovider = "outbox"\n'))
    big = tmp_path / "big.csv"
    big.write_text(customers_csv(300_000), encoding="utf-8")
    proc = spawn(ws, "customers", "import", str(big))

    def some_imported() -> bool:
        try:
            return int(query(ws, "SELECT count(*) FROM customers")[0][0]) >= 4000
        except Exception:
            return False

    assert wait_until(some_imported, timeout=60)
    code, _, err = stop(proc, signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err, err
    assert "interrupted: the first" in err and "rows of big.csv were imported" in err, err
    assert "import the file again" in err
