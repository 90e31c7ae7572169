"""A bounce's effects: its delivery becomes ``bounced`` with the reason, and a permanent
failure stops sending to that address (an ``opted_out`` ledger row, source
``provider:bounce``), so the next campaign skips it. A bounce is never a conversation
message: nobody wrote it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import clock
from ..channels.base import StatusEvent
from ..config import Config
from ..deliveries import MOVES_FROM, Status
from ..store import Store

if TYPE_CHECKING:
    from ..conversations.inbox import InboundSummary

_BOUNCE_FROM = tuple(str(s) for s in MOVES_FROM[Status.BOUNCED])


def apply_bounce(store: Store, config: Config, event: StatusEvent, summary: InboundSummary) -> None:
    """Apply one bounce inside the caller's write transaction."""
    from .. import consent

    at = clock.iso(event.at)
    reason = f"bounce:{event.error_code}" if event.error_code else "bounce"
    delivery = None
    if event.provider_message_id:
        delivery = store.mail.bounce_delivery(
            event.provider_message_id, reason, event.error_message, at, _BOUNCE_FROM
        )
    if delivery is not None:
        customer_id, channel = str(delivery["customer_id"]), str(delivery["channel"])
        if delivery["changed"]:
            summary.bounces += 1
        else:
            summary.status_ignored += 1
    else:
        # a bounce of a message outreach did not send (or whose headers were cut off):
        # the failed address may still be a customer on the channel it came back to
        summary.status_ignored += 1
        channel = event.channel
        found = (
            store.customers.find_customer_by_address(channel, "email", event.recipient)
            if event.recipient and channel in config.channels
            else None
        )
        if found is None:
            return
        customer_id = found
    if not event.permanent or channel not in config.channels:
        return
    # every serve replica polls the mailbox: the other one's opt-out is read once it commits
    store.conversations.hold_customers([customer_id])
    if store.consent.current_consent_for(customer_id, channel) == consent.OPTED_OUT:
        return
    consent.record(
        store,
        config,
        [customer_id],
        channel,
        consent.OPTED_OUT,
        source="provider:bounce",
        evidence=f"{event.error_code or 'bounce'} {event.recipient or ''}: "
        f"{event.error_message or ''}".strip()[:300],
    )
