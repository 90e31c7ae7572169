"""Email over SMTP with ``aiosmtplib``: STARTTLS, implicit TLS or plain, login from env.

Connections are pooled, not opened per message: the pool holds at most ``concurrency``
sessions (the most the sending engine will run at once), each logged in once and reused
for message after message. A pool rather than one shared session behind a lock, because
an SMTP session carries one transaction at a time and a lock would serialise the whole
channel on network round trips.

A session the server has since dropped (idle timeout, ``421`` "closing") is noticed on the
next send: the message is retried once on a fresh session, which is safe because the
server accepted nothing on the dead one. Reply codes map onto ``ProviderError``: ``4xx``
temporary (retryable), ``5xx`` permanent, both carrying the code; timeouts and lost
connections are retryable, except once the message text has gone out: without the
server's answer to it nobody knows whether it will be delivered, so the error is
*ambiguous* and the run records the delivery ``unknown`` instead of sending it again.
Messages are built by ``mime.render_email`` for the session they go out on: with
8-bit text parts and ``BODY=8BITMIME`` where the server offers 8BITMIME (RFC 6152;
aiosmtpd, Postfix, Exim, Gmail and SES do), quoted-printable where it does not. A message
is rendered before it waits for a session, the way the last session wanted it (the
sessions of one channel go to one server, so they agree), and again only if the session
it gets wants the other.

aiosmtplib opens, greets, secures and logs in each session; a message's transaction
(MAIL, RCPT, DATA, the text) then goes through ``smtp_session.Session``, raising the
aiosmtplib errors ``sendmail`` raises. ``sendmail`` parsed and quoted both addresses
twice over per message; here the sender's ``MAIL FROM`` is built once per channel and a
recipient is checked once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import ClassVar

import aiosmtplib
from aiosmtplib.email import parse_address

from ..config import ChannelConfig
from ..errors import ConfigError, ProviderError
from .base import (
    AddressKind,
    OutboundMessage,
    Provider,
    ProviderContext,
    SendResult,
)
from .http import optional_env, redact, setting
from .mime import (
    address_of,
    ascii_domain,
    domain_of,
    is_plain_address,
    message_id,
    needs_smtputf8,
    render_email,
    sender_header,
)
from .smtp_session import Session

_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class SmtpProvider(Provider):
    name: ClassVar[str] = "smtp"
    address_kind: ClassVar[AddressKind] = "email"
    settings: ClassVar[frozenset[str]] = frozenset(
        {"host", "port", "security", "username_env", "password_env", "from", "reply_to"}
    )
    required_settings: ClassVar[frozenset[str]] = frozenset({"host", "from"})

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        super().__init__(channel, context)
        where = f"[channels.{channel.name}]"
        self.host = setting(channel, "host")
        self.security = str(channel.settings.get("security", "starttls"))
        if self.security not in _DEFAULT_PORTS:
            raise ConfigError(
                f'{where} security: "{self.security}" is not one of starttls, tls, none'
            )
        port = channel.settings.get("port", _DEFAULT_PORTS[self.security])
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"{where} port: expected a port number, got {port!r}")
        self.port = port
        sender = setting(channel, "from")
        try:
            self.sender = sender_header(sender, context.sender_name, sender)
        except ConfigError as exc:
            raise ConfigError(f"{where} {exc}") from None
        self.envelope_from = ascii_domain(address_of(sender))
        self.domain = domain_of(self.envelope_from)
        try:
            self._mail_from = b"MAIL FROM:" + _quoted(self.envelope_from)
        except ValueError:
            raise ConfigError(f'{where} from: "{sender}" cannot travel in MAIL FROM') from None
        reply_to = channel.settings.get("reply_to")
        self.reply_to = str(reply_to) if reply_to else None
        self.username = optional_env(channel, context.env, "username_env")
        self.password = optional_env(channel, context.env, "password_env")
        if (self.username is None) != (self.password is None):
            raise ConfigError(f"{where}: set both username_env and password_env, or neither")
        self._secrets = tuple(s for s in (self.password, self.username) if s)
        self._size = max(1, channel.concurrency)
        self._idle: list[Session] = []
        self._slots: asyncio.Semaphore | None = None
        # whether the last session offered 8BITMIME: what the next message is rendered for
        self._eight_bit = True
        self.sessions_opened = 0

    # -- sessions -----------------------------------------------------------------

    async def _connect(self) -> Session:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.channel.timeout,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
        )
        try:
            await client.connect()
            if self.username is not None and self.password is not None:
                await client.login(self.username, self.password)
            elif client.is_ehlo_or_helo_needed:
                await _greet(client)
            session = Session(client, self.channel.timeout)
        except BaseException:
            client.close()
            raise
        self.sessions_opened += 1
        return session

    async def _acquire(self) -> tuple[Session, bool]:
        """A session and whether it was reused (it may have died while idle)."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
            client.close()
        return await self._connect(), False

    def _release(self, client: Session, healthy: bool) -> None:
        if healthy and client.is_connected:
            self._idle.append(client)
        else:
            client.close()

    # -- sending ------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        eight_bit = self._eight_bit
        text, size, body8 = self._render(message, eight_bit)
        recipient = ascii_domain(address_of(message.to))
        try:
            if "@" not in recipient:
                raise ValueError(recipient)
            rcpt_to = b"RCPT TO:" + _quoted(recipient)
        except ValueError:
            raise ProviderError(
                f'smtp: "{message.to}" is not an email address', retryable=False, code="address"
            ) from None
        utf8 = needs_smtputf8(recipient)
        async with self._slots:
            for attempt in (1, 2):
                try:
                    client, reused = await self._acquire()
                except aiosmtplib.SMTPException as exc:
                    raise self._error(exc, "connecting") from None
                except OSError as exc:
                    raise ProviderError(
                        f"smtp: cannot connect to {self.host}:{self.port} ({exc.strerror or exc})"
                        "; will retry",
                        retryable=True,
                        code="connection",
                    ) from None
                if client.eight_bit != eight_bit:
                    eight_bit = self._eight_bit = client.eight_bit
                    text, size, body8 = self._render(message, eight_bit)
                try:
                    await client.transact(self._mail_from, rcpt_to, text, size, utf8, body8)
                except aiosmtplib.SMTPNotSupported as exc:
                    # refused before the envelope: the session is still good
                    self._release(client, healthy=True)
                    if utf8 and "SMTPUTF8" in str(exc):
                        raise ProviderError(
                            f"smtp: {recipient} has a non-ASCII mailbox name and "
                            f"{self.host} does not offer SMTPUTF8; ask the customer for an "
                            "ASCII address or use a server that offers SMTPUTF8",
                            retryable=False,
                            code="address_needs_smtputf8",
                        ) from None
                    raise self._error(exc, "sending") from None
                except aiosmtplib.SMTPException as exc:
                    code = _reply_code(exc)
                    if client.text_sent and code is None:
                        self._release(client, healthy=False)
                        raise self._lost_answer(type(exc).__name__) from None
                    dropped = isinstance(exc, aiosmtplib.SMTPServerDisconnected) or code == 421
                    # a refused transaction leaves a usable session; a timeout does not
                    usable = code is not None and not dropped and await _reset(client)
                    self._release(client, healthy=usable)
                    if dropped and reused and attempt == 1:
                        continue
                    raise self._error(exc, "sending") from None
                except OSError as exc:
                    self._release(client, healthy=False)
                    if client.text_sent:
                        raise self._lost_answer(type(exc).__name__) from None
                    raise ProviderError(
                        f"smtp: connection to {self.host} failed ({type(exc).__name__}); "
                        "will retry",
                        retryable=True,
                        code="connection",
                    ) from None
                self._release(client, healthy=True)
                return SendResult(provider_message_id=message_id(message.delivery_id, self.domain))
        raise AssertionError("the loop above returns or raises")

    def _render(self, message: OutboundMessage, eight_bit: bool) -> tuple[bytes, int, bool]:
        """The DATA text of ``message``, its size, and whether it needs ``BODY=8BITMIME``:
        rendered with ``eight_bit``, its bytes are not ASCII only where a part is 8-bit
        (or a header UTF-8, which is 8-bit too)."""
        data = render_email(
            message,
            sender=self.sender,
            reply_to=self.reply_to,
            message_id_domain=self.domain,
            eight_bit=eight_bit,
        )
        text, size = _data_text(data)
        return text, size, eight_bit and not data.isascii()

    def _lost_answer(self, what: str) -> ProviderError:
        """No reply came to the message text: the server may have taken it, so a resend
        could deliver it twice. The run records the delivery ``unknown``."""
        return ProviderError(
            f"smtp: {what} after the message was sent to {self.host}, before its answer",
            retryable=False,
            ambiguous=True,
            code="no_answer",
        )

    def _error(self, exc: aiosmtplib.SMTPException, doing: str) -> ProviderError:
        """Map an aiosmtplib error: 4xx retryable, 5xx permanent, lost sessions retryable."""
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            exc = exc.recipients[0]
        if isinstance(exc, aiosmtplib.SMTPNotSupported) or "STARTTLS" in str(exc):
            return ProviderError(
                f"smtp: {self.host} does not support it ({redact(exc.message, self._secrets)}); "
                "check security in the channel settings",
                retryable=False,
                code="tls" if self.security != "none" else "unsupported",
            )
        if isinstance(exc, aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPConnectError):
            return ProviderError(
                f"smtp: {type(exc).__name__} while {doing} {self.host}:{self.port}; will retry",
                retryable=True,
                code="timeout" if isinstance(exc, aiosmtplib.SMTPTimeoutError) else "connection",
            )
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            return ProviderError(
                f"smtp: {self.host} closed the connection while {doing}; will retry",
                retryable=True,
                code="connection",
            )
        code = _reply_code(exc)
        text = redact(" ".join(str(getattr(exc, "message", "") or "").split()), self._secrets)
        if code is not None:
            what = (
                "login refused"
                if isinstance(exc, aiosmtplib.SMTPAuthenticationError)
                else ("temporary failure" if 400 <= code < 500 else "refused")
            )
            return ProviderError(
                f"smtp: {self.host} {what} while {doing}: {code} {text}".rstrip(),
                retryable=400 <= code < 500,
                code=str(code),
            )
        return ProviderError(
            f"smtp: {type(exc).__name__} while {doing} {self.host}: {text}".rstrip(),
            retryable=True,
            code="smtp",
        )

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            # a session already gone has nothing to say goodbye to; quit closes it anyway
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO where a server takes no EHLO (what ``sendmail`` would do first)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


