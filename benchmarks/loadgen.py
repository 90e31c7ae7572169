"""A loopback load generator of signed Twilio inbound-message webhooks.

Raw HTTP/1.1 over asyncio streams with keep-alive, ``connections`` of them at once, so
that the generator costs little CPU next to the server it measures (an HTTP client
library would take a large share of the two cores). Each request is what Twilio sends
for an incoming SMS: a form body and ``X-Twilio-Signature``, the base64 HMAC-SHA1 of the
URL followed by every parameter name and value in name order, keyed with the auth token.

Bounded: exactly ``len(bodies)`` requests, each connection stops at the first error (or,
with ``retry``, sends the request again as a provider would), and the whole run has a
deadline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    payload = url + "".join(name + params[name] for name in sorted(params))
    mac = hmac.new(token.encode(), payload.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def signed_requests(
    host: str, port: int, path: str, token: str, forms: Iterable[dict[str, str]]
) -> list[bytes]:
    """Ready-to-send request bytes (signing is done before the clock starts)."""
    url = f"http://{host}:{port}{path}"
    out = []
    for form in forms:
        body = urlencode(form).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {twilio_signature(token, url, form)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


@dataclass
class LoadResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    retries: int = 0  # requests sent again after a connection error or a 5xx

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)


class ConnectionClosed(Exception):
    """The server closed the connection before answering."""


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one response; its status."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionClosed("connection closed by server")
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        if key == "content-length":
            length = int(value.strip())
        elif key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str, port: int, queue: list[bytes], result: LoadResult, deadline: float
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while queue and time.monotonic() < deadline:
            request = queue.pop()
            writer.write(request)
            await writer.drain()
            status = await _response(reader)
            result.sent += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
    except ConnectionClosed as exc:
        result.errors.append(str(exc))
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


RETRY_PAUSE = 0.05


async def _retrying_worker(
    host: str,
    port: int,
    queue: list[bytes],
    result: LoadResult,
    deadline: float,
    on_ok: Callable[[int], None] | None,
) -> None:
    """As a provider sends: a request that meets a connection error (the server gone
    mid-request, a refused connection) or a 5xx is sent again, on a new connection after
    an error, until it gets an answer below 500 or the deadline passes."""
    request: bytes | None = None
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while time.monotonic() < deadline:
            if request is None:
                if not queue:
                    return
                request = queue.pop()
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                await writer.drain()
                status = await _response(reader)
            except (OSError, ConnectionClosed, asyncio.IncompleteReadError, ValueError):
                result.retries += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(RETRY_PAUSE)
                continue
            if status >= 500:
                result.retries += 1
                await asyncio.sleep(RETRY_PAUSE)
                continue
            result.sent += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            request = None
            if on_ok is not None and 200 <= status < 300:
                on_ok(result.ok)
        if request is not None:
            result.errors.append("deadline passed with a request unanswered")
    finally:
        if writer is not None:
            writer.close()


async def _run(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    timeout: float,
    retry: bool = False,
    on_ok: Callable[[int], None] | None = None,
) -> LoadResult:
    queue = list(reversed(requests))
    result = LoadResult()
    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    workers = (
        _retrying_worker(host, port, queue, result, deadline, on_ok)
        if retry
        else _worker(host, port, queue, result, deadline)
        for _ in range(connections)
    )
    await asyncio.wait_for(asyncio.gather(*workers), timeout + 5)
    result.seconds = time.perf_counter() - start
    return result


def load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int = 32,
    timeout: float = 120.0,
    retry: bool = False,
    on_ok: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send every request over ``connections`` keep-alive connections; status counts back.

    ``retry``: send a request again after a connection error or a 5xx, as providers do
    (else a connection stops at its first error); ``on_ok`` is called with the number of
    2xx answers so far after each one."""
    return asyncio.run(_run(host, port, requests, connections, timeout, retry, on_ok))
