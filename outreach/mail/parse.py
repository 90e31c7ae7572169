"""One email (its raw bytes) → ``ParsedEmail``: who, what it answers, the new text, what kind.

The standard library's ``email`` package (``policy.default``, headers kept as text until
read, see ``_RawHeaders``) reads the message; nothing
here raises on bad mail. A message that cannot be read properly (a parser failure, a broken
multipart structure, no sender) comes back with ``problem`` set and as much text as could
be had, so the sync stores it raw and flags it for a person instead of stopping.

Text: the ``text/plain`` body, else the HTML one converted (``html.py``); a charset Python
does not know, or a wrong one, falls back to Windows-1252, which is what mail labelled
ISO-8859-1 with bytes 0x80-0x9F (curly quotes, €) really is. The new text (quotes and
signatures removed, ``quotes.py``) is what the inbox reads; the full body is kept beside it.

Kind: ``bounce`` for an RFC 3464 delivery-status report, ``auto_reply`` for RFC 3834
``Auto-Submitted``, ``X-Autoreply``/``X-Autorespond``, ``Precedence: auto_reply|bulk|junk``,
an out-of-office subject (English, Dutch) or a mailer-daemon sender; ``reply`` otherwise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import EmailPolicy
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, Literal

from .html import html_to_text
from .quotes import new_text

MAX_MESSAGE_BYTES = 25 * 1024 * 1024  # larger mail is kept as metadata, its text truncated
HEAD_BYTES = 256 * 1024  # how much of an oversized message is read for its text
MAX_TEXT_CHARS = 60_000  # the inbox refuses texts over 64 KiB characters: stay under it

Kind = Literal["reply", "auto_reply", "bounce"]

_TOKEN = re.compile(r"\+([a-z2-7]{8,64})@")
_MSGID = re.compile(r"<([^<>\s]+)>")
_OUT_OF_OFFICE = re.compile(
    r"^\s*(?:(?:re|aw|antw|fw|fwd)\s*:\s*)*(?:"
    r"out\s+of\s+(?:the\s+)?office|automatic\s+reply|auto(?:matic)?[-\s]?(?:reply|response)"
    r"|autoreply|away\s+from\s+(?:the\s+)?office|on\s+vacation|on\s+holiday|i\s+am\s+away"
    r"|afwezig|automatisch\s+antwoord|niet\s+aanwezig|buiten\s+kantoor|met\s+vakantie"
    r"|ik\s+ben\s+(?:afwezig|er\s+niet)|afwezigheidsmelding|vakantiemelding"
    r")",
    re.IGNORECASE,
)
_DAEMONS = ("mailer-daemon@", "postmaster@")
# defects that mean the structure itself is broken, not a harmless oddity
_BROKEN = frozenset(
    {
        "StartBoundaryNotFoundDefect",
        "MultipartInvariantViolationDefect",
        "NoBoundaryInMultipartDefect",
        "MissingHeaderBodySeparatorDefect",
        "InvalidMultipartContentTransferEncodingDefect",
    }
)


class _RawHeaders(EmailPolicy):
    """``policy.default`` with header values handed back as their text.

    The default policy builds a structured header object on every read of a header
    (about 0.3 ms each; a reply's part tree reads ~16, the whole budget of 1,000 emails a
    second); this parser needs only a few decoded (``_decoded``) and the rest as text.
    The EmailMessage helpers that expect header objects (``get_body``,
    ``iter_attachments``) are therefore not used here.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        if "\r" in value or "\n" in value:
            value = re.sub(r"\r?\n[ \t]*", " ", value)
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_POLICY = _RawHeaders()


@dataclass(frozen=True)
class Attachment:
    name: str | None
    type: str
    size: int


@dataclass(frozen=True)
class Bounce:
    """One failed recipient of an RFC 3464 report."""

    recipient: str | None
    status: str | None  # "5.1.1"
    permanent: bool
    diagnostic: str | None
    original_message_id: str | None


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str  # the Message-ID without <>, or "sha256:…" of the bytes when it has none
    sender: str
    sender_name: str | None
    recipients: tuple[str, ...]  # the To, Cc, Delivered-To… headers as written
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None
    date: datetime | None
    text: str  # the new text
    full_text: str
    kind: Kind
    size: int
    attachments: tuple[Attachment, ...] = ()
    bounce: Bounce | None = None
    delayed: bool = False  # a DSN that only says delivery is delayed
    problem: str | None = None  # what was wrong with it (malformed, too large)
    malformed: bool = False  # could not be read properly: a person should look at it
    truncated: bool = False

    @property
    def reply_token(self) -> str | None:
        """The ``replies+TOKEN@`` token of the first recipient address that has one."""
        for address in self.recipients:
            found = _TOKEN.search(address.lower())
            if found:
                return found[1]
        return None

    def attachments_json(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "type": a.type, "size": a.size} for a in self.attachments]