# every line end (CRLF, a lone LF or CR), each written as CRLF
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
# what may not stand in a path: white space and controls would end the command or start a
# parameter, brackets the path (checked here: older aiosmtplib releases let them through)
_UNSAFE = re.compile(r"[\x00-\x20\x7f<>]")


def _quoted(address: str) -> bytes:
    """``<address>`` for MAIL FROM/RCPT TO; ValueError if it could smuggle in a parameter
    or a command. A plain ``local@domain`` needs no parsing, the rest goes through
    aiosmtplib's parser."""
    if not is_plain_address(address):
        address = parse_address(address)
        if _UNSAFE.search(address):
            raise ValueError(address)
    return f"<{address}>".encode()


def _data_text(data: bytes) -> tuple[bytes, int]:
    """The DATA text of a message: CRLF line ends, lines starting with a dot doubled, the
    final ``.`` line (RFC 5321 4.5.2); and its size before the dots, as SIZE counts it."""
    # find, not ``in``: bytes' ``in`` first tries its operand as an integer, raising and
    # clearing a TypeError (2 k instructions) every time
    if data.find(b"\r") >= 0:
        data = _LINE_ENDS.sub(b"\r\n", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
    else:
        # render_email writes LF only: every LF becomes CRLF
        data = data.replace(b"\n", b"\r\n")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
    size = len(data)
    if data.find(b"\n.") >= 0:
        data = data.replace(b"\n.", b"\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n", size


def _reply_code(exc: aiosmtplib.SMTPException) -> int | None:
    """The SMTP reply code behind an error (the first refused recipient's), if any."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) and code > 0 else None


async def _reset(client: Session) -> bool:
    """RSET after a refused transaction so the session can carry the next one."""
    return client.is_connected and await client.reset()
