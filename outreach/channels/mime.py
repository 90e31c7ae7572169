"""RFC 5322 messages from an ``OutboundMessage``, shared by the smtp and outbox providers.

One pure function builds the whole message, so a mail written to the outbox and one sent
over SMTP carry the same headers:

- ``Message-ID`` is ``<delivery-id@domain>`` (the sender's domain): replies quote it in
  ``In-Reply-To``/``References``, a second route to the conversation;
- ``In-Reply-To``/``References`` on a reply, so it threads with what it answers;
- ``Reply-To`` is the plus-address ``local+TOKEN@domain`` of the reply address when the
  message has a ``reply_token``, so a reply names its conversation;
- ``List-Unsubscribe`` + ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058)
  when the message has an unsubscribe URL;
- ``multipart/alternative`` text + HTML when there is HTML, plain text otherwise.

Addresses: display names are quoted or RFC 2047-encoded by ``formataddr`` (``"Acme, Inc."``
needs quotes); a non-ASCII domain is written in IDNA (``xn--…``), which every server takes;
a non-ASCII local part (``josé@…``) stays UTF-8 (RFC 6532), so the message bytes are UTF-8
and the smtp provider sends it with SMTPUTF8 (see ``needs_smtputf8``).

Bodies: a text part that is plain ASCII goes as it is (``7bit``); one that is not goes
as it is (``8bit``, UTF-8) where the message travels to a server that offers 8BITMIME
(RFC 6152; the smtp provider asks for ``eight_bit`` then and sends ``BODY=8BITMIME``),
and quoted-printable everywhere else, the outbox's ``.eml`` files included, whose bodies
thus stay ASCII. A part with a NUL or a line of more than 998 octets (RFC 5322 2.1.1) is
quoted-printable in every case: neither may travel unencoded. Encoding nothing is the
point: quoted-printable cost a message 100 k instructions, 7 % of a run's sending, and
made an NPS email's HTML 7 % longer (``=3D`` for every attribute's ``=``, soft line
breaks) for the receiving server to read and undo.
"""

from __future__ import annotations

import binascii
import random
import re
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from .. import clock
from ..errors import ConfigError
from .base import OutboundMessage

_random = random.Random()  # MIME boundaries only need to be unlikely in the text, not secret


# "Name <addr>" where the name may hold specials unquoted ("Acme, Inc. <hello@…>"), as
# people write it in a settings file; parseaddr would read that as two addresses
_NAMED = re.compile(r"\s*(?P<name>[^<>]*?)\s*<(?P<address>[^<>\s]+)>\s*")
# a dot-atom ``local@domain`` of ASCII letters, digits and RFC 5322 atext: parseaddr
# gives it back as it is, so it needs no parsing (one parse cost a message 15 µs)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def is_plain_address(text: str) -> bool:
    """Whether ``text`` is a bare dot-atom ``local@domain``: nothing to parse or quote."""
    return _PLAIN.fullmatch(text) is not None


@lru_cache(maxsize=4096)
def split_mailbox(text: str) -> tuple[str, str]:
    """(display name, bare address) of ``"Name <local@domain>"`` or of a bare address."""
    if _PLAIN.fullmatch(text):
        return "", text
    match = _NAMED.fullmatch(text)
    if match:
        name = match["name"]
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return name, match["address"]
    return parseaddr(text)


def address_of(text: str) -> str:
    """The bare ``local@domain`` of ``"Name <local@domain>"`` (or of a bare address)."""
    return split_mailbox(text)[1]


