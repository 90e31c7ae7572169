"""Loopback servers for the benchmarks, each in a process of its own.

``python -m benchmarks.servers KIND [ARGS]`` binds 127.0.0.1 on a free port, prints
``PORT <n>`` and then obeys one-line commands on standard input:

- ``stats``: print one JSON line ``{"count", "first", "last", "cpu"}`` (requests or
  messages accepted since the last ``stats``, the ``time.monotonic()`` of the first and
  last, a clock shared by every process of the machine, and the CPU seconds the server
  process used meanwhile) and start counting again;
- ``quit`` or end of input: exit.

A separate process, not a thread of the benchmark, so that the two cores are shared
between the client and the server the way they would be in production, and so that the
server's CPU time never slows the measured process's event loop.

Kinds:
- ``twilio SID TOKEN``: the project's Twilio emulator (``tests/servers/twilio.py``, which
  checks Basic auth and answers ``201`` with a message ``sid``) when it can be imported,
  else a minimal server that answers the same;
- ``json``: any POST gets ``200 {}`` (a JSON endpoint for ``apprise``'s ``json://`` and
  outreach's ``webhook`` provider);
- ``smtp``: ``aiosmtpd`` accepting every message and keeping only the count.

Every server stops by itself when the benchmark's end of the pipe closes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_TWILIO_REPLY = (
    '{{"sid": "{sid}", "status": "queued", "error_code": null, "error_message": null, '
    '"num_segments": "1"}}'
)


class Counter:
    """Thread-safe count with the first and last time, reset by ``snapshot``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        # read at each snapshot only: a clock read per hit would cost the server itself
        self.cpu = time.process_time()

    def hit(self) -> None:
        now = time.monotonic()
        with self.lock:
            if not self.count:
                self.first = now
            self.count += 1
            self.last = now

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            cpu = time.process_time()
            out = {"count": self.count, "first": self.first, "last": self.last}
            out["cpu"] = cpu - self.cpu
            self.count = 0
            self.first = self.last = 0.0
            self.cpu = cpu
        return out


class MiniHTTP:
    """A keep-alive HTTP/1.1 server on asyncio streams answering every request alike."""

    def __init__(self, counter: Counter, reply: Callable[[str, str], tuple[int, bytes]]) -> None:
        self.counter = counter
        self.reply = reply
        self.port = 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                length = 0
                close = False
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    key = name.strip().lower()
                    if key == "content-length":
                        length = int(value.strip())
                    elif key == "connection" and value.strip().lower() == "close":
                        close = True
                if length:
                    await reader.readexactly(length)
                status, body = self.reply(method, target)
                self.counter.hit()
                writer.write(
                    f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                if close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def start(self) -> int:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            server = loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)
        return self.port


def _twilio_reply(method: str, target: str) -> tuple[int, bytes]:
    if method != "POST" or not target.endswith("/Messages.json"):
        return 404, b'{"code": 20404, "message": "not found", "status": 404}'
    return 201, _TWILIO_REPLY.format(sid="SM" + secrets.token_hex(16)).encode()


def start_twilio(counter: Counter, sid: str, token: str) -> int:
    try:
        from tests.servers.http import Recorded, Reply
        from tests.servers.twilio import TwilioEmulator
    except ImportError:
        return MiniHTTP(counter, _twilio_reply).start()

    class CountingTwilio(TwilioEmulator):
        def handle(self, request: Recorded) -> Reply:
            reply = super().handle(request)
            self.requests.clear()  # a benchmark sends many; keep memory flat
            counter.hit()
            return reply

    server = CountingTwilio(sid, token)
    server.start()
    return server.port


def start_json(counter: Counter) -> int:
    return MiniHTTP(counter, lambda method, target: (200, b"{}")).start()


def start_smtp(counter: Counter) -> int:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            counter.hit()
            return "250 Message accepted for delivery"

    class Smtp(Controller):
        def _trigger_server(self) -> None:
            # port 0: learn the port the OS chose before the base class connects to it
            assert self.server is not None
            self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            super()._trigger_server()  # type: ignore[no-untyped-call]

    controller = Smtp(Handler(), hostname="127.0.0.1", port=0)
    controller.start()
    return int(controller.port)


def main(argv: list[str]) -> int:
    counter = Counter()
    kind = argv[0] if argv else ""
    if kind == "twilio" and len(argv) == 3:
        port = start_twilio(counter, argv[1], argv[2])
    elif kind == "json":
        port = start_json(counter)
    elif kind == "smtp":
        port = start_smtp(counter)
    else:
        print("usage: python -m benchmarks.servers twilio SID TOKEN | json | smtp", file=sys.stderr)
        return 2
    print(f"PORT {port}", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            print(json.dumps(counter.snapshot()), flush=True)
        elif command == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
