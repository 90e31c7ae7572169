"""Where ``outreach serve`` writes: webhooks stored with group commit, replies sent after.

Database work runs in worker threads (``run_in_threadpool``) on one store connection of the
server's own, serialized by a lock, so webhook bursts queue in memory instead of spinning
on SQLite's busy handler; another process (``outreach run``) is waited for through the busy
timeout and BEGIN IMMEDIATE. Webhooks are stored by one writer task with group commit:
every request that arrives while a transaction runs joins the next one, and is answered
only after that commit, so a 200 always means "stored".

Replies that inbound messages cause (keyword confirmations, follow-ups, auto-replies) are
handed to one sender thread with its own workspace, connection and event loop, which sends
them in bunches (a second's worth at a time): a webhook is answered without waiting for a
provider, sends never overlap within the server, and the sending engine's database waits
and set-up never stall the event loop that answers webhooks. Replies are in the database
before their webhook is answered, so the sender also sweeps it for queued replies when it
starts (a killed ``serve`` left them) and every SWEEP_SECONDS (a temporary failure put one
back in the queue for later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from .. import clock
from ..channels.base import InboundEvent
from ..config import Config
from ..conversations.inbox import InboundSummary, Inbox, receive
from ..errors import DamagedStoreError, DiskFullError, OutreachError
from ..sending.engine import send_deliveries
from ..sending.lease import hold, recover
from ..store import Store, open_store
from ..store.sqlite import (
    QUICK_CHECK_MAX_BYTES,
    SqliteStore,
    damaged,
    database_error,
    low_on_space,
    quick_check,
)
from ..workspace import Workspace

SEND_BATCH = 500
REPLY_GATHER_SECONDS = 1.0
SWEEP_SECONDS = 30.0
DEEP_CHECK_SECONDS = 300.0  # at most this often, /healthz runs quick_check
WRITE_GROUP = 256
log = logging.getLogger("outreach.serve")


class Database:
    """The server's one store connection, and the lock that serializes work on it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.Lock()
        self._store: Store | None = None
        self._checked_at = 0.0
        self.damage: OutreachError | None = None  # seen by a request: /healthz reports it

    def store(self) -> Store:
        """The connection; call with ``lock`` held."""
        if self._store is None:
            self._store = open_store(self.config.database)  # refuses a damaged database
            self._checked_at = time.monotonic()
            path = getattr(self._store, "path", None)
            if path is None or path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                self.damage = None  # open_store has just checked it
            # writes go through store.when_unlocked, which retries in its own rhythm
            self._store.poll_for_locks()
        return self._store

    def fault(self, exc: BaseException) -> OutreachError | None:
        """The one line for a database fault a request hit (damage, a full disk), kept for
        /healthz when it is damage; None for anything else."""
        known = exc if isinstance(exc, OutreachError) else None
        if isinstance(exc, sqlite3.Error):
            database = self.config.database
            known = database_error(exc, database if isinstance(database, Path) else None)
        if isinstance(known, DamagedStoreError):
            self.damage = known
            with self.lock:  # reopened (and checked again) by the next request
                if self._store is not None:
                    self._store.close()
                    self._store = None
        return known

    def healthy(self) -> bool:
        """Raises the fault that makes the server unable to store: damage, a full disk."""
        with self.lock:
            if self.damage is not None and self._store is None:
                self.store()  # checked again at open: fixed (restored) or still damaged
            store = self.store()
            store.check()
            if (
                isinstance(store, SqliteStore)
                and store.path
                and time.monotonic() - self._checked_at > DEEP_CHECK_SECONDS
            ):
                self._checked_at = time.monotonic()
                if store.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                    problems = quick_check(store)
                    if problems:
                        raise damaged(store.path, problems[0])
        database = self.config.database
        if isinstance(database, Path) and low_on_space(database):
            raise DiskFullError(database)
        return True

    def close(self) -> None:
        with self.lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class InboundWriter:
    """Stores webhook events through one ``Inbox``, many requests per transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._inbox: Inbox | None = None
        self._inbox_store: Store | None = None
        self.pending: asyncio.Queue[tuple[list[InboundEvent], asyncio.Future[Any]]] | None = None

    def receive(self, requests: list[list[InboundEvent]]) -> list[InboundSummary]:
        """Store several requests' events in one transaction (in a worker thread)."""
        with self.db.lock:
            store = self.db.store()
            if self._inbox is None or self._inbox_store is not store:
                self._inbox = Inbox(store, self.db.config)
                self._inbox_store = store
            inbox = self._inbox
            return store.when_unlocked(lambda: receive(store, self.db.config, requests, inbox))

    async def submit(self, events: list[InboundEvent]) -> InboundSummary:
        """Have the writer store one request's events; waits for the commit."""
        assert self.pending is not None
        future: asyncio.Future[InboundSummary] = asyncio.get_running_loop().create_future()
        self.pending.put_nowait((events, future))
        return await future

    async def write_forever(self) -> None:
        """Group commit: the requests that arrived while the last transaction ran are stored
        together in the next one, so one commit serves many concurrent webhooks."""
        assert self.pending is not None
        while True:
            group = [await self.pending.get()]
            while len(group) < WRITE_GROUP and not self.pending.empty():
                group.append(self.pending.get_nowait())
            await self._write(group)

    async def _write(self, group: list[tuple[list[InboundEvent], asyncio.Future[Any]]]) -> None:
        try:
            summaries = await run_in_threadpool(self.receive, [events for events, _ in group])
        except Exception as exc:
            if len(group) > 1:
                # one request's failure must not fail the others: store them one by one
                for item in group:
                    await self._write([item])
                return
            if not group[0][1].done():
                group[0][1].set_exception(exc)
            return
        for (_, future), summary in zip(group, summaries, strict=True):
            if not future.done():
                future.set_result(summary)