def parse_email(raw: bytes, *, size: int | None = None) -> ParsedEmail:
    """Read one message. ``size`` is its full size when ``raw`` is only its first part
    (an oversized message); never raises for bad mail."""
    total = len(raw) if size is None else size
    oversize = total > MAX_MESSAGE_BYTES
    if oversize and len(raw) > HEAD_BYTES:
        raw = raw[:HEAD_BYTES]
    try:
        message = message_from_bytes(raw, policy=_POLICY)
        assert isinstance(message, EmailMessage)
        parsed = _read(message, raw, total)
    except Exception as exc:  # the email package's failures are many and undocumented
        parsed = _unreadable(raw, total, f"{type(exc).__name__}: {exc}")
    if oversize:
        megabytes = total / (1024 * 1024)
        parsed = _replace(
            parsed,
            problem=parsed.problem
            or f"message is {megabytes:.1f} MB, over the "
            f"{MAX_MESSAGE_BYTES // (1024 * 1024)} MB limit: kept as metadata, text truncated",
            truncated=True,
        )
    return parsed


def _replace(parsed: ParsedEmail, **changes: Any) -> ParsedEmail:
    from dataclasses import replace

    return replace(parsed, **changes)


def _read(message: EmailMessage, raw: bytes, total: int) -> ParsedEmail:
    broken = sorted({type(d).__name__ for d in _defects(message)} & _BROKEN)
    name, sender = _sender(message)
    subject = _decoded(_header(message, "subject"))
    kind: Kind = "reply"
    bounce = None
    delayed = False
    report_type = message.get_param("report-type")
    if message.get_content_type() == "multipart/report" and (
        isinstance(report_type, str) and report_type.lower() == "delivery-status"
    ):
        bounce, delayed = _delivery_status(message)
        kind = "bounce"
    elif _automatic(message, sender, subject):
        kind = "auto_reply"
    full, attachments = _body(message)
    full, cut = _limit(full)
    text, cut_new = _limit(new_text(full) if kind == "reply" else full.strip())
    problem = None
    if broken:
        problem = f"malformed MIME ({', '.join(broken)}): kept raw, read as far as possible"
        if not text.strip():
            full, _ = _limit(_raw_body(raw))
            text = full.strip()
    elif not sender:
        problem = "no sender address (From): kept raw"
    return ParsedEmail(
        message_id=_message_id(message, raw),
        sender=sender,
        sender_name=name or None,
        recipients=_recipients(message),
        in_reply_to=_first_id(_header(message, "in-reply-to")),
        references=tuple(_ids(_header(message, "references"))),
        subject=subject,
        date=_date(message),
        text=text,
        full_text=full,
        kind=kind,
        size=total,
        attachments=tuple(attachments),
        bounce=bounce,
        delayed=delayed,
        problem=problem,
        malformed=problem is not None,
        truncated=cut or cut_new,
    )


def _unreadable(raw: bytes, total: int, why: str) -> ParsedEmail:
    """What can be had from bytes the parser gave up on: headers if possible, raw text."""
    sender, subject, message_id = "", None, None
    try:
        head = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
        sender = parseaddr(str(head.get("from", "")))[1].lower()
        subject = str(head.get("subject", "")) or None
        message_id = _first_id(str(head.get("message-id", "")))
    except Exception:  # the raw bytes are kept whatever the headers are
        pass
    text, cut = _limit(raw.decode("utf-8", "replace"))
    return ParsedEmail(
        message_id=message_id or _digest(raw),
        sender=sender,
        sender_name=None,
        recipients=(),
        in_reply_to=None,
        references=(),
        subject=subject,
        date=None,
        text=text,
        full_text=text,
        kind="reply",
        size=total,
        problem=f"malformed email ({why[:200]}): kept raw",
        malformed=True,
        truncated=cut,
    )


