"""``ParsedEmail`` → the inbox's events: a reply or automatic reply as ``InboundMessage``,
a bounce as a ``StatusEvent("bounced")``, a delay notice as nothing.

The new text is what the inbox reads (keywords, survey answers); the full body, the raw
message (up to the size limit) and the attachments' metadata travel in ``extra`` and are
stored beside it.
"""

from __future__ import annotations

from datetime import datetime

from .. import clock
from ..channels.base import InboundEvent, InboundMessage, StatusEvent
from .parse import MAX_MESSAGE_BYTES, ParsedEmail, parse_email

UNKNOWN_SENDER = "unknown-sender@invalid"  # a message without a From still needs a contact


def email_events(
    raw: bytes, channel: str, *, size: int | None = None, now: datetime | None = None
) -> list[InboundEvent]:
    """The events of one raw email that arrived on ``channel``."""
    return events_of(parse_email(raw, size=size), raw, channel, now=now)


def events_of(
    mail: ParsedEmail, raw: bytes, channel: str, *, now: datetime | None = None
) -> list[InboundEvent]:
    now = now or clock.now()
    # a Date in the future (a wrong clock) would hide the reply from the surveys it answers
    received = min(mail.date, now) if mail.date is not None else now
    if mail.kind == "bounce":
        if mail.bounce is None:
            return []  # a delay notice or a report without a failed recipient
        return [
            StatusEvent(
                channel=channel,
                provider_message_id=mail.bounce.original_message_id or "",
                status="bounced",
                at=received,
                error_code=mail.bounce.status,
                error_message=mail.bounce.diagnostic,
                recipient=mail.bounce.recipient,
                permanent=mail.bounce.permanent,
            )
        ]
    text = mail.text
    if mail.truncated:
        text = text[: 60_000 - 80] + "\n[truncated: the full message was too long to keep]"
    extra = {
        "kind": "auto_reply" if mail.kind == "auto_reply" else "reply",
        "full_text": mail.full_text,
        "raw": None if mail.size > MAX_MESSAGE_BYTES else raw,
        "size": mail.size,
        "attachments": mail.attachments_json(),
        "problem": mail.problem,
    }
    return [
        InboundMessage(
            channel=channel,
            address=mail.sender or UNKNOWN_SENDER,
            text=text,
            external_id=mail.message_id,
            received_at=received,
            profile_name=mail.sender_name,
            in_reply_to=mail.in_reply_to,
            reply_token=mail.reply_token,
            references=mail.references,
            subject=mail.subject,
            automatic=mail.kind == "auto_reply",
            attention="unreadable_email" if mail.malformed else None,
            extra=extra,
        )
    ]
