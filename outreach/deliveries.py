"""The delivery lifecycle: what a delivery is, its states and purposes, the moves between
states, new ids, and queueing a reply.

A delivery is one message to one customer on one channel. Campaign deliveries are planned
(``queued``, ``deferred`` to a window, or ``skipped`` with a reason), claimed by a send pass
(``sending``) and recorded once the provider answered. Replies (keyword confirmations,
follow-ups, automatic and agent replies) are queued one at a time and sent at once.

``MOVES_FROM`` is the one table of allowed state changes; the store makes each change
with one UPDATE guarded by the old states it lists, so two processes can never both move
the same delivery.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from . import clock
from .store import Store


class Status(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"  # waiting for its window to open
    SENDING = "sending"  # claimed by a send pass, not yet recorded
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    SKIPPED = "skipped"  # never sent, with a reason
    UNKNOWN = "unknown"  # the provider may or may not have it
    BOUNCED = "bounced"  # sent, then returned by the recipient's server (an email DSN)


class Purpose(StrEnum):
    CAMPAIGN = "campaign"
    KEYWORD = "keyword"  # the confirmation of a STOP, START or HELP
    FOLLOW_UP = "follow_up"
    AUTO_REPLY = "auto_reply"
    AGENT = "agent"


REPLY_PURPOSES = (Purpose.KEYWORD, Purpose.FOLLOW_UP, Purpose.AUTO_REPLY, Purpose.AGENT)

# new state → the states a delivery may be in to move there
MOVES_FROM: Mapping[Status, tuple[Status, ...]] = {
    # a send pass claims what is due
    Status.SENDING: (Status.QUEUED, Status.DEFERRED),
    # a send pass records what the provider answered; a provider's report can arrive
    # before that record, or after a crash left the delivery unknown
    Status.SENT: (Status.QUEUED, Status.SENDING, Status.UNKNOWN),
    Status.DELIVERED: (Status.QUEUED, Status.SENDING, Status.SENT, Status.UNKNOWN),
    Status.READ: (Status.QUEUED, Status.SENDING, Status.SENT, Status.DELIVERED, Status.UNKNOWN),
    Status.FAILED: (Status.QUEUED, Status.SENDING, Status.SENT),
    # refused right before the send (consent, address, template), or stale while it waited
    Status.SKIPPED: (Status.SENDING, Status.QUEUED, Status.DEFERRED),
    Status.DEFERRED: (Status.SENDING,),
    # not sent after all (stopped, retry later), a crash on an idempotent channel, or
    # ``run --retry-unknown``
    Status.QUEUED: (Status.SENDING, Status.UNKNOWN),
    # in flight when a run died: the provider may have it
    Status.UNKNOWN: (Status.SENDING,),
    # a delivery-status report can come back after any report of the send
    Status.BOUNCED: (Status.SENT, Status.DELIVERED, Status.READ, Status.UNKNOWN),
}

# what a provider's status report may move a delivery to (a report of "queued" never
# takes a delivery back from a send pass)
REPORTED = (Status.SENDING, Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED)


def reported_from(status: str) -> tuple[Status, ...]:
    """The states a provider's report of ``status`` may move a delivery from (none: the
    report changes nothing)."""
    return MOVES_FROM[Status(status)] if status in REPORTED else ()


# states that occupy a frequency-cap slot: sent, or on their way
CAP_STATES = (
    Status.QUEUED,
    Status.DEFERRED,
    Status.SENDING,
    Status.SENT,
    Status.DELIVERED,
    Status.READ,
    Status.UNKNOWN,
)
# states a send pass picks up once their not_before has come
DUE_STATES = MOVES_FROM[Status.SENDING]


class Delivery(NamedTuple):
    """One planned delivery, in the column order of the deliveries table.

    A tuple, so a plan of a million rows is bound by ``executemany`` as it is, without a
    conversion per row.
    """

    id: str
    campaign: str | None
    occurrence: str | None
    customer_id: str
    channel: str | None
    purpose: Purpose
    template: str
    counts_for_cap: int
    window: str | None
    status: Status
    reason: str | None
    not_before: str
    context: str | None
    created_at: str
    updated_at: str


def new_delivery_id() -> str:
    """20 hex characters: milliseconds since the epoch, then a per-process sequence.

    Time first, so that a million planned deliveries are appended to the primary-key
    index in order instead of scattered over it (random keys made large plans slow down
    as the index outgrew the page cache). The sequence starts at a random point in each
    process, so ids never repeat within a process (32 random bits per id did: about a
    0.3 % chance of a clash in a plan of a million) and two processes would have to start
    within the same millisecond and the same stretch of 2**32 to meet.
    """
    return f"{time.time_ns() // 1_000_000:012x}{next(_sequence) & 0xFFFFFFFF:08x}"


_sequence = itertools.count(secrets.randbits(32))


def enqueue_reply(
    store: Store,
    *,
    customer_id: str,
    channel: str,
    purpose: Purpose | str,
    template: str | None = None,
    text: str | None = None,
    extra: Mapping[str, Any] | None = None,
    campaign: str | None = None,
) -> str:
    """Queue one reply (not a campaign send) for immediate sending; the caller holds the txn.

    ``purpose``: keyword | follow_up | auto_reply | agent. A reply is sent at once,
    outside any campaign window, and does not count against frequency caps.
    """
    if purpose not in REPLY_PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(REPLY_PURPOSES)}")
    if (template is None) == (text is None):
        raise ValueError("give either a template or a text")
    at = clock.iso(clock.now())
    context: dict[str, Any] = {}
    if text is not None:
        context["text"] = text
    if extra:
        context["extra"] = dict(extra)
    delivery = Delivery(
        id=new_delivery_id(),
        campaign=campaign,
        occurrence=None,
        customer_id=customer_id,
        channel=channel,
        purpose=Purpose(purpose),
        template=template or "",
        counts_for_cap=0,
        window=None,
        status=Status.QUEUED,
        reason=None,
        not_before=at,
        context=json.dumps(context, default=str) if context else None,
        created_at=at,
        updated_at=at,
    )
    store.deliveries.insert_reply(delivery)
    return delivery.id
