"""A small HTTP/1.1 server on 127.0.0.1:0 in a thread, for provider emulators.

Written on asyncio streams rather than ``http.server`` so that it keeps connections alive
cheaply (many concurrent keep-alive clients, thousands of requests a second) and can
misbehave on purpose: answer 429/5xx, HTML, malformed JSON, hang, or reset the TCP
connection. Every request is recorded with the number of the connection it came on, so
tests can assert keep-alive from the server side.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

FAULTS = (
    "429",  # Too Many Requests without Retry-After
    "429-retry-after",  # ... with Retry-After: 7
    "429-date",  # ... with Retry-After as an HTTP date
    "500",
    "502",
    "503",
    "html",  # 200 text/html (a proxy's page)
    "malformed",  # 200 application/json that is not JSON
    "error-body",  # 200 with the provider's error JSON
    "reject",  # 400 with the provider's error JSON (e.g. invalid number)
    "hang",  # never answer
    "reset",  # close the TCP connection with RST
)


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    connection: int
    # when it arrived (time.monotonic(), one clock for every process of the machine)
    at: float = field(default_factory=time.monotonic)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class LoopbackServer:
    """Base emulator: subclasses implement ``handle`` (and ``error_json`` for faults)."""

    hang_seconds = 30.0

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.faults: deque[str | Reply] = deque()
        self.connections = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    # -- what subclasses provide ------------------------------------------------

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def error_json(self, request: Recorded, status: int) -> Any:
        """The provider's error body for a fault answered with ``status``.

        "error-body" asks for it with status 200: the body of a permanent refusal.
        """
        return {"error": "rejected"}

    # -- control ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, *faults: str | Reply) -> None:
        """Answer the next requests with these faults, in order, then normally again."""
        for fault in faults:
            if isinstance(fault, str) and fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
            self.faults.append(fault)

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=512)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        self._thread.join(5)
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the protocol -------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self.connections += 1
            number = self.connections
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                parts = urlsplit(target)
                request = Recorded(
                    method=method,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers=headers,
                    body=body,
                    connection=number,
                )
                self.requests.append(request)
                fault = self.faults.popleft() if self.faults else None
                if fault == "hang":
                    await asyncio.sleep(self.hang_seconds)
                    break
                if fault == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                reply = fault if isinstance(fault, Reply) else self._fault_reply(fault, request)
                writer.write(self._encode(reply))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _fault_reply(self, fault: str | None, request: Recorded) -> Reply:
        if fault is None:
            return self.handle(request)
        if fault == "429":
            return Reply.json(429, self.error_json(request, 429))
        if fault == "429-retry-after":
            return Reply.json(429, self.error_json(request, 429), {"Retry-After": "7"})
        if fault == "429-date":
            return Reply.json(
                429, self.error_json(request, 429), {"Retry-After": "Fri, 31 Dec 2038 23:59:59 GMT"}
            )
        if fault in ("500", "502", "503"):
            if fault == "502":
                return Reply(
                    502, b"<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"}
                )
            return Reply.json(int(fault), self.error_json(request, int(fault)))
        if fault == "html":
            return Reply(
                200,
                b"<!doctype html><html><body>Welcome</body></html>",
                {"Content-Type": "text/html; charset=utf-8"},
            )
        if fault == "malformed":
            return Reply(200, b'{"sid": "SM12', {"Content-Type": "application/json"})
        if fault == "error-body":
            return Reply.json(200, self.error_json(request, 200))
        if fault == "reject":
            return Reply.json(400, self.error_json(request, 400))
        raise AssertionError(fault)

    @staticmethod
    def _encode(reply: Reply) -> bytes:
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
        headers = {"Content-Length": str(len(reply.body)), **reply.headers}
        head += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body
