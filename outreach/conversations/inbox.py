"""An inbound event's effects: customer, conversation, keywords, survey answers, attention.

``Inbox.handle`` is the one place where an inbound event has its effects. Both ways in, the
webhook server (``server.writer``) and ``replies ingest`` (``conversations.ingest``), hand
it ``InboundMessage`` and ``StatusEvent`` values inside a write transaction, so that a
message and everything it causes (a consent row, a survey response, a queued reply)
commit together or not at all. Replies are only *queued* here (``deliveries.enqueue_reply``);
the caller sends them after the commit, so the database lock is never held across network
calls.

The order for one message:

1. match the channel address to a customer (unknown → a new unverified contact);
2. append it to the customer's one conversation; a provider's retry of the same message id
   is stored once and has no further effect;
3. a keyword (STOP/START/HELP, whole message) changes consent and queues one confirmation;
   YES counts as START only from a customer who is opted out on that channel;
4. a longer message asking to stop in other words → attention ``opt_out_intent``;
5. an open survey (latest sent, not expired, no valid answer yet, any channel) → the text
   is parsed as its answer: valid → response + follow-up; unclear → response (valid=0) and
   attention ``unclear_answer``;
6. anything else → attention ``reply``.

Outside business hours a message that needs a person gets one automatic reply per closed
period (``conversations.auto_reply_until`` remembers which period was answered); an
opt-out intent gets none, as more messages are the last thing such a customer asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from .. import clock, consent, deliveries
from ..answers import parse_answer
from ..channels import address_kind
from ..channels.base import EVENT_KINDS, TEXT_KINDS, InboundEvent, InboundMessage, StatusEvent
from ..config import Config, zone_or
from ..deliveries import reported_from
from ..errors import OutreachError
from ..keywords import KeywordTable, asks_to_stop
from ..mail.bounces import apply_bounce
from ..store import Store
from ..tokens import REPLY_CHANNEL
from .numbers import VARIANT_PREFIXES, mobile_variants

MAX_TEXT_CHARS = 64 * 1024
# When the conversation already needs a person, a weaker reason does not hide a stronger one.
_ATTENTION_RANK = {"opt_out_intent": 3, "unreadable_email": 2, "unclear_answer": 2, "reply": 1}
_E164 = re.compile(r"\+[1-9]\d{6,14}")


class RejectedEvent(Exception):
    """One input line or event that cannot be used; the message says why."""


@dataclass
class InboundSummary:
    """What a batch of inbound events did."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    new_contacts: int = 0
    keywords: dict[str, int] = field(default_factory=dict)
    survey_answers: int = 0
    unclear_answers: int = 0
    needs_attention: int = 0  # conversations (not messages) flagged by this batch
    flagged: set[str] = field(default_factory=set, repr=False)
    auto_replies: int = 0
    automatic: int = 0  # stored out-of-office and other automatic replies
    events: int = 0  # stored reactions, deletions, edits, number changes, system notices
    bounces: int = 0
    status_updates: int = 0
    status_ignored: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    replies_queued: list[str] = field(default_factory=list)
    # after sending (ingest): how many replies went out, and why others did not
    replies_sent: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, batch: InboundSummary) -> None:
        """Count in a batch's summary, once its transaction has committed (a batch run
        again after a rolled-back transaction starts from a summary of its own)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(batch, f.name)
            if f.name == "needs_attention":
                mine += len(batch.flagged - self.flagged)
            elif isinstance(mine, int):
                mine += theirs
            elif isinstance(mine, dict):
                for key, n in theirs.items():
                    mine[key] = mine.get(key, 0) + n
            elif isinstance(mine, set):
                continue  # flagged: after needs_attention, below
            else:
                mine.extend(theirs)
            setattr(self, f.name, mine)
        self.flagged |= batch.flagged

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "new_contacts": self.new_contacts,
            "keywords": dict(self.keywords),
            "survey_answers": self.survey_answers,
            "unclear_answers": self.unclear_answers,
            "needs_attention": self.needs_attention,
            "auto_replies": self.auto_replies,
            "automatic": self.automatic,
            "events": self.events,
            "bounces": self.bounces,
            "status_updates": self.status_updates,
            "status_ignored": self.status_ignored,
            "replies": len(self.replies_queued),
            "replies_sent": self.replies_sent,
            "problems": list(self.problems),
            "rejected": [{"line": line, "reason": reason} for line, reason in self.rejected],
        }


def check_text(text: str) -> str:
    """``text`` if it can be stored and shown; RejectedEvent for NUL bytes, lone surrogates
    or absurd length."""
    if "\x00" in text:
        raise RejectedEvent("text contains a NUL character")
    if len(text) > MAX_TEXT_CHARS:
        raise RejectedEvent(f"text is longer than {MAX_TEXT_CHARS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RejectedEvent("text contains an invalid surrogate character") from None
    return text


@lru_cache(maxsize=65536)
def normalize_phone(text: str, region: str) -> str:
    """An inbound phone address in E.164 when it can be read as one, else as written."""
    raw = text.strip().removeprefix("whatsapp:").strip()
    if _E164.fullmatch(raw):
        return raw
    compact = re.sub(r"[\s().-]", "", raw)
    if _E164.fullmatch(compact):
        return compact
    candidate = compact
    if compact.isdigit():
        if compact.startswith("00"):
            candidate = "+" + compact[2:]
        elif not compact.startswith("0") and len(compact) >= 11:
            # WhatsApp ids and some gateways give the international number without its +
            candidate = "+" + compact
    # here: phonenumbers takes longer to import than most ingests take to read their
    # senders, nearly all of which are E.164 already
    import phonenumbers

    try:
        number = phonenumbers.parse(candidate, region or None)
    except phonenumbers.NumberParseException:
        return raw
    if not phonenumbers.is_possible_number(number):
        return raw
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=65536)
def normalize_email(text: str) -> str:
    """``Anna <ANNA@Example.nl>`` → ``anna@example.nl``."""
    plain = text.strip()
    if plain.count("@") == 1 and not any(c in plain for c in ' <>"(),;:'):
        return plain.lower()  # the common case, without the cost of parseaddr
    return (parseaddr(text)[1] or text).strip().lower()


class Inbox:
    """Applies inbound events to one store. Not thread-safe: one per connection.

    Within one batch (one write transaction) customers by address, conversation state and
    open surveys are cached, and conversation updates are written once per conversation at
    the end (``end_batch``): that is what makes 10,000+ messages a second possible.

    The cache is only as true as the transaction makes it. On SQLite a write transaction
    holds the whole database. On PostgreSQL other processes (``serve`` replicas) write
    beside it, so the batch first holds its customers (``hold_customers``: a replica with a
    message of the same customer waits for this commit, then reads what it wrote) and only
    then reads their conversations and surveys; a customer met later in the batch is held
    when met. What the batch learnt is then merged into each conversation in the database
    (``merge_conversations``: the later message, the stronger attention reason), never
    written back as a whole row, so an agent's close or a message another process stored
    in between is not overwritten.
    """

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.keywords = KeywordTable(config.keywords)
        self._kinds: dict[str, str] = {}
        self._customers: dict[tuple[str, str], str] = {}
        self._conversations: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        # the attention reason this batch gives each conversation (the strongest, the last
        # of equals): only the batch's own, merged with the stored one at the end
        self._attention: dict[str, str] = {}
        self._surveys: dict[str, list[dict[str, Any]]] = {}
        self._prefetched: set[str] = set()
        self._all_held = False
        # email routes of the batch: reply token / quoted Message-ID → customer ("" = none)
        self._tokens: dict[str, str] = {}
        self._references: dict[str, str] = {}

    def begin_batch(self, events: Sequence[InboundEvent] = ()) -> None:
        """Forget what an earlier transaction saw and fetch, a few queries for the whole
        batch, the customers, conversations and open surveys that ``events`` will need.
        Call after BEGIN."""
        self._customers.clear()
        self._conversations.clear()
        self._dirty.clear()
        self._attention.clear()
        self._all_held = False  # whether every customer is held already (hold_customers)
        self._surveys.clear()
        by_channel: dict[str, set[str]] = {}
        for event in events:
            if isinstance(event, InboundMessage) and event.channel in self.config.channels:
                address = self.normalize_address(event.channel, event.address)
                by_channel.setdefault(event.channel, set()).add(address)
        ids: set[str] = set()
        for channel, addresses in by_channel.items():
            kind = self.address_kind(channel)
            variants = (
                {v for a in addresses if a[:3] in VARIANT_PREFIXES for v in mobile_variants(a)}
                if kind == "phone"
                else set()
            )
            found = self.store.customers.customers_by_address(
                channel, kind, addresses | variants if variants else addresses
            )
            for address in addresses:
                hit = found.get(address)
                if hit is None and variants:
                    hit = next((found[v] for v in mobile_variants(address) if v in found), None)
                # "" remembers "not known", so the lookup is not repeated per message
                self._customers[(channel, address)] = hit or ""
            ids.update(found.values())
        ids.update(self._prefetch_email_routes(events))
        self._prefetched = ids
        if ids:
            # before reading them: another process's batch of these customers commits first
            self._all_held = self.store.conversations.hold_customers(ids)
            self._conversations.update(self.store.conversations.conversations_for(ids))
            surveys = self.store.conversations.survey_candidates_for(ids)
            for customer_id in ids:
                self._surveys[customer_id] = surveys.get(customer_id, [])

    def _prefetch_email_routes(self, events: Sequence[InboundEvent]) -> set[str]:
        """Who the batch's reply tokens and quoted Message-IDs name, two queries for the
        batch; "" remembers "not ours". Returns the customers found."""
        self._tokens.clear()
        self._references.clear()
        tokens: set[str] = set()
        references: set[str] = set()
        for event in events:
            if isinstance(event, InboundMessage):
                if event.reply_token:
                    tokens.add(event.reply_token.lower())
                if event.in_reply_to or event.references:  # only emails quote Message-IDs
                    references.update(
                        r.strip().strip("<>")
                        for r in (event.in_reply_to, *event.references)
                        if r and r.strip()
                    )
        if tokens:
            found = self.store.mail.customers_by_reply_token(sorted(tokens))
            self._tokens.update({t: found.get(t, "") for t in tokens})
        if references:
            found = self.store.mail.customers_by_sent_message(sorted(references))
            self._references.update({r: found.get(r, "") for r in references})
        return {c for c in (*self._tokens.values(), *self._references.values()) if c}

    def end_batch(self) -> None:
        """Merge what this batch learnt into its conversations. Call before COMMIT."""
        if not self._dirty:
            return
        attention = self._attention
        conversations = self._conversations
        rows = []
        for customer_id in self._dirty:
            c = conversations[customer_id]
            reason = attention.get(customer_id)
            rows.append(
                (
                    c["id"],
                    c["last_inbound_at"],
                    c["last_inbound_channel"],
                    c["auto_reply_until"],
                    c["updated_at"],
                    reason,
                    _ATTENTION_RANK.get(reason, 0) if reason else 0,
                )
            )
        self.store.conversations.merge_conversations(rows, _ATTENTION_RANK)
        self._dirty.clear()
        attention.clear()

    def address_kind(self, channel: str) -> str:
        kind = self._kinds.get(channel)
        if kind is None:
            kind = address_kind(self.config.channel(channel))
            self._kinds[channel] = kind
        return kind

    def normalize_address(self, channel: str, address: str) -> str:
        kind = self.address_kind(channel)
        if kind == "phone":
            return normalize_phone(address, self.config.default_region)
        if kind == "email":
            return normalize_email(address)
        return address.strip()

    # -- the one entry point -----------------------------------------------------------

    def handle(self, event: InboundEvent, summary: InboundSummary) -> None:
        """Apply one event. The caller holds the write transaction."""
        if isinstance(event, StatusEvent) and event.status == "bounced":
            apply_bounce(self.store, self.config, event, summary)
            return
        if isinstance(event, StatusEvent):
            changed = self.store.deliveries.apply_status(
                event.provider_message_id,
                event.status,
                clock.iso(event.at),
                error=" ".join(p for p in (event.error_code, event.error_message) if p) or None,
                reason=f"provider:{event.error_code}" if event.error_code else None,
                from_states=reported_from(event.status),
            )
            if changed:
                summary.status_updates += 1
            else:
                summary.status_ignored += 1
            return
        self._handle_message(event, summary)

    def _handle_message(self, message: InboundMessage, summary: InboundSummary) -> None:
        summary.messages += 1
        text = check_text(message.text)
        channel = message.channel
        if channel not in self.config.channels:
            raise RejectedEvent(f'channel "{channel}" is not configured')
        address = self.normalize_address(channel, check_text(message.address))
        if not address:
            raise RejectedEvent("the sender address is empty")
        at = clock.iso(message.received_at)
        name = check_text(message.profile_name) if message.profile_name else None
        customer_id = (
            self._customer_by_token(message.reply_token)
            or self._customer_by_reference(message.in_reply_to, message.references)
            or self._customer_for(channel, address, name, at, summary)
        )
        conversation = self._conversation(customer_id, at)
        kind = message.kind
        # plain text, the common case, writes no kind or details at all
        content = {} if kind == "text" else self._content(message, channel, address)
        new_address = content.pop("new_address", None) if content else None
        message_id = self.store.conversations.insert_message(
            conversation_id=conversation["id"],
            customer_id=customer_id,
            direction="in",
            channel=channel,
            address=address,
            text=text,
            external_id=message.external_id,
            at=at,
            subject=message.subject,
            **content,
        )
        if message_id is None:
            summary.duplicates += 1
            return
        summary.stored += 1
        if message.extra:
            self.store.mail.save_email_parts([{**message.extra, "message_id": message_id}])
        if message.automatic:
            # kept in the transcript, but not the customer writing: no reaction, and the
            # conversation's state stays as it was
            summary.automatic += 1
            return
        if kind in EVENT_KINDS:
            # a reaction, a deletion, an edit, a system notice: kept in the transcript, never
            # a keyword, an answer or a reason to answer
            summary.events += 1
            if new_address and new_address != address:
                self._change_number(customer_id, channel, new_address, at)
            return
        self._dirty.add(customer_id)
        conversation["status"] = "open"
        # a file need not be in time order: the latest message names the reply channel
        if not conversation["last_inbound_at"] or at >= conversation["last_inbound_at"]:
            conversation["last_inbound_at"] = at
            conversation["last_inbound_channel"] = channel
        conversation["updated_at"] = max(conversation["updated_at"] or at, at)
        attention = message.attention or self._react(
            customer_id,
            channel,
            text,
            message_id,
            message.received_at,
            summary,
            answerable=kind in TEXT_KINDS,
        )
        if attention is not None:
            if customer_id not in summary.flagged:
                summary.flagged.add(customer_id)
                summary.needs_attention += 1
            current = conversation["attention_reason"] if conversation["needs_attention"] else None
            rank = _ATTENTION_RANK.get(attention, 0)
            if current is None or rank >= _ATTENTION_RANK.get(current, 0):
                conversation["attention_reason"] = attention
            conversation["needs_attention"] = 1
            batch = self._attention.get(customer_id)
            if batch is None or rank >= _ATTENTION_RANK.get(batch, 0):
                self._attention[customer_id] = attention
            if attention != "opt_out_intent":
                until = self._auto_reply(customer_id, channel, conversation, summary)
                if until is not None:
                    conversation["auto_reply_until"] = until

    def _conversation(self, customer_id: str, at: str) -> dict[str, Any]:
        """The customer's conversation state (cached for the batch), created when missing."""
        conversation = self._conversations.get(customer_id)
        if conversation is None:
            # prefetched customers without a conversation are known to have none; the
            # others are held (as the prefetched ones were) and looked up
            if customer_id not in self._prefetched:
                if not self._all_held:
                    self._all_held = self.store.conversations.hold_customers([customer_id])
                conversation = self.store.conversations.get_conversation(customer_id)
            if conversation is None:
                conversation = {
                    "id": self.store.conversations.create_conversation(customer_id, at),
                    "customer_id": customer_id,
                    "status": "open",
                    "needs_attention": 0,
                    "attention_reason": None,
                    "last_inbound_at": None,
                    "last_inbound_channel": None,
                    "auto_reply_until": None,
                    "created_at": at,
                    "updated_at": at,
                }
            self._conversations[customer_id] = conversation
        return conversation

    def _customer_by_token(self, token: str | None) -> str | None:
        """The customer an email reply's plus-address token names (``sending`` records each
        token it hands out), or None for a token it never gave."""
        if not token:
            return None
        known = self._tokens.get(token.lower())
        if known is not None:
            return known or None
        return self.store.customers.find_customer_by_address(REPLY_CHANNEL, "user", token.lower())

    def _customer_by_reference(
        self, in_reply_to: str | None, references: Sequence[str] = ()
    ) -> str | None:
        """The customer an email answered, by the Message-IDs it quotes (the second route
        for email replies, when the reply address lost its token): In-Reply-To first,
        then References from the newest."""
        if not in_reply_to and not references:
            return None
        for reference in dict.fromkeys((in_reply_to, *reversed(references))):
            if reference and reference.strip():
                known = self._references.get(reference.strip().strip("<>"))
                found = (
                    known
                    if known is not None
                    else self.store.deliveries.customer_of_sent_message(reference.strip())
                )
                if found:
                    return found
        return None

    def _customer_for(
        self, channel: str, address: str, name: str | None, at: str, summary: InboundSummary
    ) -> str:
        kind = self.address_kind(channel)
        found = self._customers.get((channel, address))
        if found is None:
            found = self.store.customers.find_customer_by_address(channel, kind, address)
            for variant in mobile_variants(address) if found is None and kind == "phone" else ():
                found = self.store.customers.find_customer_by_address(channel, kind, variant)
            if found is None and kind == "id" and self.store.customers.get_customer(address):
                found = address
        found = found or None
        if found is not None:
            self._customers[(channel, address)] = found
            return found
        contact = f"contact:{channel}:{address}"
        fields: dict[str, Any] = {"name": name}
        if kind in ("email", "phone"):
            fields[kind] = address
        self.store.customers.create_contact(contact, fields, at)
        if kind not in ("email", "phone"):
            # platform ids are only found through the addresses table
            self.store.customers.add_address(channel, address, contact)
        summary.new_contacts += 1
        self._customers[(channel, address)] = contact
        return contact

    def _react(
        self,
        customer_id: str,
        channel: str,
        text: str,
        message_id: int,
        received_at: datetime,
        summary: InboundSummary,
        *,
        answerable: bool = True,
    ) -> str | None:
        """Keywords, opt-out intent, survey answer; returns the attention reason, if any.

        A media message's caption is read for keywords, but nothing but text is an answer:
        an image, a location or a contact card needs a person, not a parser."""
        keyword = self.keywords.match(text)
        if keyword is not None and keyword.kind == "start" and keyword.word == "YES":
            opted_out = self.store.consent.current_consent_for(customer_id, channel) == "opted_out"
            keyword = keyword if opted_out else None
        if keyword is not None:
            status: consent.Status | None = {
                "stop": consent.OPTED_OUT,
                "start": consent.OPTED_IN,
            }.get(keyword.kind)
            if status is not None:
                consent.record(
                    self.store,
                    self.config,
                    [customer_id],
                    channel,
                    status,
                    source=f"keyword:{keyword.word}",
                    evidence=f"message {message_id}: {text[:200]}",
                )
            summary.keywords[keyword.word] = summary.keywords.get(keyword.word, 0) + 1
            template = {"stop": "stop_confirmation", "start": "start_confirmation", "help": "help"}[
                keyword.kind
            ]
            extra = {"help_text": self.config.help_text} if keyword.kind == "help" else None
            self._enqueue(summary, customer_id, channel, "keyword", template=template, extra=extra)
            return None
        if asks_to_stop(text):
            return "opt_out_intent"
        survey = self._open_survey(customer_id, received_at) if answerable else None
        if survey is not None:
            return self._answer(survey, customer_id, channel, text, message_id, summary)
        return "reply"

    def _content(self, message: InboundMessage, channel: str, address: str) -> dict[str, Any]:
        """The ``kind`` and ``details`` (JSON) columns of a message that is not plain text;
        a number change records both numbers, as the customer's address now reads."""
        details = dict(message.details or {})
        fields: dict[str, Any] = {"kind": message.kind}
        if message.kind == "number_change":
            details["old"] = address
            details["new"] = fields["new_address"] = self.normalize_address(
                channel, str(details.get("new") or "")
            )
        fields["details"] = json.dumps(details, ensure_ascii=False) if details else None
        return fields

    def _change_number(self, customer_id: str, channel: str, new: str, at: str) -> None:
        """A customer's new number (a WhatsApp number change): their address from now on,
        on every channel that addresses by it, so the next message finds the same customer
        and the next send goes to the new number."""
        if self.address_kind(channel) == "phone":
            self.store.customers.change_phone(customer_id, new, at)
            for name in self.config.channels:
                if self.address_kind(name) == "phone":
                    self._customers[(name, new)] = customer_id
        else:
            self.store.customers.add_address(channel, new, customer_id)
            self._customers[(channel, new)] = customer_id

    def _open_survey(self, customer_id: str, received_at: datetime) -> dict[str, Any] | None:
        candidates = self._surveys.get(customer_id)
        if candidates is None:
            candidates = self.store.conversations.open_survey_candidates(customer_id)
            self._surveys[customer_id] = candidates
        at: str | None = None
        for row in candidates:
            at = at or clock.iso(received_at)
            if row["sent_at"] > at:
                continue
            try:
                survey = json.loads(row["survey"])
                expires = float(survey.get("expires_seconds") or 0)
                sent = clock.parse_time(row["sent_at"])
            except (ValueError, TypeError, AttributeError, OutreachError):
                continue
            if expires and sent + timedelta(seconds=expires) <= received_at:
                continue
            return {**row, "survey": survey}
        return None

    def _answer(
        self,
        found: dict[str, Any],
        customer_id: str,
        channel: str,
        text: str,
        message_id: int,
        summary: InboundSummary,
    ) -> str | None:
        survey = found["survey"]
        kind = str(survey.get("type") or "text")
        choices = [str(c) for c in survey.get("choices") or []]
        answer = parse_answer(text, kind, choices)
        self.store.conversations.insert_survey_response(
            message_id=message_id,
            delivery_id=found["delivery_id"],
            customer_id=customer_id,
            campaign=found["campaign"],
            occurrence=found["occurrence"],
            question=survey.get("question"),
            type=kind,
            answer=answer.answer,
            score=answer.score,
            valid=int(answer.valid),
            recorded_at=clock.iso(clock.now()),
        )
        if not answer.valid:
            summary.unclear_answers += 1
            return "unclear_answer"
        # answered: this delivery's survey is closed
        self._surveys[customer_id] = [
            r
            for r in self._surveys.get(customer_id, [])
            if r["delivery_id"] != found["delivery_id"]
        ]
        summary.survey_answers += 1
        follow_up = survey.get("follow_up")
        if follow_up:
            self._enqueue(
                summary,
                customer_id,
                channel,
                "follow_up",
                template=str(follow_up),
                campaign=found["campaign"],
            )
        return None

    def _auto_reply(
        self,
        customer_id: str,
        channel: str,
        conversation: Mapping[str, Any],
        summary: InboundSummary,
    ) -> str | None:
        """Queue the out-of-hours reply unless this closed period was answered already;
        returns the new ``auto_reply_until``."""
        hours = self.config.business_hours
        now = clock.now()
        if hours.is_open(now.astimezone(self.config.timezone)):
            return None
        opening = hours.next_opening(now, self.config.timezone)
        until = clock.iso(opening)
        previous = conversation.get("auto_reply_until")
        if previous is not None and previous >= until:
            return None
        customer = self.store.customers.get_customer(customer_id) or {}
        zone = zone_or(customer.get("timezone"), self.config.timezone)
        self._enqueue(
            summary,
            customer_id,
            channel,
            "auto_reply",
            template="out_of_hours",
            extra={"next_opening": opening.astimezone(zone)},
        )
        summary.auto_replies += 1
        return until

    def _enqueue(
        self, summary: InboundSummary, customer_id: str, channel: str, purpose: str, **kwargs: Any
    ) -> None:
        delivery = deliveries.enqueue_reply(
            self.store, customer_id=customer_id, channel=channel, purpose=purpose, **kwargs
        )
        summary.replies_queued.append(delivery)


