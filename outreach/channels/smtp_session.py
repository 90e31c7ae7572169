"""One SMTP session's mail transactions, over a connection aiosmtplib has opened.

aiosmtplib connects, greets, secures (STARTTLS or implicit TLS) and logs in; then the
session's transport is handed to the small protocol here (``transport.set_protocol``),
which sends messages one transaction at a time: MAIL FROM, RCPT TO, DATA, the text. Its
replies are parsed straight from the bytes and each is awaited once, with one timer,
where aiosmtplib's protocol adds a ``wait_for`` (two more event-loop hops) and a lock per
reply: about an eighth fewer instructions a message, and a run's sending process is
CPU-bound. Where the server offers PIPELINING (RFC 2920; Postfix, Exim and the big
providers do, aiosmtpd does not), MAIL, RCPT and DATA go out in one write and their three
replies are read together: two round trips a message instead of four, which over a real
network is what bounds a session's rate. Whether the server offers 8BITMIME (RFC 6152) is
kept as ``eight_bit``: the provider renders a message for the session it goes out on and
asks for ``BODY=8BITMIME`` when the text is not ASCII.

The text counts as sent once the server has answered DATA with 354 and the text is
written: before that no server can hold the message, so a lost session is retryable.

Refusals raise the aiosmtplib errors ``sendmail`` raises (``SMTPSenderRefused``,
``SMTPRecipientsRefused``, ``SMTPDataError``; ``SMTPServerDisconnected`` and
``SMTPReadTimeoutError`` for a lost session), so the provider maps them as before. The
session is closed where a reply would otherwise be paired with the wrong command: after
a timeout, a lost connection or a ``421``.
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiosmtplib

# a reply longer than this is no SMTP server's (aiosmtplib allows the same)
_MAX_REPLY = 32 * 1024
_TAKEN = (250, 251)  # RCPT TO accepted (251: "will forward")


class _Wire(asyncio.Protocol):
    """The bytes of one connection: complete replies queued as (code, text)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport: asyncio.Transport | None = transport
        self.replies: deque[tuple[int, str]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.failure: Exception | None = None
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start : end + 1]
            if line[3:4] == b"-":  # a continuation line: the reply goes on
                start = end + 1
                continue
            self._reply(bytes(buffer[: end + 1]))
            if self.failure:
                return
            del buffer[: end + 1]
            start = 0
        if len(buffer) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
        elif self.replies:
            self._wake()

    def _reply(self, raw: bytes) -> None:
        lines = raw.split(b"\n")[:-1]
        try:
            code = int(lines[-1][:3])
        except ValueError:
            shown = raw.decode("utf-8", "replace").strip()
            self._fail(aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response: {shown}"))
            return
        text = b"\n".join(line[4:].strip(b" \t\r") for line in lines)
        self.replies.append((code, text.decode("utf-8", "surrogateescape")))

    def _fail(self, failure: Exception) -> None:
        self.failure = failure
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.failure is None:
            self.failure = aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._wake()

    def eof_received(self) -> bool:
        return False  # the server hung up: close our end too


class Session:
    """An open SMTP session: one transaction at a time, and whether the current message's
    text has gone out (from then on, a lost answer leaves its fate unknown)."""

    def __init__(self, client: aiosmtplib.SMTP, timeout: float) -> None:
        transport = client.transport
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._wire = _Wire(transport)
        transport.set_protocol(self._wire)
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.pipelining = client.supports_extension("pipelining")
        self.size = client.supports_extension("size")
        self.smtputf8 = client.supports_extension("smtputf8")
        self.eight_bit = client.supports_extension("8bitmime")
        self.text_sent = False
        # when the reply awaited now is overdue; one watchdog timer per session checks it
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def is_connected(self) -> bool:
        transport = self._wire.transport
        return transport is not None and not transport.is_closing()

    def close(self) -> None:
        transport = self._wire.transport
        if transport is not None:
            transport.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _write(self, data: bytes) -> None:
        transport = self._wire.transport
        if transport is None or transport.is_closing():
            raise self._wire.failure or aiosmtplib.SMTPServerDisconnected("Connection lost")
        transport.write(data)

    async def _reply(self) -> tuple[int, str]:
        wire = self._wire
        if not wire.replies and wire.failure is None:
            wire.waiter = self._loop.create_future()
            # a timer of its own for every reply cost more than the reply's parsing
            self._deadline = self._loop.time() + self.timeout
            if self._watchdog is None:
                self._watchdog = self._loop.call_at(self._deadline, self._watch)
            try:
                await wire.waiter
            finally:
                wire.waiter = None
        if wire.replies:
            return wire.replies.popleft()
        raise wire.failure or aiosmtplib.SMTPServerDisconnected("Connection lost")

    def _watch(self) -> None:
        """The watchdog: time out the awaited reply once overdue, else look again at its
        deadline (each wait moves it on); no wait, no timer until the next one."""
        self._watchdog = None
        waiter = self._wire.waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() < self._deadline:
            self._watchdog = self._loop.call_at(self._deadline, self._watch)
            return
        waiter.set_exception(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for a reply"))

    async def _ask(self, line: bytes) -> tuple[int, str]:
        self._write(line)
        return await self._reply()

    async def transact(
        self, mail: bytes, rcpt: bytes, text: bytes, size: int, utf8: bool, body8: bool = False
    ) -> None:
        """One message: ``mail``/``rcpt`` are the MAIL FROM and RCPT TO lines without
        options or line end, ``text`` the dot-stuffed DATA text of ``size`` octets;
        ``body8``: the text has 8-bit parts, so MAIL FROM says ``BODY=8BITMIME`` (the
        provider asks for it only where the session offers 8BITMIME)."""
        if body8:
            mail += b" BODY=8BITMIME"
        if utf8:
            if not self.smtputf8:
                raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
            mail += b" SMTPUTF8"
        if self.size:
            mail += b" SIZE=%d" % size
        self.text_sent = False
        try:
            if self.pipelining:
                self._write(b"%s\r\n%s\r\nDATA\r\n" % (mail, rcpt))
                sender = await self._reply()
                recipient: tuple[int, str] | None = await self._reply()
                data: tuple[int, str] | None = await self._reply()
                taken = sender[0] == 250 and recipient is not None and recipient[0] in _TAKEN
                if data and data[0] == 354 and not taken:
                    # the envelope failed but the server waits for text: end it empty
                    self._write(b".\r\n")
                    await self._reply()
            else:
                sender = await self._ask(mail + b"\r\n")
                recipient = await self._ask(rcpt + b"\r\n") if sender[0] == 250 else None
                taken = recipient is not None and recipient[0] in _TAKEN
                data = await self._ask(b"DATA\r\n") if taken else None
            _check(sender, recipient, data)
            self.text_sent = True
            code, message = await self._ask(text)
            if code != 250:
                raise aiosmtplib.SMTPDataError(code, message)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code in (421, -1):  # the server is closing the session, or talks nonsense
                self.close()
            raise

    async def reset(self) -> bool:
        """RSET after a refused transaction; whether the session can carry the next one."""
        try:
            self._write(b"RSET\r\n")
            code, _ = await self._reply()
        except (aiosmtplib.SMTPException, OSError):
            self.close()
            return False
        if code != 250:
            self.close()
        return code == 250

    async def quit(self) -> None:
        try:
            self._write(b"QUIT\r\n")
            await self._reply()
        finally:
            self.close()


def _check(
    sender: tuple[int, str], recipient: tuple[int, str] | None, data: tuple[int, str] | None
) -> None:
    """Raise what ``sendmail`` raises for the first refused step of the envelope."""
    if sender[0] != 250:
        raise aiosmtplib.SMTPSenderRefused(sender[0], sender[1], "")
    assert recipient is not None
    if recipient[0] not in _TAKEN:
        refused = aiosmtplib.SMTPRecipientRefused(recipient[0], recipient[1], "")
        raise aiosmtplib.SMTPRecipientsRefused([refused])
    assert data is not None
    if data[0] != 354:
        raise aiosmtplib.SMTPDataError(data[0], data[1])