def ascii_domain(address: str) -> str:
    """``address`` with a non-ASCII domain written in IDNA (``bücher.example`` →
    ``xn--bcher-kva.example``); anything that is not a valid IDN stays as written."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address


def needs_smtputf8(address: str) -> bool:
    """Whether ``address`` can only travel with SMTPUTF8 (a non-ASCII local part)."""
    return not ascii_domain(address).isascii()


def mailbox(name: str | None, address: str) -> str:
    """A header mailbox: ``"Acme, Inc." <hello@acme.example>``, the name quoted or
    RFC 2047-encoded as it needs, a non-ASCII domain in IDNA."""
    address = ascii_domain(address)
    if not name:
        return address
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    # formataddr takes only ASCII addresses: quote the name with it, then add the address
    quoted = formataddr((name, "x@x"), charset="utf-8").removesuffix(" <x@x>")
    return f"{quoted} <{address}>"


def sender_header(setting: str | None, sender_name: str, default: str) -> str:
    """The ``From`` of a channel: its ``from`` setting (``addr`` or ``Name <addr>``), named
    ``sender_name`` when the setting has no name; ConfigError when it is no address."""
    name, address = split_mailbox(setting or default)
    if address.count("@") != 1 or not all(address.split("@")):
        raise ConfigError(
            f'from: "{setting}" is not an email address; write it like '
            '"Acme <hello@example.com>" or hello@example.com'
        )
    return mailbox(name or sender_name, address)


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


def message_id(delivery_id: str, domain: str) -> str:
    """The ``Message-ID`` of a delivery: replies quote it, so it leads back to the delivery."""
    return f"<{delivery_id}@{domain}>"


def render_email(
    message: OutboundMessage,
    *,
    sender: str,
    reply_to: str | None = None,
    message_id_domain: str | None = None,
    eight_bit: bool = False,
) -> bytes:
    """The RFC 5322 bytes of ``message``, from ``sender`` (``"Name <addr>"``).

    ``reply_to`` is the reply address (plus-addressed with the message's ``reply_token``);
    without it, a message with a reply token is plus-addressed from the sender's address.
    ``eight_bit``: the message travels with ``BODY=8BITMIME``, so a non-ASCII text part
    may go unencoded (``8bit``); the bytes are then not ASCII exactly when some part is
    ``8bit`` or a header is UTF-8 (which needs SMTPUTF8 in any case).

    The shape is always one of two (a text part, or multipart/alternative text + HTML), so
    the message is written straight to bytes: every header is encoded by the email
    package's own helpers (``Header``, ``formataddr``, ``format_datetime``) and every body
    that needs encoding by binascii's quoted-printable codec, but no ``Message`` tree is
    built and flattened, which cost 75 µs of the 90 µs a message took.
    tests/test_channels_mime.py parses the result back with the email package for any
    text, in both modes.
    """
    headers = [
        ("From", _address_header(sender)),
        ("To", _recipient(message)),
        ("Subject", _header(message.subject or "")),
        ("Date", _date(clock.now().replace(microsecond=0))),
        ("Message-ID", message_id(message.delivery_id, message_id_domain or domain_of(sender))),
    ]
    if message.reply_token:
        headers.append(("Reply-To", plus_address(reply_to or sender, message.reply_token)))
    elif reply_to:
        headers.append(("Reply-To", _address_header(reply_to)))
    thread = _thread(message, message_id_domain or domain_of(sender))
    if thread:
        # oldest first (RFC 5322 3.6.4): the email of ours they answered, then theirs
        headers.append(("In-Reply-To", thread[-1]))
        headers.append(("References", " ".join(thread)))
    if message.unsubscribe_url:
        headers.append(("List-Unsubscribe", f"<{message.unsubscribe_url}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.append(("X-Outreach-Delivery", message.delivery_id))
    top = "".join(f"{name}: {_one_line(value)}\n" for name, value in headers).encode()
    text = _text_part(message.body, "plain", eight_bit)
    # UTF-8 only where an address has a non-ASCII local part (RFC 6532) or a part is 8bit
    if not message.html:
        return b"%s%s\n%s" % (text[0], top, text[1])
    # a random boundary: no quoted-printable line can contain it ("=_" is not valid QP),
    # and an unencoded text, written before the boundary is drawn, only by a 1 in 2**96
    boundary = b"=_%024x" % _random.getrandbits(96)
    html = _text_part(message.html, "html", eight_bit)
    return _MULTIPART % (boundary, top, boundary, *text, boundary, *html, boundary)


# headers, then a text and an HTML part, each a (headers, body) pair, between boundaries
_MULTIPART = (
    b'Content-Type: multipart/alternative; boundary="%s"\nMIME-Version: 1.0\n'
    b"%s\n--%s\n%s\n%s\n--%s\n%s\n%s\n--%s--\n"
)


def _thread(message: OutboundMessage, domain: str) -> list[str]:
    """The Message-IDs a reply refers to: the delivery it answers, the customer's email."""
    thread = []
    if message.answers_delivery:
        thread.append(message_id(message.answers_delivery, domain))
    if message.in_reply_to and "@" in message.in_reply_to and message.in_reply_to.isascii():
        thread.append(f"<{message.in_reply_to.strip('<> ')}>")
    return thread


def _text_part(text: str, subtype: str, eight_bit: bool) -> tuple[bytes, bytes]:
    """(headers, body) of a UTF-8 text part: as it is where it may travel so (``7bit``
    ASCII; ``8bit`` with ``eight_bit``), else quoted-printable (readable in the raw message,
    unlike base64) by binascii's C codec. Line breaks become LF first: the codec would
    otherwise keep a CRLF or a bare CR in the middle of an LF message, and the smtp
    provider writes every LF as CRLF."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    data = text.encode("utf-8")
    is_ascii = text.isascii()
    # "\0" in the text, not b"\0" in the bytes: bytes' ``in`` first tries its operand as
    # an integer, raising and clearing a TypeError (2 k instructions) every time
    if (is_ascii or eight_bit) and "\0" not in text and _lines_fit(data):
        return _PART_HEADERS[subtype, "7bit" if is_ascii else "8bit"], data
    return _PART_HEADERS[subtype, "quoted-printable"], binascii.b2a_qp(data, istext=True)


# the most octets a line may hold, its CRLF not counted (RFC 5321 4.5.3.1.6, RFC 5322 2.1.1)
_LINE_LIMIT = 998
_CHUNK = (_LINE_LIMIT + 2) // 2
_PART_HEADERS = {
    (subtype, encoding): (
        f'Content-Type: text/{subtype}; charset="utf-8"\nMIME-Version: 1.0\n'
        f"Content-Transfer-Encoding: {encoding}\n"
    ).encode()
    for subtype in ("plain", "html")
    for encoding in ("7bit", "8bit", "quoted-printable")
}


def _lines_fit(data: bytes) -> bool:
    """Whether no line of ``data`` (which ends with a line break) is over the limit. Such a
    line would hold one of the chunks of half the limit that ``data`` is cut into, whole:
    a line break in every chunk proves there is none without splitting out the lines,
    which cost a message 10 k instructions."""
    if len(data) <= _LINE_LIMIT:
        return True
    for start in range(0, len(data), _CHUNK):
        if data.find(b"\n", start, start + _CHUNK) < 0:
            return max(map(len, data.split(b"\n"))) <= _LINE_LIMIT
    return True


def _one_line(value: str) -> str:
    """A header value that cannot start a header of its own: bare CR/LF become spaces,
    while the folds ``Header`` makes (a line break followed by white space) stay."""
    if "\r" not in value and "\n" not in value:
        return value
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = lines[0]
    for line in lines[1:]:
        out += ("\n" + line) if line[:1] in (" ", "\t") else (" " + line)
    return out


def _header(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not plain ASCII, folded when long."""
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "us-ascii" if value.isascii() else "utf-8").encode()


@lru_cache(maxsize=4)
def _date(second: datetime) -> str:
    """The Date header of a second: every message sent in it has the same one (formatting
    it anew cost a message 5 µs)."""
    return format_datetime(second)


@lru_cache(maxsize=256)
def _address_header(value: str) -> str:
    name, address = split_mailbox(value)
    return mailbox(name, address) if address else value


def _recipient(message: OutboundMessage) -> str:
    # a stored address is bare (no display name), so "<" is enough to tell the two apart
    if "<" not in message.to:
        bare = message.to if " " not in message.to else address_of(message.to)
        if "@" in bare:
            return mailbox(message.customer_name, bare)
        return message.to
    return _address_header(message.to)