def _raw_body(raw: bytes) -> str:
    """The bytes after the header block, as text: a broken message's best reading."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        _, found, body = raw.partition(separator)
        if found:
            return body.decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _defects(message: Message) -> Iterable[Any]:
    for part in message.walk():
        yield from part.defects


def _header(message: Message, name: str) -> str | None:
    try:
        value = message.get(name)
    except Exception:  # a header policy.default cannot fold or decode
        value = message.get_all(name, failobj=[None])[0] if hasattr(message, "get_all") else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _decoded(text: str | None) -> str | None:
    """An RFC 2047 encoded header (``=?iso-8859-1?q?Ren=E9e?=``) as text."""
    if not text or "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, ValueError, UnicodeDecodeError):
        return text


def _sender(message: Message) -> tuple[str, str]:
    raw = _header(message, "from") or _header(message, "sender") or ""
    name, address = parseaddr(raw)
    return (_decoded(name) or "").strip(), address.strip().lower()


def _recipients(message: Message) -> tuple[str, ...]:
    """The raw address headers, where the first plus-address token is looked for (a
    token-shaped local part is all that is read from them, so no address parsing)."""
    values: list[str] = []
    for name in ("delivered-to", "x-original-to", "envelope-to", "to", "cc"):
        values.extend(str(v) for v in message.get_all(name) or [])
    return tuple(values)


def _ids(text: str | None) -> list[str]:
    return _MSGID.findall(text or "")


def _first_id(text: str | None) -> str | None:
    found = _ids(text)
    if found:
        return found[0]
    bare = (text or "").strip().strip("<>")
    return bare if bare and " " not in bare else None


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _message_id(message: Message, raw: bytes) -> str:
    return _first_id(_header(message, "message-id")) or _digest(raw)


def _date(message: Message) -> datetime | None:
    text = _header(message, "date")
    if not text:
        return None
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _automatic(message: Message, sender: str, subject: str | None) -> bool:
    submitted = (_header(message, "auto-submitted") or "no").lower()
    if not submitted.startswith("no"):
        return True
    if _header(message, "x-autoreply") or _header(message, "x-autorespond"):
        return True
    precedence = (_header(message, "precedence") or "").lower()
    if precedence in ("auto_reply", "bulk", "junk"):
        return True
    if sender.startswith(_DAEMONS):
        return True
    return bool(subject and _OUT_OF_OFFICE.match(subject))


def _limit(text: str) -> tuple[str, bool]:
    if len(text) <= MAX_TEXT_CHARS:
        return text, False
    return text[:MAX_TEXT_CHARS], True


# -- body ---------------------------------------------------------------------------------


def _decode(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    charset = (part.get_content_charset() or "us-ascii").lower()
    if charset in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii") and re.search(
        rb"[\x80-\x9f]", payload
    ):
        # C1 control bytes are never meant in mail: it is Windows-1252 labelled wrongly
        charset = "windows-1252"
    try:
        return payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("windows-1252", "replace")


def _body(message: EmailMessage) -> tuple[str, list[Attachment]]:
    """The readable body (plain text, else HTML as text) and the attachments' metadata."""
    attachments: list[Attachment] = []
    plain: str | None = None
    markup: str | None = None
    for part in message.walk():
        ctype = part.get_content_type()
        if part.is_multipart() or ctype.startswith("multipart/"):
            continue
        disposition = (part.get_content_disposition() or "").lower()
        filename = part.get_filename()
        if disposition == "attachment" or filename or not ctype.startswith("text/"):
            if ctype in ("message/delivery-status", "message/rfc822", "text/rfc822-headers"):
                continue
            payload = part.get_payload(decode=True)
            attachments.append(
                Attachment(
                    name=filename,
                    type=ctype,
                    size=len(payload) if isinstance(payload, bytes) else 0,
                )
            )
            continue
        if ctype == "text/plain" and plain is None:
            plain = _decode(part)
        elif ctype == "text/html" and markup is None:
            markup = _decode(part)
    if plain is not None and plain.strip():
        return plain, attachments
    if markup is not None:
        return html_to_text(markup), attachments
    return plain or "", attachments


# -- delivery-status reports (RFC 3464) -----------------------------------------------------


def _delivery_status(message: EmailMessage) -> tuple[Bounce | None, bool]:
    """The first failed recipient of a DSN; (None, True) when it only reports a delay."""
    original = None
    blocks: list[Message] = []
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks.extend(p for p in payload if isinstance(p, Message))
            elif isinstance(payload, str):
                parser = BytesHeaderParser(policy=_POLICY)
                blocks.extend(
                    parser.parsebytes(chunk.encode("utf-8", "replace"))
                    for chunk in re.split(r"\n\s*\n", payload)
                    if chunk.strip()
                )
        elif ctype == "message/rfc822" and original is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original = _first_id(_header(inner[0], "message-id"))
        elif ctype == "text/rfc822-headers" and original is None:
            found = re.search(r"^message-id:\s*(\S+)", _decode(part), re.I | re.M)
            original = _first_id(found[1]) if found else None
    delayed = False
    for block in blocks:
        action = (_header(block, "action") or "").lower()
        status = (_header(block, "status") or "").split(" ")[0] or None
        if action == "delayed":
            delayed = True
            continue
        if action != "failed" and not (status or "").startswith(("4", "5")):
            continue
        recipient = _header(block, "final-recipient") or _header(block, "original-recipient")
        address = recipient.split(";", 1)[-1].strip().lower() if recipient else None
        diagnostic = _header(block, "diagnostic-code")
        if diagnostic and ";" in diagnostic:
            diagnostic = diagnostic.split(";", 1)[1].strip()
        return Bounce(
            recipient=address or None,
            status=status,
            permanent=(status or "5").startswith("5"),
            diagnostic=re.sub(r"\s+", " ", diagnostic)[:500] if diagnostic else None,
            original_message_id=original,
        ), False
    return None, delayed
