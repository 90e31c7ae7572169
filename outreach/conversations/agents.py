"""What agents do with conversations: list, show and close them, and reply to a customer.

A reply is queued and sent at once through the sending engine, on the channel the customer
last wrote on unless another is chosen, and only where the sending engine's consent rules
would let it go (``reply_allowed``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import clock, deliveries, policy
from ..channels.base import SERVICE_WINDOW
from ..config import Config
from ..deliveries import Purpose
from ..errors import NotFoundError, UsageError
from ..sending.engine import send_deliveries
from ..store import Store
from ..workspace import Workspace
from .inbox import RejectedEvent, check_text

_SEE_CONVERSATIONS = "outreach conversations list"  # where an unknown customer id is told to look


def list_conversations(
    store: Store, *, needs_attention: bool = False, since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Conversations, most recent first, for ``conversations list``."""
    for row in store.conversations.list_conversations(
        needs_attention=needs_attention, since=clock.iso(since) if since else None
    ):
        yield {
            "customer_id": row["customer_id"],
            "name": row["name"],
            "verified": bool(row["verified"]),
            "status": row["status"],
            "needs_attention": bool(row["needs_attention"]),
            "attention_reason": row["attention_reason"] if row["needs_attention"] else None,
            "last_message_at": row["last_message_at"],
            "last_channel": row["last_channel"],
            "last_direction": row["last_direction"],
            "last_inbound_at": row["last_inbound_at"],
            "last_inbound_channel": row["last_inbound_channel"],
        }


def show_conversation(store: Store, customer_id: str) -> dict[str, Any]:
    """The whole transcript of one customer, every channel, oldest first."""
    customer = store.customers.require_customer(customer_id, see=_SEE_CONVERSATIONS)
    conversation = store.conversations.get_conversation(customer_id) or {}
    messages = []
    for row in store.conversations.transcript(customer_id):
        item: dict[str, Any] = {
            "at": row["at"],
            "direction": row["direction"],
            "channel": row["channel"],
            "text": row["text"],
            "subject": row["subject"],
            "address": row["address"],
            "campaign": row["campaign"],
            "author": row["author"],
            "external_id": row["external_id"],
            "delivery_id": row["delivery_id"],
            "kind": row["kind"] or "text",
            "details": json.loads(row["details"]) if row["details"] else None,
        }
        if row["survey_type"] is not None:
            item["survey"] = {
                "campaign": row["survey_campaign"],
                "question": row["survey_question"],
                "type": row["survey_type"],
                "answer": row["survey_answer"],
                "score": row["survey_score"],
                "valid": bool(row["survey_valid"]),
            }
        messages.append(item)
    return {
        "customer_id": customer_id,
        "name": customer.get("name"),
        "verified": bool(customer.get("verified")),
        "timezone": customer.get("timezone"),
        "status": conversation.get("status"),
        "needs_attention": bool(conversation.get("needs_attention")),
        "attention_reason": conversation.get("attention_reason")
        if conversation.get("needs_attention")
        else None,
        "messages": messages,
    }


def close_conversation(store: Store, customer_id: str) -> None:
    """Close a conversation and clear its attention flag (a new message reopens it)."""
    store.customers.require_customer(customer_id, see=_SEE_CONVERSATIONS)
    conversation = store.conversations.get_conversation(customer_id)
    if conversation is None:
        raise NotFoundError(f'customer "{customer_id}" has no conversation yet')
    at = clock.iso(clock.now())

    def close() -> None:
        with store.write():
            store.conversations.update_conversation(
                conversation["id"],
                status="closed",
                needs_attention=0,
                attention_reason=None,
                updated_at=at,
            )

    store.retrying(close)


def reply_allowed(store: Store, customer_id: str, channel: str) -> str | None:
    """None when a reply may go on ``channel``, else why not (``policy.may_send``: never to
    an opt-out; to an opt-in, or within 24 hours of the customer writing there)."""
    status = store.consent.current_consent_for(customer_id, channel)
    now = clock.now()
    wrote = policy.needs_recent_contact(Purpose.AGENT, status) and bool(
        store.conversations.wrote_since([(customer_id, channel)], clock.iso(now - SERVICE_WINDOW))
    )
    decision = policy.may_send(Purpose.AGENT, status, now, wrote_recently=wrote)
    if decision.reason == policy.REASON_OPTED_OUT:
        return f"the customer opted out on {channel}"
    if decision.reason is not None:
        return f"the customer has not opted in on {channel} nor written there in the last 24 hours"
    return None


@dataclass(frozen=True)
class ReplyResult:
    delivery_id: str
    channel: str
    status: str
    error: str | None


def reply(ws: Workspace, customer_id: str, text: str, channel: str | None = None) -> ReplyResult:
    """An agent's reply: queued and sent at once, on ``channel`` or the one the customer
    last wrote on; clears the conversation's attention flag."""
    store, config = ws.store, ws.config
    customer = store.customers.require_customer(customer_id, see=_SEE_CONVERSATIONS)
    if not text.strip():
        raise UsageError("the reply text is empty; write what to send")
    check_reply_text(text)
    conversation = store.conversations.get_conversation(customer_id)
    if channel is None:
        channel = _default_reply_channel(store, config, customer, conversation)
    else:
        config.channel(channel)
        why = reply_allowed(store, customer_id, channel)
        if why:
            raise UsageError(f"cannot reply to {customer_id} on {channel}: {why}")
    at = clock.iso(clock.now())

    def enqueue() -> str:
        with store.write():
            delivery = deliveries.enqueue_reply(
                store, customer_id=customer_id, channel=channel, purpose="agent", text=text
            )
            conversation_id = store.conversations.ensure_conversation(customer_id, at)
            store.conversations.update_conversation(
                conversation_id, needs_attention=0, attention_reason=None, updated_at=at
            )
        return delivery

    # a unit of work: queued once even when the first session was lost (PostgreSQL)
    delivery = store.retrying(enqueue)
    send_deliveries(ws, [delivery])
    outcome = store.deliveries.delivery_outcome(delivery) or {}
    error = outcome.get("error") or outcome.get("reason")
    return ReplyResult(
        delivery, channel, str(outcome.get("status") or "queued"), str(error) if error else None
    )


def check_reply_text(text: str) -> None:
    try:
        check_text(text)
    except RejectedEvent as exc:
        raise UsageError(f"the reply text cannot be sent: {exc}") from None


def _default_reply_channel(
    store: Store,
    config: Config,
    customer: Mapping[str, Any],
    conversation: Mapping[str, Any] | None,
) -> str:
    customer_id = str(customer["id"])
    last = conversation.get("last_inbound_channel") if conversation else None
    if last and last in config.channels:
        why = reply_allowed(store, customer_id, last)
        if why is None:
            return str(last)
        raise UsageError(
            f"cannot reply to {customer_id} on {last}, where they last wrote: {why}; "
            "choose another channel with --channel"
        )
    preferred = customer.get("preferred_channel")
    candidates = [preferred] if preferred in config.channels else []
    candidates += [c for c in config.channels if c != preferred]
    for name in candidates:
        if reply_allowed(store, customer_id, str(name)) is None:
            return str(name)
    raise UsageError(
        f"{customer_id} has not written in and has no channel with consent; "
        "grant consent first or choose a channel with --channel"
    )
