"""A round-robin TCP proxy on loopback: a load balancer in front of ``serve`` replicas.

``python -m benchmarks.proxy PORT BACKEND_PORT...`` listens on 127.0.0.1:PORT (0: a free
port), prints ``PORT <n>`` and hands each new client connection to the next backend in
turn, piping bytes both ways until either side closes. A backend that refuses the
connection (a replica that was killed) is skipped for the next one, as a load balancer's
failed health check would; when none answers, the client's connection is closed, which
the client sees as a connection error and retries. Connections, not requests, are
balanced (layer 4, like HAProxy in TCP mode): keep-alive clients spread over the replicas
by connection. ``stats`` on standard input prints one JSON line of connections per
backend; ``quit`` or the end of input stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading

BUFFER = 64 * 1024


class Proxy:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.next = 0
        self.connections = dict.fromkeys(backends, 0)
        self.refused = 0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            port = self.backends[self.next % len(self.backends)]
            self.next += 1
            try:
                pair = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                self.refused += 1
                continue
            self.connections[port] += 1
            return pair
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the end of ``reader``; then close ``writer`` (the other direction ends
    when its peer sees that)."""
    try:
        while chunk := await reader.read(BUFFER):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _main(port: int, backends: list[int]) -> None:
    proxy = Proxy(backends)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stats":
                figures = {"connections": proxy.connections, "refused": proxy.refused}
                print(json.dumps(figures), flush=True)
            elif line.strip() == "quit":
                break
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    threading.Thread(target=commands, daemon=True).start()
    async with server:
        await done


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m benchmarks.proxy PORT BACKEND_PORT...", file=sys.stderr)
        return 2
    asyncio.run(_main(int(argv[0]), [int(p) for p in argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