def apply_events(
    store: Store,
    config: Config,
    events: Iterable[tuple[int, InboundEvent]],
    summary: InboundSummary,
    inbox: Inbox | None = None,
) -> None:
    """Apply numbered events in one write transaction; a bad event is rejected (with its
    number) before it writes anything, and the others are kept."""
    inbox = inbox or Inbox(store, config)
    events = list(events)
    with store.write():
        inbox.begin_batch([event for _, event in events])
        for number, event in events:
            try:
                inbox.handle(event, summary)
            except RejectedEvent as exc:
                summary.rejected.append((number, str(exc)))
        inbox.end_batch()


def receive(
    store: Store,
    config: Config,
    requests: Sequence[Sequence[InboundEvent]],
    inbox: Inbox | None = None,
) -> list[InboundSummary]:
    """Apply the events of several webhook requests in one transaction (the server's group
    commit); one summary per request."""
    inbox = inbox or Inbox(store, config)
    summaries = [InboundSummary() for _ in requests]
    with store.write():
        inbox.begin_batch([event for events in requests for event in events])
        for events, summary in zip(requests, summaries, strict=True):
            for number, event in enumerate(events, 1):
                try:
                    inbox.handle(event, summary)
                except RejectedEvent as exc:
                    summary.rejected.append((number, str(exc)))
        inbox.end_batch()
    return summaries