class ReplySender:
    """One thread that sends queued replies in bunches through the sending engine."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.outbox: queue.Queue[str | None] = queue.Queue()
        self.thread: threading.Thread | None = None

    def queue(self, delivery_ids: list[str]) -> None:
        for delivery in delivery_ids:
            self.outbox.put(delivery)

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._send_forever, name="outreach-replies", daemon=True
        )
        self.thread.start()

    def stop(self, timeout: float) -> None:
        """Let replies already accepted go out, then stop the sender thread."""
        if self.thread is None:
            return
        self.outbox.put(None)
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("stopping with about %d replies unsent", self.outbox.qsize())

    def _send_forever(self) -> None:
        """Queued replies, in batches, through the sending engine, with a workspace
        (database connection) and event loop of its own, so that neither its database
        waits nor its provider set-up ever hold up the webhook event loop."""
        sender = Workspace(self.config)
        try:
            with contextlib.ExitStack() as lease:
                try:
                    # one lease for the server's life, so its replies in flight are never
                    # taken for a dead sender's
                    lease.enter_context(hold(sender, "serve"))
                except Exception as exc:  # each send pass holds one of its own instead
                    log.error("reply sender lease: %s", " ".join(str(exc).split()))
                    sender.close()
                self._send_until_stopped(sender)
        finally:
            sender.close()

    def _send_until_stopped(self, sender: Workspace) -> None:
        stopping = False
        next_sweep = time.monotonic()  # at once: what a killed serve left queued
        while not stopping:
            try:
                first = self.outbox.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                self._sweep(sender)
                next_sweep = time.monotonic() + SWEEP_SECONDS
                continue
            if first is None:
                break
            # A send pass has a fixed cost (providers, HTTP clients, templates): let the
            # replies of a burst of webhooks gather and go out in one pass.
            time.sleep(REPLY_GATHER_SECONDS)
            batch = [first]
            while len(batch) < SEND_BATCH and not self.outbox.empty():
                item = self.outbox.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                send_deliveries(sender, batch)
            except Exception:  # a failed pass must not stop later replies
                log.exception("sending %d replies failed", len(batch))

    def _sweep(self, sender: Workspace) -> None:
        """Send the replies waiting in the database (claims are guarded, so a reply that a
        ``run`` or this sender is sending already is not sent twice)."""
        try:
            # what dead senders (a killed serve or run) left in flight; a live one's stays
            recover(sender, clock.iso(clock.now()))
            while True:
                due = sender.store.deliveries.due_reply_ids(clock.iso(clock.now()), SEND_BATCH)
                if not due:
                    return
                summary = send_deliveries(sender, due)
                if len(due) < SEND_BATCH or summary.interrupted:
                    return
        except (OutreachError, sqlite3.Error) as exc:
            # the webhook side reports a damaged database or a full disk; keep trying later
            log.error("sending queued replies: %s", " ".join(str(exc).split()))
            sender.close()
        except Exception:  # a failed sweep must not stop the sender
            log.exception("sending queued replies failed")
