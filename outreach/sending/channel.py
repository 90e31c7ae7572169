"""One channel in a send pass: its provider, rate limit and circuit, and one send with its
retries.

Retryable provider errors are retried with exponential backoff and jitter, honouring
Retry-After; a channel that keeps failing opens its circuit and the pass stops sending on
it, leaving the rest queued for a later run. An ambiguous failure (the provider may have
the message) on a provider that cannot deduplicate is ``unknown``, never retried here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .. import clock
from ..channels.base import OutboundMessage, Provider
from ..config import ChannelConfig, Rate
from ..deliveries import Status
from ..errors import ProviderError
from ..store import Limits
from .journal import Journal
from .results import Result

RETRIES_IN_RUN = 3  # attempts of one send within a run
# a journaled channel claims up to this many deliveries ahead of its sends, and no more
# than it sends in AHEAD_SECONDS at the pace it has kept (consent is read at the claim,
# so a STOP that comes later must not find a long queue already claimed)
JOURNALED_BUDGET = 128
AHEAD_SECONDS = 0.1
# and no more than this many per session: half the budget is claimed, and as many results
# recorded, in each commit, during which every session's answer waits on the event loop
# (8 SMTP sessions: 64 results took 1.7 ms to record, 16 took 0.7, about what the server
# needs to answer 8 commands, so it no longer runs out of work)
BUDGET_PER_SESSION = 4
BACKOFF_BASE = 0.2  # seconds; doubles each attempt, with jitter
MAX_RETRY_AFTER = 60.0  # a longer Retry-After requeues the delivery for a later run
CIRCUIT_THRESHOLD = 8  # consecutive retryable failures that open a channel's circuit


# A reservation takes this many seconds of slots at most (never fewer than one slot): a
# few tens of ms, so that processes interleave finely and one that dies gives up only that
# much of the rate (an undershoot; nothing is ever sent early).
BATCH_SECONDS = 0.05
# A reservation may take this many seconds of slots (or 4) beyond the sends waiting for
# one, so that a channel sending one message at a time still reserves a batch.
MIN_BATCH_SECONDS = 0.01


class RateLimiter:
    """Sends spaced evenly at ``rate``, for every process on the workspace together.

    The slots come from the store (``store.limits``, virtual scheduling on the database's
    clock), a batch at a time: one reservation of up to ``BATCH_SECONDS`` of slots, then
    the sends of this process take them one by one. There is no burst, at start or after
    an idle spell: slots are ``1 / rate`` apart across all processes. A send that wakes up
    later than ``late`` after its slot (a busy event loop) gives that slot up and takes the
    next one, so a stalled process never sends its missed slots at once; any one-second
    window then holds at most ``rate + 2`` sends (``1.05 * rate + 1`` above 20/s, where
    ``late`` is 50 ms), as sent: the network may bunch them further. Without ``reserve``
    the same schedule is kept in this process alone.
    """

    def __init__(self, rate: Rate, reserve: Callable[[int], float] | None = None) -> None:
        self.interval = 1.0 / rate.per_second
        self.most = max(1, int(rate.per_second * BATCH_SECONDS))
        self.least = max(4, int(rate.per_second * MIN_BATCH_SECONDS))
        self.late = max(self.interval, BATCH_SECONDS)
        # one slot first, doubling while sends keep coming: a reply sender that sends one
        # message reserves one slot, a campaign reaches whole batches within a few
        self.batch = 1
        self.waiting = 0  # sends in acquire: more slots than that would go unused
        self.slots: deque[float] = deque()  # time.monotonic() of the slots reserved here
        self.reserve = reserve or self._reserve_here
        self.next_here = 0.0
        self.lock = asyncio.Lock()

    @classmethod
    def shared(cls, rate: Rate, limits: Limits, key: str) -> RateLimiter:
        per_second = rate.per_second
        return cls(rate, lambda count: limits.reserve(key, per_second, count))

    async def acquire(self, stop: asyncio.Event) -> None:
        """Wait for the next slot, or until ``stop`` is set (a stopped run must not wait
        for the slots of every delivery it had claimed)."""
        if stop.is_set():
            return
        # one waiter at a time: the others queue here, so this process holds one batch of
        # slots at most, however many sends it runs at once
        self.waiting += 1
        try:
            async with self.lock:
                while not stop.is_set():
                    slot = self._next_slot()
                    delay = slot - time.monotonic()
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), delay)
                    if time.monotonic() - slot <= self.late:
                        return
        finally:
            self.waiting -= 1

    def _next_slot(self) -> float:
        now = time.monotonic()
        while self.slots and now - self.slots[0] > self.late:
            self.slots.popleft()  # missed while the loop was busy: given up, not sent late
        if not self.slots:
            # A synchronous store call in the send loop, which is acceptable: one short
            # statement (0.05-0.3 ms on PostgreSQL, 0.03 ms on SQLite) per batch of slots,
            # not per message (but for rates of 20/s or less, where one slot is 50 ms or
            # more). No more slots than the sends waiting need (slots nobody takes are
            # lost to every process: the tail of a run, a reply sender's one message), but
            # a few even for a channel that sends one message at a time.
            count = min(self.batch, max(self.waiting, self.least))
            wait = self.reserve(count)
            first = time.monotonic() + wait
            self.slots.extend(first + i * self.interval for i in range(count))
            self.batch = min(self.most, self.batch * 2)
        return self.slots.popleft()

    def _reserve_here(self, count: int) -> float:
        now = time.monotonic()
        start = max(now, self.next_here)
        self.next_here = start + count * self.interval
        return start - now


@dataclass
class Channel:
    """A channel's provider and its state in one pass.

    ``budget`` bounds the deliveries claimed and not yet recorded (so how many a crash can
    leave ``unknown``); once fewer than ``low_water`` are free, the worker waits for
    results before it claims again.
    """

    config: ChannelConfig
    provider: Provider
    limiter: RateLimiter | None
    budget: int
    claimed: int = 0  # claimed and not yet recorded
    finished: int = 0  # of those, finished (awaiting the flush)
    # set once no more than ``wake_at`` sends are in flight (-1: nobody waits), so the
    # waiting worker wakes once, not at every one of the hundreds of results it waits for
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    wake_at: int = -1
    consecutive_failures: int = 0
    open: bool = False  # the circuit: no more sends on it in this pass
    # where sends are journaled (``journal.py``), a crash leaves only those in flight
    # unknown, so the budget may grow past ``concurrency`` with the pace of the sends
    journal: Journal | None = None
    finished_total: int = 0
    first_claim: float = 0.0

    @classmethod
    def of(
        cls,
        config: ChannelConfig,
        provider: Provider,
        limits: Limits | None = None,
        *,
        journal: Journal | None = None,
    ) -> Channel:
        # a provider that cannot send twice (files, idempotency keys) works through larger
        # batches, so fewer transactions
        budget = max(config.concurrency, 1024) if provider.idempotent else config.concurrency
        return cls(
            config=config,
            provider=provider,
            limiter=limiter_for(config.rate, limits, f"channel:{config.name}"),
            budget=budget,
            journal=journal,
        )

    def pace(self) -> None:
        """Before a claim: a journaled channel's budget, from the pace of its sends; once
        its journal has failed, no more than is sent at once."""
        if self.journal is None:
            return
        if self.journal.broken:
            self.journal = None
            self.budget = self.config.concurrency
            return
        now = time.monotonic()
        if not self.first_claim:
            self.first_claim = now
            return
        per_second = self.finished_total / max(now - self.first_claim, 1e-3)
        most = min(JOURNALED_BUDGET, BUDGET_PER_SESSION * self.config.concurrency)
        ahead = min(most, int(per_second * AHEAD_SECONDS))
        self.budget = max(self.config.concurrency, ahead)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def low_water(self) -> int:
        return max(1, self.budget // 2)

    @property
    def in_flight(self) -> int:
        return self.claimed - self.finished

    def enough_finished(self, *, drained: bool = False) -> bool:
        """Whether enough sends have finished to claim again (all of them, ``drained``)."""
        return self.in_flight <= self.enough(drained=drained)

    def enough(self, *, drained: bool = False) -> int:
        """The most sends that may be in flight for the worker to claim again."""
        return 0 if drained or self.in_flight == 0 else self.budget - self.low_water

    def finish(self) -> None:
        self.finished += 1
        self.finished_total += 1
        if self.in_flight <= self.wake_at:
            self.ready.set()

    def recorded(self, n: int) -> None:
        self.claimed -= n
        self.finished -= n

    def note_failure(self, exc: ProviderError) -> str | None:
        """Count a temporary failure; enough in a row open the circuit (the problem line)."""
        self.consecutive_failures += 1
        if self.consecutive_failures >= CIRCUIT_THRESHOLD:
            return self.open_circuit(exc)
        return None

    def open_circuit(self, exc: Exception, *, what: str = "") -> str | None:
        """Open the circuit; the one problem line saying so (None when it already was)."""
        if self.open:
            return None
        self.open = True
        after = (
            f" after {self.consecutive_failures} failures in a row"
            if self.consecutive_failures > 1 and not what
            else ""
        )
        cause = f"{what}: {exc}" if what else str(exc)
        return (
            f"channel {self.name}: circuit open{after} ({cause}); its remaining messages stay "
            "queued for the next run"
        )


async def send_one(
    ch: Channel,
    row: Mapping[str, Any],
    message: OutboundMessage,
    *,
    stop: asyncio.Event,
    campaign_limiter: RateLimiter | None,
    problems: list[str],
    started: Callable[[str], bool] | None = None,
) -> Result:
    """Send one message, retrying what may be retried within the pass; its result.
    ``started`` is told the delivery's id before the provider first sees it."""
    delivery_id, channel = row["id"], row["channel"]

    def result(status: Status, **fields: Any) -> Result:
        return Result(delivery_id, channel, status, clock.iso(clock.now()), **fields)

    for attempt in range(RETRIES_IN_RUN):
        try:
            if ch.limiter:
                await ch.limiter.acquire(stop)
            if campaign_limiter:
                await campaign_limiter.acquire(stop)
        except Exception as exc:
            # the store could not reserve a slot (its connection is gone): nothing is
            # sent on this channel without one, and this message was not sent
            _add(problems, ch.open_circuit(exc, what="no send slot from the database"))
            return result(Status.QUEUED, attempts_back=True, error=str(exc)[:500])
        if ch.open or stop.is_set():
            # not sent: back to the queue, as if never claimed
            return result(Status.QUEUED, attempts_back=True)
        if started is not None and attempt == 0:
            started(delivery_id)
        try:
            sent = await ch.provider.send(message)
        except ProviderError as exc:
            if exc.halts_channel:
                # not this message's fault (a full disk under the outbox): back to the
                # queue uncounted, and the circuit opens now, with one line, instead of
                # a failure per message
                _add(problems, ch.open_circuit(exc))
                return result(Status.QUEUED, attempts_back=True, reason=exc.code, error=str(exc))
            if exc.ambiguous and not ch.provider.idempotent:
                # the provider may have the message: a resend could duplicate it
                _add(problems, ch.note_failure(exc))
                return result(
                    Status.UNKNOWN,
                    reason=exc.code or "ambiguous",
                    error=f"{exc} (the provider may have accepted it; resend "
                    "with outreach run --retry-unknown)",
                )
            if exc.skip:
                return result(Status.SKIPPED, reason=exc.code or "skipped", error=str(exc))
            if not exc.retryable:
                ch.consecutive_failures = 0
                problems.append(f"{channel}: {exc}")
                return result(Status.FAILED, reason=exc.code or "rejected", error=str(exc))
            _add(problems, ch.note_failure(exc))
            delay = backoff(attempt, exc.retry_after)
            if attempt + 1 == RETRIES_IN_RUN or delay > MAX_RETRY_AFTER or ch.open:
                later = clock.now() + timedelta(seconds=max(delay, 60 * (attempt + 1)))
                return result(
                    Status.QUEUED,
                    not_before=clock.iso(later),
                    error=str(exc),
                    reason=exc.code or "retrying",
                )
            await asyncio.sleep(delay)
            continue
        except Exception as exc:
            problems.append(f"{channel}: unexpected {exc!r}")
            return result(
                Status.FAILED,
                reason="provider_bug",
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
        ch.consecutive_failures = 0
        at = clock.iso(clock.now())
        return Result(
            delivery_id,
            channel,
            Status.SENT,
            at,
            provider_message_id=sent.provider_message_id,
            sent_at=at,
        )
    raise AssertionError("unreachable: every attempt returns or continues")


def limiter_for(rate: Rate | None, limits: Limits | None, key: str) -> RateLimiter | None:
    """The limiter of a ``rate`` (None: no limit), shared through ``limits`` when given."""
    if rate is None:
        return None
    return RateLimiter.shared(rate, limits, key) if limits is not None else RateLimiter(rate)


def backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return max(0.0, retry_after)
    return float(BACKOFF_BASE * (2**attempt) * random.uniform(0.5, 1.5))


def _add(problems: list[str], line: str | None) -> None:
    if line is not None:
        problems.append(line)
