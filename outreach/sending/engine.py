"""The sending engine: claim due deliveries, check consent and window, render, send.

Exactly-once rests on the delivery states. A delivery is claimed (``queued``/``deferred``
→ ``sending``) in a transaction that also re-reads the customer's current consent, so a
STOP recorded a moment ago stops the send. It is recorded (``sending`` → ``sent`` |
``failed`` | ``skipped`` | ``deferred`` | ``queued`` again) only after the provider
answered. A process that dies in between leaves ``sending`` rows that the next run turns
into ``unknown`` (or back into ``queued`` where a resend cannot duplicate). Per channel,
at most ``concurrency`` deliveries are ``sending`` at once, which bounds how many can end
up ``unknown``.

Retryable provider errors are retried with exponential backoff and jitter, honouring
Retry-After; a channel that keeps failing opens its circuit and the run stops sending on
it, leaving the rest queued for a later run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .. import clock
from ..campaigns.files import load_campaign, localized_question
from ..channels import ADDRESS_COLUMN, address_kind, build_provider
from ..channels.base import SERVICE_WINDOW, OutboundMessage, Provider, ProviderContext
from ..config import ChannelConfig, Rate, Window, zone_or
from ..errors import OutreachError, ProviderError
from ..store import Store
from ..store import deliveries as sql
from ..store.conversations import wrote_since
from ..store.customers import get_customers, user_addresses
from ..store.meta import signing_key
from ..templates.render import Renderer
from ..tokens import make_reply_token, make_unsubscribe_token
from ..workspace import Workspace

RETRIES_IN_RUN = 3  # attempts of one send within a run
BACKOFF_BASE = 0.2  # seconds; doubles each attempt, with jitter
MAX_RETRY_AFTER = 60.0  # a longer Retry-After requeues the delivery for a later run
MAX_CLAIMS = 5  # runs that may try a delivery before it is failed for good
CIRCUIT_THRESHOLD = 8  # consecutive retryable failures that open a channel's circuit
FLUSH_AT = 2048  # results kept before recording them at once (else every 20 ms, or at a claim)
PLANNING_POLL = 0.02  # seconds between looks at an empty queue while another process plans


class RateLimiter:
    """A token bucket of depth one: sends are spaced evenly at ``rate``.

    Each acquire reserves the next slot, so the long-run rate is exact and there is no
    burst at start (a burst would break a provider's per-second limit).
    """

    def __init__(self, rate: Rate) -> None:
        self.interval = 1.0 / rate.per_second
        self.next_slot = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class Tally:
    """Counts for one (campaign, occurrence) in this run (deferred and unknown ones are
    counted from the database afterwards, where earlier passes' count too)."""

    sent: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class SendSummary:
    """What a send pass did, per (campaign, occurrence), plus problems for people."""

    tallies: dict[tuple[str | None, str | None], Tally] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    interrupted: int = 0  # the signal that stopped the pass, or 0

    @property
    def sent(self) -> int:
        """Campaign messages sent, over every occurrence."""
        return sum(t.sent for t in self.tallies.values())

    def tally(self, row: Mapping[str, Any]) -> Tally:
        key = (row.get("campaign"), row.get("occurrence"))
        if key not in self.tallies:
            self.tallies[key] = Tally()
        return self.tallies[key]


@dataclass
class _Channel:
    config: ChannelConfig
    provider: Provider
    limiter: RateLimiter | None
    budget: int
    semaphore: asyncio.Semaphore
    consecutive_failures: int = 0
    open: bool = False


class _Engine:
    """One send pass over the due queue (or a given list of deliveries)."""

    def __init__(
        self,
        ws: Workspace,
        *,
        campaigns: Sequence[str] | None,
        ids: Sequence[str] | None,
        limit: int | None,
        stop: asyncio.Event,
        on_progress: Callable[[int], None] | None,
        channels: Sequence[str] | None = None,
        planning_done: asyncio.Event | None = None,
        summary: SendSummary | None = None,
    ) -> None:
        self.ws = ws
        self.config = ws.config
        self.store: Store = ws.store
        self.campaign_filter = campaigns
        self.ids = ids
        self.left = limit
        self.stop = stop
        self.on_progress = on_progress
        self.only_channels = channels
        # set by another process when planning has finished: until then an empty queue
        # means "not planned yet", not "done"
        self.planning_done = planning_done
        self.renderer = Renderer(ws.config)
        self.summary = summary if summary is not None else SendSummary()
        self.channels: dict[str, _Channel] = {}
        self.updates: list[dict[str, Any]] = []
        self.outbound: list[dict[str, Any]] = []
        self.campaign_cache: dict[str, Any] = {}
        self.campaign_limiters: dict[str, RateLimiter | None] = {}
        self.context = ProviderContext.of(ws.config, os.environ)
        self._key: bytes | None = None
        self.claimed: dict[str, int] = {}  # channel → claimed and not yet recorded
        self.finished: dict[str, int] = {}  # channel → of those, finished (awaiting the flush)
        self.ready: dict[str, asyncio.Event] = {}  # set when a worker may flush and claim
        self.low_water: dict[str, int] = {}
        self.channel_of: dict[str, str] = {}  # delivery id → channel, until recorded
        self.windows: dict[str, Window] = {}
        self.surveys: dict[tuple[str, str], dict[str, Any] | None] = {}

    # -- set-up ---------------------------------------------------------------------------

    def channel(self, name: str) -> _Channel:
        if name not in self.channels:
            config = self.config.channel(name)
            provider = build_provider(config, self.context)
            # claimed and not yet recorded: a provider that cannot send twice (files,
            # idempotency keys) works through larger batches, so fewer transactions
            budget = max(config.concurrency, 1024) if provider.idempotent else config.concurrency
            self.channels[name] = _Channel(
                config=config,
                provider=provider,
                limiter=RateLimiter(config.rate) if config.rate else None,
                budget=budget,
                semaphore=asyncio.Semaphore(config.concurrency),
            )
        return self.channels[name]

    async def close(self) -> None:
        for ch in self.channels.values():
            # closing must not hide the run's result
            with contextlib.suppress(Exception):
                await ch.provider.aclose()

    # -- the pass -------------------------------------------------------------------------

    async def run(self) -> SendSummary:
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            workers = []
            for name in self.only_channels or self.config.channels:
                try:
                    self.channel(name)
                except OutreachError as exc:
                    self.summary.problems.append(f"channel {name}: {exc}")
                    continue
                workers.append(asyncio.create_task(self._channel_worker(name)))
            if workers:
                await asyncio.gather(*workers)
        finally:
            flusher.cancel()
            self._flush()
            await self.close()
        return self.summary

    async def _channel_worker(self, name: str) -> None:
        ch = self.channels[name]
        inflight: set[asyncio.Task[None]] = set()
        self.claimed[name] = 0
        self.finished[name] = 0
        self.ready[name] = asyncio.Event()
        low_water = self.low_water[name] = max(1, ch.budget // 2)
        while True:
            # local sends never wait, so without this the loop would not see a signal (or
            # anything else) before the queue is empty
            await asyncio.sleep(0)
            if self.stop.is_set() or ch.open or self.left == 0:
                break
            in_flight = self.claimed[name] > self.finished[name]
            if ch.budget - self.claimed[name] < low_water and in_flight:
                await self._wait_for_results(name)
                continue
            with self.store.write():
                # what has finished is recorded in the transaction of the next claim: one
                # commit instead of two, and the other processes wait for the lock once
                recorded = self._flush(report=False)
                free = ch.budget - self.claimed[name]
                want = free if self.left is None else min(free, self.left)
                # read before the claim: once set, every planned row is committed and visible
                planned = self.planning_done is None or self.planning_done.is_set()
                rows = sql.claim_due(
                    self.store,
                    clock.iso(clock.now()),
                    want,
                    campaigns=self.campaign_filter,
                    channels=[name],
                    ids=self.ids,
                )
            if recorded and self.on_progress:
                self.on_progress(recorded)
            if not rows:
                if self.claimed[name]:
                    # nothing left to claim: let what is in flight finish
                    await self._wait_for_results(name, drained=True)
                    continue
                if planned:
                    break
                await _first_of(self.planning_done, self.stop, timeout=PLANNING_POLL)
                continue
            self.claimed[name] += len(rows)
            ready = self._prepare(name, rows)
            if self.left is not None:
                self.left -= len(ready)
            for row, message in ready:
                if ch.provider.local:
                    # nothing to wait for: one after another, without a task each
                    await self._send(ch, row, message)
                    continue
                task = asyncio.create_task(self._send(ch, row, message))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.gather(*inflight)

    async def _wait_for_results(self, channel: str, *, drained: bool = False) -> None:
        """Wait until enough of this channel's sends have finished (all, when ``drained``),
        then record them.

        Recording frees their slots, so the worker can claim the next batch at once instead
        of idling until the periodic flush (which made each batch wait up to 20 ms).
        """
        event = self.ready[channel]
        while not self._enough_finished(channel, drained=drained):
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout=0.5)
            except TimeoutError:
                break  # re-check the queue now and then: retries may have come due
        self._flush()

    def _enough_finished(self, channel: str, *, drained: bool = False) -> bool:
        in_flight = self.claimed[channel] - self.finished[channel]
        if drained or in_flight == 0:
            return in_flight == 0
        return in_flight <= self.channels[channel].budget - self.low_water[channel]

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            self._flush()

    def _finish(self, row: Mapping[str, Any], **update: Any) -> None:
        update.setdefault("at", clock.iso(clock.now()))
        self.updates.append({"id": row["id"], **update})
        channel = row.get("channel")
        if channel in self.finished:
            self.finished[channel] += 1
            self.ready[channel].set()
        tally = self.summary.tally(row)
        status = update["status"]
        if row.get("purpose") != "campaign":
            pass
        elif status == "sent":
            tally.sent += 1
        elif status == "failed":
            tally.failed += 1
        elif status == "unknown":
            self.summary.problems.append(f"{row['channel']}: {update.get('error')}")
        elif status == "skipped":
            reason = update.get("reason") or "unknown"
            tally.skipped[reason] = tally.skipped.get(reason, 0) + 1
        if len(self.updates) >= FLUSH_AT:
            self._flush()

    def _flush(self, *, report: bool = True) -> int:
        """Record the finished sends; how many. ``report=False``: the caller holds the
        transaction and reports the progress once it has committed."""
        if not self.updates:
            return 0
        updates, outbound = self.updates, self.outbound
        self.updates, self.outbound = [], []
        sql.record_results(self.store, updates, outbound)
        for u in updates:
            channel = self.channel_of.pop(u["id"], None)
            if channel is not None:
                self.claimed[channel] -= 1
                self.finished[channel] -= 1
        if report and self.on_progress:
            self.on_progress(len(updates))
        return len(updates)

    # -- per delivery -----------------------------------------------------------------------

    def _prepare(
        self, channel: str, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], OutboundMessage]]:
        """Consent, window, address and rendering, before anything leaves the machine, for
        one claimed batch (a claim is always of one channel)."""
        ch = self.channels[channel]
        kind = address_kind(ch.config)
        field_name = ADDRESS_COLUMN.get(kind)
        ids = [r["customer_id"] for r in rows]
        customers = get_customers(self.store, ids)
        now = clock.now()
        recent = self._wrote_recently(ch, rows, now)
        # platform user ids, for a channel that addresses people that way
        users = user_addresses(self.store, channel, ids) if kind == "user" else {}
        ready: list[tuple[dict[str, Any], OutboundMessage]] = []
        for row in rows:
            self.channel_of[row["id"]] = row["channel"]
            customer = customers.get(row["customer_id"])
            if customer is None:
                self._finish(row, status="failed", reason="no_customer")
                continue
            wrote = row["customer_id"] in recent
            refusal = self._consent_refusal(row, wrote)
            if refusal:
                self._finish(row, status="skipped", reason=refusal)
                continue
            tz = zone_or(customer.get("timezone"), self.config.timezone)
            if row["purpose"] == "campaign" and row.get("window"):
                window = self.windows.get(row["window"])
                if window is None:
                    window = Window.parse(row["window"], where="delivery window")
                    self.windows[row["window"]] = window
                if not window.contains(now.astimezone(tz)):
                    # never defer to now or earlier: the pass would claim the row again
                    opening = max(window.next_opening(now, tz), now + timedelta(seconds=1))
                    self._finish(row, status="deferred", not_before=clock.iso(opening))
                    continue
            if row["attempts"] > MAX_CLAIMS:
                self._finish(
                    row,
                    status="failed",
                    reason="retries_exhausted",
                    error="gave up after repeated temporary failures",
                )
                continue
            if kind == "user":
                address = users.get(row["customer_id"])
            else:
                address = customer.get(field_name) if field_name else None
            if not address:
                self._finish(row, status="skipped", reason="no_address")
                continue
            try:
                message = self._render(row, customer, kind, str(address), now, tz, wrote)
            except OutreachError as exc:
                self._finish(row, status="skipped", reason="template_error", error=str(exc))
                self.summary.problems.append(str(exc))
                continue
            ready.append((row, message))
        return ready

    def _wrote_recently(
        self, ch: _Channel, rows: list[dict[str, Any]], now: datetime
    ) -> set[str]:
        """Customers of this batch (one channel's) who wrote on it in the last 24 hours,
        asked once per batch and only where it matters: on a channel with a customer
        service window, and for replies that only that could allow (see _consent_refusal)."""
        pairs = [
            (row["customer_id"], ch.config.name)
            for row in rows
            if ch.provider.service_window
            or (
                row["purpose"] not in ("campaign", "keyword")
                and row.get("consent") not in ("opted_in", "opted_out")
            )
        ]
        if not pairs:
            return set()
        return {cid for cid, _ in wrote_since(self.store, pairs, clock.iso(now - SERVICE_WINDOW))}

    def _consent_refusal(self, row: Mapping[str, Any], wrote_recently: bool) -> str | None:
        consent = row.get("consent")
        purpose = row["purpose"]
        if purpose == "keyword":
            return None  # the one confirmation of a STOP or START goes out regardless
        if consent == "opted_out":
            return "opted_out"
        if consent == "opted_in":
            return None
        if purpose == "campaign":
            return "no_consent"
        # a reply on a channel the customer wrote on within a day answers them there
        return None if wrote_recently else "no_consent"

    def _campaign(self, name: str | None) -> Any:
        if name is None:
            return None
        if name not in self.campaign_cache:
            try:
                self.campaign_cache[name] = load_campaign(self.config, name)
            except OutreachError:
                self.campaign_cache[name] = None
        return self.campaign_cache[name]

    def _survey(self, campaign: str, occurrence: str) -> dict[str, Any] | None:
        key = (campaign, occurrence)
        if key not in self.surveys:
            self.surveys[key] = sql.occurrence_survey(self.store, campaign, occurrence)
        return self.surveys[key]

    def _signing_key(self) -> bytes:
        if self._key is None:
            self._key = signing_key(self.store)
        return self._key

    def _render(
        self,
        row: Mapping[str, Any],
        customer: Mapping[str, Any],
        kind: str,
        address: str,
        now: datetime,
        tz: ZoneInfo,
        wrote_recently: bool,
    ) -> OutboundMessage:
        context = json.loads(row["context"]) if row.get("context") else {}
        channel = row["channel"]
        public = self.config.server.public_url
        unsubscribe_url = None
        if public:
            token = make_unsubscribe_token(self._signing_key(), row["customer_id"], channel)
            unsubscribe_url = f"{public}/unsubscribe/{token}"
        campaign = self._campaign(row.get("campaign"))
        if row["purpose"] == "agent":
            body, subject, html, preheader = context["text"], None, None, None
            if kind == "email":
                subject = f"Re: your message to {self.config.sender_name}"
        else:
            survey = None
            if row["purpose"] == "campaign" and row.get("occurrence"):
                survey = self._survey(row["campaign"], row["occurrence"])
                if survey:
                    survey = {
                        **survey,
                        "question": localized_question(survey, customer.get("locale")),
                    }
            rendered = self.renderer.render(
                row["template"],
                channel,
                customer,
                campaign={"name": row.get("campaign"), "kind": campaign.kind if campaign else None},
                survey=survey,
                unsubscribe_url=unsubscribe_url,
                now=now.astimezone(tz),
                extra=_extra(context),
            )
            body, subject, html, preheader = (
                rendered.body,
                rendered.subject,
                rendered.html,
                rendered.preheader,
            )
        return OutboundMessage(
            delivery_id=row["id"],
            channel=channel,
            customer_id=row["customer_id"],
            to=address,
            body=body,
            subject=subject,
            html=html,
            preheader=preheader,
            campaign=row.get("campaign"),
            customer_name=customer.get("name"),
            unsubscribe_url=unsubscribe_url,
            reply_token=make_reply_token(self._signing_key(), row["customer_id"])
            if kind == "email"
            else None,
            whatsapp_template=_whatsapp_template(campaign, customer),
            in_service_window=wrote_recently,
            status_callback=f"{public}/webhooks/{channel}" if public else None,
            customer=customer,
        )

    async def _send(self, ch: _Channel, row: dict[str, Any], message: OutboundMessage) -> None:
        limiter = self._campaign_limiter(row.get("campaign"))
        async with ch.semaphore:
            for attempt in range(RETRIES_IN_RUN):
                if ch.limiter:
                    await ch.limiter.acquire()
                if limiter:
                    await limiter.acquire()
                if ch.open or self.stop.is_set():
                    # not sent: back to the queue, as if never claimed
                    self._finish(row, status="queued", attempts_back=True)
                    return
                try:
                    result = await ch.provider.send(message)
                except ProviderError as exc:
                    if exc.ambiguous and not ch.provider.idempotent:
                        # the provider may have the message: a resend could duplicate it
                        self._note_failure(ch, row, exc)
                        self._finish(
                            row,
                            status="unknown",
                            reason=exc.code or "ambiguous",
                            error=f"{exc} (the provider may have accepted it; resend "
                            "with outreach run --retry-unknown)",
                        )
                        return
                    if exc.code == "whatsapp_window":
                        self._finish(
                            row, status="skipped", reason="whatsapp_window", error=str(exc)
                        )
                        return
                    if not exc.retryable:
                        ch.consecutive_failures = 0
                        self._finish(
                            row, status="failed", reason=exc.code or "rejected", error=str(exc)
                        )
                        self.summary.problems.append(f"{row['channel']}: {exc}")
                        return
                    self._note_failure(ch, row, exc)
                    delay = _backoff(attempt, exc.retry_after)
                    if attempt + 1 == RETRIES_IN_RUN or delay > MAX_RETRY_AFTER or ch.open:
                        later = clock.now() + timedelta(seconds=max(delay, 60 * (attempt + 1)))
                        self._finish(
                            row,
                            status="queued",
                            not_before=clock.iso(later),
                            error=str(exc),
                            reason=exc.code or "retrying",
                        )
                        return
                    await asyncio.sleep(delay)
                    continue
                except Exception as exc:
                    self._finish(
                        row,
                        status="failed",
                        reason="provider_bug",
                        error=f"{type(exc).__name__}: {exc}"[:500],
                    )
                    self.summary.problems.append(f"{row['channel']}: unexpected {exc!r}")
                    return
                ch.consecutive_failures = 0
                at = clock.iso(clock.now())
                self._finish(
                    row,
                    status="sent",
                    provider_message_id=result.provider_message_id,
                    sent_at=at,
                    at=at,
                )
                self.outbound.append(
                    {
                        "customer_id": row["customer_id"],
                        "channel": row["channel"],
                        "address": message.to,
                        "subject": message.subject,
                        "text": message.body,
                        "delivery_id": row["id"],
                        "campaign": row.get("campaign"),
                        "author": row["purpose"],
                        "at": at,
                        "reply_token": message.reply_token,
                    }
                )
                return

    def _note_failure(self, ch: _Channel, row: Mapping[str, Any], exc: ProviderError) -> None:
        """Count a temporary failure; enough in a row open the channel's circuit."""
        ch.consecutive_failures += 1
        if ch.consecutive_failures >= CIRCUIT_THRESHOLD and not ch.open:
            ch.open = True
            self.summary.problems.append(
                f"channel {row['channel']}: circuit open after {ch.consecutive_failures} "
                f"failures in a row ({exc}); its remaining messages stay queued for the next run"
            )

    def _campaign_limiter(self, name: str | None) -> RateLimiter | None:
        if name is None:
            return None
        if name not in self.campaign_limiters:
            campaign = self._campaign(name)
            rate = campaign.rate if campaign else None
            self.campaign_limiters[name] = RateLimiter(rate) if rate else None
        return self.campaign_limiters[name]


