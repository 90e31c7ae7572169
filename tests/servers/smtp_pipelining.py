"""A small loopback SMTP server that offers PIPELINING (RFC 2920), as most real ones do.

aiosmtpd does not announce PIPELINING, so this one speaks just enough SMTP for a
client's transactions (EHLO, MAIL, RCPT, DATA, RSET, QUIT) and records each chunk of
bytes as it arrived, so a test can see that MAIL, RCPT and DATA came in one write. Its
replies to MAIL and RCPT can be set, and it can answer DATA with 354 even when no
recipient was accepted (RFC 2920 lets a server do that; the client must then end the
text at once), hang up at a given command without answering it, or never answer it.
"""

from __future__ import annotations

import asyncio
import threading


class _Connection(asyncio.Protocol):
    def __init__(self, server: PipeliningServer) -> None:
        self.server = server
        self.buffer = b""
        self.in_data = False
        self.recipients = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 pipelining.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.server.chunks.append(data)
        self.buffer += data
        while True:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):  # no text at all
                    text, self.buffer = b"", self.buffer[3:]
                else:
                    end = self.buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        return
                    text, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
                self.in_data = False
                if text:
                    self.server.messages.append(text.replace(b"\r\n..", b"\r\n."))
                if self.server.mute_at == "TEXT":
                    continue
                self._say(self.server.data_end_reply if text else "250 OK nothing")
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                return
            self.buffer = rest
            self._command(line.decode())

    def _command(self, line: str) -> None:
        verb = line[:4].upper()
        server = self.server
        if verb == server.hang_up_at:
            assert self.transport is not None
            self.transport.close()
            return
        if verb == server.mute_at:
            return
        if verb == "EHLO":
            self._say("250-pipelining.test\r\n250-PIPELINING\r\n250 SIZE 100000")
        elif verb == "MAIL":
            self.recipients = 0
            self._say(server.mail_reply)
        elif verb == "RCPT":
            reply = server.rcpt_reply
            self.recipients += reply.startswith("25")
            self._say(reply)
        elif verb == "DATA":
            if self.recipients or server.data_despite_refusal:
                self.in_data = True
                self._say("354 End data with <CR><LF>.<CR><LF>")
            else:
                self._say("554 5.5.1 Error: no valid recipients")
        elif verb in ("RSET", "NOOP"):
            self.recipients = 0
            self._say("250 OK")
        elif verb == "QUIT":
            self._say("221 Bye")
            assert self.transport is not None
            self.transport.close()
        else:
            self._say("500 Error: command not recognized")

    def _say(self, reply: str) -> None:
        assert self.transport is not None
        self.transport.write(reply.encode() + b"\r\n")


class PipeliningServer:
    """Start with ``with PipeliningServer() as server:``; ``server.port`` is its port."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.messages: list[bytes] = []
        self.mail_reply = "250 OK"
        self.rcpt_reply = "250 OK"
        self.data_end_reply = "250 OK queued"
        self.data_despite_refusal = False
        self.hang_up_at: str | None = None  # e.g. "DATA": close instead of answering it
        self.mute_at: str | None = None  # a command (or "TEXT") left without an answer
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> PipeliningServer:
        server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
