"""HTTP providers speak HTTP/2 to a server that offers it (ALPN over TLS), HTTP/1.1 otherwise.

A real HTTPS server on loopback (hypercorn, which negotiates h2), with a certificate from a
test CA (trustme) that the provider trusts through ``SSL_CERT_FILE``, as a user behind a
company CA would configure it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config

from outreach.channels.base import OutboundMessage
from outreach.channels.twilio import TwilioProvider
from tests.servers.fixtures import TWILIO_SID, channel_config, context


class _Server:
    """hypercorn in a thread of its own, answering every POST like Twilio's Messages API."""

    def __init__(self, tmp: Path, *, h2: bool) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        self.ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.config = Config()
        self.config.bind = [f"127.0.0.1:{self.port}"]
        self.config.certfile = self.config.keyfile = str(tmp / "server.pem")
        self.config.alpn_protocols = ["h2", "http/1.1"] if h2 else ["http/1.1"]
        self.versions: list[str] = []
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.versions.append(scope["http_version"])
        while (await receive()).get("more_body"):
            pass
        body = json.dumps({"sid": f"SM{len(self.versions):032x}", "status": "queued"})
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            self._ready.set()
            await serve(self.app, self.config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(main())

    def __enter__(self) -> _Server:
        self._thread.start()
        self._ready.wait(10)
        for _ in range(200):  # until hypercorn listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            threading.Event().wait(0.02)
        raise RuntimeError("hypercorn did not start")

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(params=[True, False], ids=["h2-offered", "http1-only"])
def https_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_Server]:
    with _Server(tmp_path, h2=request.param) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        yield server


def test_http2_when_the_server_offers_it(https_server: _Server) -> None:
    provider = TwilioProvider(
        channel_config(
            "twilio",
            {
                "account_sid": TWILIO_SID,
                "auth_token_env": "TWILIO_AUTH_TOKEN",
                "from": "+3197010000000",
                "base_url": f"https://127.0.0.1:{https_server.port}",
            },
        ),
        context(),
    )

    async def go() -> list[Any]:
        try:
            return list(
                await asyncio.gather(
                    *(
                        provider.send(
                            OutboundMessage(
                                delivery_id=f"d{i}",
                                channel="sms",
                                customer_id="c1",
                                to="+31612345678",
                                body="Hoi",
                            )
                        )
                        for i in range(6)
                    )
                )
            )
        finally:
            await provider.aclose()

    results = asyncio.run(go())
    assert all(r.provider_message_id.startswith("SM") for r in results)
    offered_h2 = "h2" in https_server.config.alpn_protocols
    assert https_server.versions == ["2" if offered_h2 else "1.1"] * 6
