"""The sending engine: claim due deliveries, decide, render, send, record.

Exactly-once rests on the delivery states. A delivery is claimed (``queued``/``deferred``
→ ``sending``) in a transaction that also re-reads the customer's current consent, so a
STOP recorded a moment ago stops the send. It is recorded (``sending`` → ``sent`` |
``failed`` | ``skipped`` | ``deferred`` | ``queued`` again) only after the provider
answered. A process that dies in between leaves ``sending`` rows that the next run turns
into ``unknown`` (or back into ``queued`` where a resend cannot duplicate). Per channel,
at most a budget of deliveries are ``sending`` at once, which bounds how many can end up
``unknown``. Each claim names the claiming process's lease (``lease.py``), so recovery
leaves a live process's ``sending`` rows alone.

Each claimed batch is read once (customers, recent contact, staleness), then every
delivery goes through ``decide`` (the pure decision), ``Composer.message`` and
``channel.send_one`` (retries, backoff, circuit), by at most ``concurrency`` sender tasks
per channel (``senders``) that take the prepared messages in claim order; results are
recorded in batches, in the transaction of the next claim (or every ``FLUSH_SECONDS``),
and for a network channel in one of their own just before it: sessions wait on the loop
while it writes, so it takes a turn between the two, and between every few messages it
prepares.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..channels import ADDRESS_COLUMN, address_kind, build_provider
from ..channels.base import SERVICE_WINDOW, OutboundMessage, Provider, ProviderContext
from ..config import Window, zone_or
from ..deliveries import DUE_STATES, Purpose, Status
from ..errors import OutreachError
from ..policy import needs_recent_contact
from ..workspace import Workspace
from . import journal
from .channel import Channel, RateLimiter, limiter_for, send_one
from .compose import Composer
from .decide import decide
from .lease import hold
from .results import Result, SendSummary
from .senders import SenderPool

SENT_STATES = (Status.SENT, Status.DELIVERED, Status.READ)
FLUSH_AT = 2048  # results kept before recording them at once (else at a claim, or every:)
FLUSH_SECONDS = 0.1
LOCAL_TURN = 64  # local sends between two turns of the event loop
PREPARE_PIECE = 4  # a network channel's messages prepared per turn while others wait
YOUNG_GC_THRESHOLD = 10_000  # allocations between young collections while sending
PLANNING_POLL = 0.02  # seconds between looks at an empty queue while another process plans

# how old a delivery's occurrence is, its campaign's ``late`` and its survey's ``expires``
_Staleness = tuple[timedelta | None, timedelta | None, timedelta | None]
_FRESH: _Staleness = (None, None, None)


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
        run_started: str | None = None,
    ) -> None:
        self.ws = ws
        self.config = ws.config
        self.store = ws.store
        self.worker: int | None = None  # this process's lease, named by each claim
        self.journal: journal.Journal | None = None  # what is started, not yet recorded
        self.campaign_filter = campaigns
        self.ids = ids
        self.left = limit
        self.stop = stop
        self.on_progress = on_progress
        self.only_channels = channels
        # set by another process when planning has finished: until then an empty queue
        # means "not planned yet", not "done"
        self.planning_done = planning_done
        # deliveries created before this are an earlier run's: they may have gone stale
        self.run_started = run_started or clock.iso(clock.now())
        self.summary = summary if summary is not None else SendSummary()
        self.composer = Composer(ws.config, ws.store)
        self.context = ProviderContext.of(ws.config, os.environ)
        self.channels: dict[str, Channel] = {}
        self.results: list[Result] = []
        self.outbound: list[dict[str, Any]] = []
        self.campaign_limiters: dict[str, RateLimiter | None] = {}
        # a channel's and a campaign's rate hold for every process sending on this
        # database together (a run, its helpers, serve's reply sender, workers)
        self.limits = ws.store.limits
        self.windows: dict[str, Window] = {}
        # an occurrence's time, parsed once per pass: a claim is often of a few rows, and
        # dateutil's parser ran at every one
        self.occurrence_times: dict[str, datetime] = {}

    # -- the pass -------------------------------------------------------------------------

    async def run(self) -> SendSummary:
        # a caller that sends for long holds its lease already (run, worker, serve);
        # anything else (a reply sent by a command) holds one for this pass
        with hold(self.ws, "run") as self.worker, _heap_frozen():
            try:
                return await self._run()
            finally:
                if self.journal is not None:
                    journal.release(self.journal)
                    self.journal = None

    async def _run(self) -> SendSummary:
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            workers = []
            for name in self.only_channels or self.config.channels:
                try:
                    config = self.config.channel(name)
                    provider = build_provider(config, self.context)
                    self.channels[name] = Channel.of(
                        config, provider, self.limits, journal=self._journal_for(provider)
                    )
                except OutreachError as exc:
                    self.summary.problems.append(f"channel {name}: {exc}")
                    continue
                workers.append(asyncio.create_task(self._channel_worker(self.channels[name])))
            # a commit that checkpoints the WAL holds up every session waiting on the loop
            # (nobody waits on a local send)
            network = any(not ch.provider.local for ch in self.channels.values())
            with self.store.checkpoints_aside() if network else contextlib.nullcontext():
                await asyncio.gather(*workers)
        finally:
            flusher.cancel()
            self._flush()
            await self._close()
        return self.summary

    def _journal_for(self, provider: Provider) -> journal.Journal | None:
        """The journal of sends on ``provider`` (opened if need be): where a resend could
        duplicate, and the process can keep one."""
        if provider.idempotent or provider.local:
            return None
        if self.journal is None and self.worker is not None:
            self.journal = journal.acquire(self.ws.root, self.worker)
        return self.journal

    async def _close(self) -> None:
        for ch in self.channels.values():
            # closing must not hide the run's result
            with contextlib.suppress(Exception):
                await ch.provider.aclose()

    async def _channel_worker(self, ch: Channel) -> None:
        senders: SenderPool[tuple[dict[str, Any], OutboundMessage]] = SenderPool(
            ch.config.concurrency, lambda item: self._send(ch, *item)
        )
        while True:
            # local sends never wait, so without this the loop would not see a signal (or
            # anything else) before the queue is empty
            await asyncio.sleep(0)
            if self.stop.is_set() or ch.open or self.left == 0:
                break
            ch.pace()
            # finished sends free their slots at the claim, which records them first
            if ch.budget - ch.in_flight < ch.low_water and ch.in_flight:
                await self._wait_for_results(ch)
                continue
            if not ch.provider.local and self.results:
                # sessions wait on the loop while it writes: the finished sends go in a
                # transaction of their own, and the loop takes a turn before the claim
                self._flush()
                await _after_io()
            rows, planned = self._claim(ch)
            if not rows:
                if ch.claimed:
                    # nothing left to claim: let what is in flight finish
                    await self._wait_for_results(ch, drained=True)
                    continue
                if planned:
                    break
                await _first_of(self.planning_done, self.stop, timeout=PLANNING_POLL)
                continue
            ch.claimed += len(rows)
            if ch.journal is not None:
                # a failure gives the journal up: what follows is claimed without it
                ch.journal.claimed([row["id"] for row in rows])
            if ch.provider.local:
                ready = self._prepare(ch, rows)
                if self.left is not None:
                    self.left -= len(ready)
                # nothing to wait for: one after another, without a task each; a local
                # send never gives the loop a turn, so a signal (its handler runs on the
                # loop) would wait for the whole batch: a turn every LOCAL_TURN sends,
                # and the rest of the batch goes back to the queue once it is stopped
                for i, (row, message) in enumerate(ready, 1):
                    await self._send(ch, row, message)
                    if i % LOCAL_TURN == 0:
                        await asyncio.sleep(0)
                continue
            await _after_io()
            batch = self._batch(ch, rows)
            # first enough that a message waits for every session, then a few per turn
            # of the loop: preparing a whole batch of 64 at once held the loop for 6 ms,
            # every session's answer waiting on it
            piece = max(PREPARE_PIECE, ch.config.concurrency // 2)
            start = 0
            while start < len(rows):
                end = start + max(piece, ch.config.concurrency - len(senders.queue))
                for row in rows[start:end]:
                    prepared = self._prepare_one(ch, row, batch)
                    if prepared is not None:
                        senders.put((row, prepared))
                        if self.left is not None:
                            self.left -= 1
                start = end
                senders.top_up()
                await _after_io()
        # every message prepared is sent, or once stopped put back in the queue (send_one)
        await senders.drain()

    def _claim(self, ch: Channel) -> tuple[list[dict[str, Any]], bool]:
        """Record what has finished and claim the next batch, in one transaction; the rows,
        and whether planning had finished before the claim."""
        results, outbound = self.results, self.outbound
        # this channel's finished sends free their slots with this commit
        free = ch.budget - ch.claimed + sum(1 for r in results if r.channel == ch.name)
        want = free if self.left is None else min(free, self.left)

        def record_and_claim() -> tuple[list[dict[str, Any]], bool]:
            # one unit of work, run again whole if the database rolled it back (a lost
            # connection, a deadlock): the results stay in hand until it has committed
            with self.store.write():
                # one commit instead of two, and the other processes wait for the lock once
                if results:
                    self.store.deliveries.record_results(results, outbound)
                # read before the claim: once set, every planned row is committed and visible
                planned = self.planning_done is None or self.planning_done.is_set()
                rows = self.store.deliveries.claim_due(
                    clock.iso(clock.now()),
                    want,
                    campaigns=self.campaign_filter,
                    channels=[ch.name],
                    ids=self.ids,
                    from_states=DUE_STATES,
                    worker=self.worker,
                )
            return rows, planned

        rows, planned = self.store.retrying(record_and_claim)
        if results:
            self.results, self.outbound = [], []
            self._recorded(results)
        return rows, planned

    async def _wait_for_results(self, ch: Channel, *, drained: bool = False) -> None:
        """Wait until enough of this channel's sends have finished (all, when ``drained``).

        The worker's next claim records them and claims in one transaction (one commit, and
        other processes wait for the lock once), at once instead of at the periodic flush.
        """
        while not ch.enough_finished(drained=drained):
            ch.ready.clear()
            ch.wake_at = ch.enough(drained=drained)
            try:
                await asyncio.wait_for(ch.ready.wait(), timeout=0.5)
            except TimeoutError:
                break  # re-check the queue now and then: retries may have come due
            finally:
                ch.wake_at = -1

    async def _flush_periodically(self) -> None:
        # between claims (a large budget claims every few hundred results): progress, and
        # results visible to other processes soon
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self._flush()

    def _finish(self, row: Mapping[str, Any], result: Result) -> None:
        self.results.append(result)
        ch = self.channels.get(result.channel)
        if ch is not None:
            ch.finish()
        self.summary.count(row, result)
        if len(self.results) >= FLUSH_AT:
            self._flush()

    def _flush(self) -> int:
        """Record the finished sends (a unit of work of its own: run again if the database
        rolled it back); how many."""
        if not self.results:
            return 0
        results, outbound = self.results, self.outbound
        self.results, self.outbound = [], []
        self.store.retrying(lambda: self.store.deliveries.record_results(results, outbound))
        return self._recorded(results)

    def _recorded(self, results: list[Result]) -> int:
        """Free the slots of these committed results and report the progress."""
        if self.journal is not None:
            self.journal.recorded(r.id for r in results)
        per_channel: dict[str, int] = {}
        for r in results:
            per_channel[r.channel] = per_channel.get(r.channel, 0) + 1
        for name, n in per_channel.items():
            if name in self.channels:
                self.channels[name].recorded(n)
        if self.on_progress:
            self.on_progress(len(results))
        return len(results)

    # -- per batch and per delivery -------------------------------------------------------

    def _prepare(
        self, ch: Channel, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], OutboundMessage]]:
        """Decide and render a claimed batch (always of one channel) before anything
        leaves the machine; what to send."""
        batch = self._batch(ch, rows)
        return [(row, m) for row in rows if (m := self._prepare_one(ch, row, batch)) is not None]

    def _batch(self, ch: Channel, rows: list[dict[str, Any]]) -> _Batch:
        """What deciding a claimed batch needs, read once for all its rows."""
        kind = address_kind(ch.config)
        ids = [r["customer_id"] for r in rows]
        now = clock.now()
        return _Batch(
            kind=kind,
            field_name=ADDRESS_COLUMN.get(kind),
            customers=self.store.customers.get_customers(ids),
            now=now,
            recent=self._wrote_recently(ch, rows, now),
            staleness=self._staleness(rows, now),
            # platform user ids, for a channel that addresses people that way
            users=self.store.customers.user_addresses(ch.name, ids) if kind == "user" else {},
        )

    def _prepare_one(
        self, ch: Channel, row: dict[str, Any], batch: _Batch
    ) -> OutboundMessage | None:
        """Decide one claimed delivery and render its message: None when it is not sent
        (its result is recorded instead)."""
        kind, now = batch.kind, batch.now
        default_zone = self.config.timezone
        cid = row["customer_id"]
        customer = batch.customers.get(cid)
        tz = zone_or(customer.get("timezone"), default_zone) if customer else default_zone
        if kind == "user":
            address = batch.users.get(cid)
        else:
            address = customer.get(batch.field_name) if customer and batch.field_name else None
        age, late, expires = batch.staleness.get((row["campaign"], row["occurrence"]), _FRESH)
        wrote = cid in batch.recent
        verdict = decide(
            row,
            customer=customer,
            address=address,
            now=now,
            tz=tz,
            wrote_recently=wrote,
            window=self._window(row),
            age=age if row["created_at"] < self.run_started else None,
            late=late,
            expires=expires,
        )
        if verdict is not None:
            not_before = verdict.not_before
            self._finish(
                row,
                Result(
                    row["id"],
                    ch.name,
                    verdict.status,
                    clock.iso(clock.now()),
                    reason=verdict.reason,
                    error=verdict.error,
                    not_before=clock.iso(not_before) if not_before else None,
                ),
            )
            return None
        assert customer is not None and address  # decide refuses a delivery without
        try:
            return self.composer.message(row, customer, kind, str(address), now, tz, wrote)
        except OutreachError as exc:
            self._finish(
                row,
                Result(
                    row["id"],
                    ch.name,
                    Status.SKIPPED,
                    clock.iso(clock.now()),
                    reason="template_error",
                    error=str(exc),
                ),
            )
            self.summary.problems.append(str(exc))
            return None

    def _window(self, row: Mapping[str, Any]) -> Window | None:
        text = row.get("window")
        if row["purpose"] != Purpose.CAMPAIGN or not text:
            return None
        window = self.windows.get(text)
        if window is None:
            window = self.windows[text] = Window.parse(text, where="delivery window")
        return window

    def _wrote_recently(self, ch: Channel, rows: list[dict[str, Any]], now: datetime) -> set[str]:
        """Customers of this batch (one channel's) who wrote on it in the last 24 hours,
        asked once per batch and only where it matters: on a channel with a customer
        service window, and for replies that only that could allow (policy)."""
        pairs = [
            (row["customer_id"], ch.name)
            for row in rows
            if ch.provider.service_window or needs_recent_contact(row["purpose"], row["consent"])
        ]
        if not pairs:
            return set()
        since = clock.iso(now - SERVICE_WINDOW)
        return {cid for cid, _ in self.store.conversations.wrote_since(pairs, since)}

    def _staleness(
        self, rows: list[dict[str, Any]], now: datetime
    ) -> dict[tuple[str, str], _Staleness]:
        """Per campaign occurrence of this batch: its age and the campaign's limits, read
        once per occurrence (a triggered send's occurrence has no time: never stale)."""
        out: dict[tuple[str, str], _Staleness] = {}
        for row in rows:
            key = (row["campaign"], row["occurrence"])
            if key in out or row["purpose"] != Purpose.CAMPAIGN:
                continue
            campaign_name, occurrence = key
            if not occurrence or not occurrence[:1].isdigit():
                out[key] = _FRESH
                continue
            campaign = self.composer.campaign(campaign_name)
            survey = self.composer.survey(campaign_name, occurrence)
            expires = survey.get("expires_seconds") if survey else None
            at = self.occurrence_times.get(occurrence)
            if at is None:
                at = self.occurrence_times[occurrence] = clock.parse_time(occurrence)
            out[key] = (
                now - at,
                campaign.late if campaign else None,
                timedelta(seconds=expires) if expires is not None else None,
            )
        return out

    async def _send(self, ch: Channel, row: dict[str, Any], message: OutboundMessage) -> None:
        kept = ch.journal
        result = await send_one(
            ch,
            row,
            message,
            stop=self.stop,
            campaign_limiter=self._campaign_limiter(row.get("campaign")),
            problems=self.summary.problems,
            started=kept.started if kept is not None else None,
        )
        outbound = None
        if result.status is Status.SENT:
            outbound = {
                "customer_id": row["customer_id"],
                "channel": row["channel"],
                "address": message.to,
                "subject": message.subject,
                "text": message.body,
                "delivery_id": row["id"],
                "campaign": row.get("campaign"),
                "author": row["purpose"],
                "at": result.at,
                "reply_token": message.reply_token,
            }
            self.outbound.append(outbound)
        if kept is not None:
            # before it can be recorded: the journal must name every result it holds
            kept.finished(result, outbound)
        self._finish(row, result)

    def _campaign_limiter(self, name: str | None) -> RateLimiter | None:
        if name is None:
            return None
        if name not in self.campaign_limiters:
            campaign = self.composer.campaign(name)
            rate = campaign.rate if campaign else None
            self.campaign_limiters[name] = limiter_for(rate, self.limits, f"campaign:{name}")
        return self.campaign_limiters[name]


@dataclass
class _Batch:
    """A claimed batch's facts, read once: its customers, who wrote recently, how stale
    each occurrence is, and the platform user ids of a channel that uses them."""

    kind: str
    field_name: str | None
    customers: Mapping[str, Mapping[str, Any]]
    now: datetime
    recent: set[str]
    staleness: dict[tuple[str, str], _Staleness]
    users: Mapping[str, Any]


class _HeapFrozen:
    """Leave the objects alive before a pass (modules, config, a plan's leftovers) out of
    the collector's full passes while it sends, and collect the young generation less
    often; both are handed back once the last pass under way ends.

    A send allocates enough long-lived objects (claimed rows, messages, connections' state)
    to set off a full collection every 1,500 messages or so, and each walked the whole
    heap: about 110 ms after planning 3,000 deliveries, a fifth of the send's CPU. Every
    message also allocates a few hundred short-lived ones (a request, its response, the
    JSON), which a young collection every 700 allocations mostly walks while they are still
    alive; every 10,000, most are gone by then.

    The collector is the process's: passes in two threads at once (serve's reply sender
    and a command) share one setting, counted, so neither undoes it under the other and
    the last one out puts back what was there before the first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes = 0
        self._thresholds: tuple[int, int, int] = gc.get_threshold()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._passes:
                gc.freeze()
                self._thresholds = gc.get_threshold()
                young, *older = self._thresholds
                gc.set_threshold(max(YOUNG_GC_THRESHOLD, young), *older)
            self._passes += 1
        try:
            yield
        finally:
            with self._lock:
                self._passes -= 1
                if not self._passes:
                    gc.set_threshold(*self._thresholds)
                    gc.unfreeze()


_heap_frozen = _HeapFrozen()


async def _after_io() -> None:
    """Give the loop a turn in which the sessions go first.

    A turn of asyncio's loop runs the callbacks that were ready before it polled the
    sockets, then those the poll brought, then the timers now due. ``sleep(0)`` makes this
    task one of the first kind, so it would run again before any session the poll wakes;
    resumed by a timer instead, it is woken after them, and their tasks run before it.
    """
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_later(0, _resolve, done)
    await done


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled meanwhile (the run was stopped)
        future.set_result(None)


async def _first_of(*events: asyncio.Event | None, timeout: float) -> None:
    """Wait until one of ``events`` is set, or ``timeout`` seconds."""
    waits = [asyncio.ensure_future(e.wait()) for e in events if e is not None]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


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
    run_started: str | None = None,
) -> SendSummary:
    """Send every due delivery (or just ``ids``, due or not), honouring consent and windows.

    ``channels`` limits the pass to those channels; with ``planning_done``, an empty queue
    is polled until that event is set (a helper process sending while the run plans).
    ``summary``, when given, is the one filled in, so a caller can read it as it grows.
    ``run_started``: when the run began (default: now); deliveries planned before it are
    an earlier run's, and are not sent once stale.
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
        run_started=run_started,
    )
    return await engine.run()


def send_deliveries(ws: Workspace, delivery_ids: Sequence[str]) -> SendSummary:
    """Send these deliveries now (replies: confirmations, follow-ups, agent answers)."""
    if not delivery_ids:
        return SendSummary()
    return asyncio.run(send_due_async(ws, ids=list(delivery_ids)))


def send_replies(ws: Workspace, delivery_ids: Sequence[str]) -> tuple[int, list[str]]:
    """Send these queued replies now: how many went out, and a line for each that did not,
    saying why (read back in one query)."""
    if not delivery_ids:
        return 0, []
    summary = send_deliveries(ws, delivery_ids)
    sent = 0
    why: list[str] = []
    for row in ws.store.deliveries.delivery_outcomes(delivery_ids):
        if row["status"] in SENT_STATES:
            sent += 1
            continue
        cause = row["reason"] or row["status"]
        error = row["error"]
        why.append(
            f"reply to {row['customer_id']} on {row['channel']}: {cause}"
            + (f" ({error})" if error and error != cause else "")
        )
    # the pass's own problems (a channel that could not start), unless a line says it
    problems = [p for p in summary.problems if not any(p in line for line in why)]
    return sent, problems + why
