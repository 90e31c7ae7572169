"""RFC 5322 messages from an ``OutboundMessage``, shared by the smtp and outbox providers.

One pure function builds the whole message, so a mail written to the outbox and one sent
over SMTP carry the same headers:

- ``Message-ID`` is ``<delivery-id@domain>`` (the sender's domain): replies quote it in
  ``In-Reply-To``/``References``, a second route to the conversation;
- ``Reply-To`` is the plus-address ``local+TOKEN@domain`` of the reply address when the
  message has a ``reply_token``, so a reply names its conversation;
- ``List-Unsubscribe`` + ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058)
  when the message has an unsubscribe URL;
- ``multipart/alternative`` text + HTML when there is HTML, plain text otherwise.
"""

from __future__ import annotations

import binascii
import io
import secrets
from email._policybase import Compat32
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import Any

from .. import clock
from ..errors import ConfigError
from .base import OutboundMessage


@lru_cache(maxsize=4096)
def address_of(text: str) -> str:
    """The bare ``local@domain`` of ``"Name <local@domain>"`` (or of a bare address)."""
    return parseaddr(text)[1]


def domain_of(address: str) -> str:
    """The domain of an address (``Name <a@example.com>`` → ``example.com``)."""
    bare = address_of(address)
    if "@" not in bare:
        raise ConfigError(f'"{address}" is not an email address; write it like hello@example.com')
    return bare.rsplit("@", 1)[1].lower()


def plus_address(address: str, token: str) -> str:
    """``local+TOKEN@domain`` from ``local@domain`` (display name dropped)."""
    bare = address_of(address)
    if "@" not in bare:
        raise ConfigError(f'"{address}" is not an email address; write it like replies@example.com')
    local, domain = bare.rsplit("@", 1)
    # one token only: a reply address that already carries a tag gets it replaced
    local = local.split("+", 1)[0]
    return f"{local}+{token}@{domain}"


def build_email(
    message: OutboundMessage,
    *,
    sender: str,
    reply_to: str | None = None,
    message_id_domain: str | None = None,
) -> Message:
    """The RFC 5322 message for ``message``, from ``sender`` (``"Name <addr>"``).

    ``reply_to`` is the reply address (plus-addressed with the message's ``reply_token``);
    without it, a message with a reply token is plus-addressed from the sender's address.

    Built with the ``compat32`` MIME classes and explicit RFC 2047 encoding: the modern
    ``EmailMessage`` API parses every header it is given into objects, which cost about a
    millisecond per message — more than everything else a send does together.
    """
    text = _text_part(message.body, "plain")
    if message.html:
        # a boundary of our own: the generator would compile a regex per message for one
        mail: Message = MIMEMultipart("alternative", boundary=f"=_{secrets.token_hex(12)}")
        mail.attach(text)
        mail.attach(_text_part(message.html, "html"))
    else:
        mail = text
    mail["From"] = _address_header(sender)
    mail["To"] = _recipient(message)
    mail["Subject"] = _header(message.subject or "")
    mail["Date"] = format_datetime(clock.now())
    domain = message_id_domain or domain_of(sender)
    mail["Message-ID"] = f"<{message.delivery_id}@{domain}>"
    if message.reply_token:
        mail["Reply-To"] = plus_address(reply_to or sender, message.reply_token)
    elif reply_to:
        mail["Reply-To"] = _address_header(reply_to)
    if message.unsubscribe_url:
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail["X-Outreach-Delivery"] = message.delivery_id
    return mail


def email_bytes(mail: Message) -> bytes:
    """The message as bytes for the wire or a file, without refolding its headers.

    Headers are already encoded (and non-ASCII ones folded by ``Header``); folding them all
    again in the generator is most of what flattening a message costs.
    """
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_PREFOLDED).flatten(mail)
    return out.getvalue()


class _Prefolded(Compat32):
    """compat32, minus refolding: every header here is already encoded ASCII."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and value.isascii():
            return f"{name}: {value.replace(chr(10), self.linesep)}{self.linesep}"
        return str(super()._fold(name, value, sanitize))  # type: ignore[misc]


_PREFOLDED = _Prefolded()


def _text_part(text: str, subtype: str) -> Message:
    """A UTF-8 text part, quoted-printable (readable in the raw message, unlike base64).

    Encoded with binascii's C quoted-printable codec; ``MIMEText`` encodes in pure Python
    and re-parses its own Content-Type on the way, several times slower.
    """
    part = Message()
    part["MIME-Version"] = "1.0"
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    if not text.endswith("\n"):
        text += "\n"
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")
    part.set_payload(encoded)
    return part


def _header(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not plain ASCII."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


@lru_cache(maxsize=256)
def _address_header(value: str) -> str:
    name, address = parseaddr(value)
    if not name or name.isascii():
        return value
    return formataddr((name, address), charset="utf-8")


def _recipient(message: OutboundMessage) -> str:
    # a stored address is bare (no display name), so "<" is enough to tell the two apart
    if message.customer_name and "<" not in message.to:
        bare = address_of(message.to)
        if "@" in bare:
            return formataddr((message.customer_name, bare), charset="utf-8")
    return message.to
