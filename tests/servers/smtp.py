"""A loopback SMTP server: aiosmtpd's Controller on 127.0.0.1, port 0, recording envelopes.

It can require AUTH (any mechanism aiosmtpd offers, checked against one user), refuse
recipients with a chosen reply (``450 …`` temporary, ``550 …`` permanent), drop every
open session (an idle-timeout disconnect) to exercise reconnects, and take a message then
hang up before answering it (the client cannot know whether it was accepted). It can
also limit the message size it announces (SIZE), speak only HELO, as servers from
before ESMTP do, or require TLS (STARTTLS or implicit) with a given certificate. It
offers 8BITMIME, as aiosmtpd does, unless ``eight_bit_mime`` is off (for the sessions
opened from then on): it then works as a 7-bit server, aiosmtpd's ``decode_data`` mode,
which announces no 8BITMIME, refuses a ``BODY`` parameter and takes only ASCII text.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import warnings
from dataclasses import dataclass
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any
    mail_options: list[str]

    @property
    def message(self) -> EmailMessage:
        end = re.search(rb"\r?\n\r?\n", self.data)
        head = self.data[: end.start()] if end else self.data
        if head.isascii():
            parsed = message_from_bytes(self.data, policy=policy.default)
        else:
            # an SMTPUTF8 message has UTF-8 headers (RFC 6532), which the parser reads from
            # text, and may have 8bit parts, which it decodes by their charset only from
            # bytes (kept as surrogates in the text, as message_from_bytes does)
            body = self.data[len(head) :].decode("ascii", "surrogateescape")
            parsed = message_from_string(head.decode("utf-8") + body, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class RecordingHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_reply: str | None = None  # e.g. "550 5.1.1 no such user"
        self.rcpt_replies_left = 0
        self.hang_up_after_data = 0  # messages to take without answering, then disconnect

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply and self.rcpt_replies_left != 0:
            self.rcpt_replies_left -= 1
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.received.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                data,
                session.peer,
                list(envelope.mail_options),
            )
        )
        if self.hang_up_after_data:
            self.hang_up_after_data -= 1
            assert server.transport is not None
            server.transport.close()
        return "250 Message accepted for delivery"


class _HeloOnly(SMTP):
    """A server from before ESMTP: EHLO is an unknown command, HELO works."""

    async def smtp_EHLO(self, hostname: str) -> None:
        await self.push("502 5.5.2 Error: command not recognized")


class SmtpEmulator(Controller):
    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        smtputf8: bool = False,
        size_limit: int | None = None,
        esmtp: bool = True,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        eight_bit_mime: bool = True,
    ) -> None:
        self.handler_obj = RecordingHandler()
        self.user = username
        self.secret = password
        self.sessions: list[SMTP] = []
        self.esmtp = esmtp
        self.eight_bit_mime = eight_bit_mime
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if size_limit is not None:
            kwargs["data_size_limit"] = size_limit
        if starttls is not None:
            kwargs |= {"tls_context": starttls, "require_starttls": True}
        if username is not None:
            kwargs |= {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        super().__init__(
            self.handler_obj, hostname="127.0.0.1", port=0, ssl_context=implicit_tls, **kwargs
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.user
            and data.password.decode() == self.secret
        )
        return AuthResult(success=ok, handled=False)

    def factory(self) -> SMTP:
        # aiosmtpd offers 8BITMIME unless it decodes the text (and then takes only ASCII)
        self.SMTP_kwargs["decode_data"] = not self.eight_bit_mime
        with warnings.catch_warnings():
            # AUTH without TLS is what this loopback test server is for
            warnings.simplefilter("ignore", UserWarning)
            smtp: SMTP = (
                super().factory()  # type: ignore[no-untyped-call]
                if self.esmtp
                else _HeloOnly(self.handler, **self.SMTP_kwargs)
            )
        self.sessions.append(smtp)
        return smtp

    def stop(self, no_assert: bool = False) -> None:
        """Stop the server; a second stop (a test stopped it early) does nothing."""
        if self._thread is not None:
            super().stop(no_assert)

    def _trigger_server(self) -> None:
        # port 0: learn the port the OS chose before the base class connects to it
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]

    @property
    def received(self) -> list[Received]:
        return self.handler_obj.received

    def refuse_recipients(self, reply: str, times: int = -1) -> None:
        self.handler_obj.rcpt_reply = reply
        self.handler_obj.rcpt_replies_left = times

    def drop_sessions(self) -> None:
        """Close every open session from the server side, as an idle timeout does."""

        async def close() -> None:
            for smtp in self.sessions:
                if smtp.transport is not None and not smtp.transport.is_closing():
                    smtp.transport.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)

    @property
    def peers(self) -> set[Any]:
        return {r.peer for r in self.received}