async def _first_of(*events: asyncio.Event | None, timeout: float) -> None:
    """Wait until one of ``events`` is set, or ``timeout`` seconds."""
    waits = [asyncio.ensure_future(e.wait()) for e in events if e is not None]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return max(0.0, retry_after)
    return float(BACKOFF_BASE * (2**attempt) * random.uniform(0.5, 1.5))


def _extra(context: Mapping[str, Any]) -> dict[str, Any]:
    extra = dict(context.get("extra") or {})
    if "event" in context:
        extra["event"] = context["event"]
    return extra


def _whatsapp_template(campaign: Any, customer: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = getattr(campaign, "whatsapp_template", None)
    if not spec:
        return None
    params = [str(customer.get(str(p), p) or "") for p in spec.get("parameters", [])]
    return {"name": spec.get("name"), "language": spec.get("language", "en"), "parameters": params}


async def send_due_async(
    ws: Workspace,
    *,
    campaigns: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    channels: Sequence[str] | None = None,
    planning_done: asyncio.Event | None = None,
    summary: SendSummary | None = None,
) -> SendSummary:
    """Send every due delivery (or just ``ids``, due or not), honouring consent and windows.

    ``channels`` limits the pass to those channels; with ``planning_done``, an empty queue
    is polled until that event is set (a helper process sending while the run plans).
    ``summary``, when given, is the one filled in, so a caller can read it as it grows.
    """
    engine = _Engine(
        ws,
        campaigns=campaigns,
        ids=ids,
        limit=limit,
        stop=stop or asyncio.Event(),
        on_progress=on_progress,
        channels=channels,
        planning_done=planning_done,
        summary=summary,
    )
    return await engine.run()


def send_deliveries(ws: Workspace, delivery_ids: Sequence[str]) -> SendSummary:
    """Send these deliveries now (replies: confirmations, follow-ups, agent answers)."""
    if not delivery_ids:
        return SendSummary()
    return asyncio.run(send_due_async(ws, ids=list(delivery_ids)))
