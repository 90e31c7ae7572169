"""Raw emails → the inbox, in batches: one write transaction per batch, replies sent after.

Both ways in (``replies ingest --format eml|mbox|maildir`` and ``replies sync``) hand raw
messages to a ``MailFeed``; it parses them (``events.py``), applies a batch with
``inbound.apply_events`` and, when the caller asks, writes a mailbox position in the same
transaction, so that what was stored and where the sync stands can never disagree. Queued
replies (confirmations, follow-ups, the out-of-hours reply) are sent after each commit,
never while the database lock is held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import clock
from ..channels import address_kind
from ..channels.base import InboundEvent
from ..conversations.inbox import InboundSummary, Inbox, apply_events
from ..errors import UsageError
from .events import email_events

if TYPE_CHECKING:
    from ..config import Config
    from ..workspace import Workspace

BATCH_SIZE = 500


def email_channel(config: Config, channel: str | None) -> str:
    """``channel`` (checked), or the workspace's one email channel."""
    if channel is not None:
        config.channel(channel)
        return channel
    emails = [c.name for c in config.channels.values() if address_kind(c) == "email"]
    if len(emails) != 1:
        raise UsageError(
            "say which channel these emails came in on with --channel "
            f"(email channels: {', '.join(emails) or 'none'})"
        )
    return emails[0]


class MailFeed:
    """Feeds raw emails of one channel to the inbox; ``close`` flushes the rest."""

    def __init__(
        self, ws: Workspace, channel: str, *, send: bool = True, batch_size: int = BATCH_SIZE
    ) -> None:
        self.ws = ws
        self.channel = channel
        self.send = send
        self.batch_size = batch_size
        self.summary = InboundSummary()
        self.inbox = Inbox(ws.store, ws.config)
        self._batch: list[tuple[int, InboundEvent]] = []
        self._count = 0
        self._in_batch = 0

    def add(self, raw: bytes, *, size: int | None = None) -> None:
        """One email; ``size`` is its full size when ``raw`` is only its beginning."""
        self._count += 1
        self._in_batch += 1
        for event in email_events(raw, self.channel, size=size, now=clock.now()):
            self._batch.append((self._count, event))

    @property
    def pending(self) -> int:
        """Emails added since the last flush."""
        return self._in_batch

    def flush(self, also: Callable[[], None] | None = None) -> None:
        """Apply what was added in one transaction; ``also`` writes in the same one."""
        store = self.ws.store
        done = InboundSummary()

        def apply() -> None:
            # one unit of work, counted once committed: run again from a fresh summary
            # if the database rolled it back (a lost connection, a deadlock)
            nonlocal done
            done = InboundSummary()
            with store.write():
                if self._batch:
                    apply_events(store, self.ws.config, self._batch, done, self.inbox)
                if also is not None:
                    also()

        store.retrying(apply)
        self.summary.add(done)
        self._batch.clear()
        self._in_batch = 0
        queued = done.replies_queued
        if self.send and queued:
            from ..sending.engine import send_replies

            sent, problems = send_replies(self.ws, queued)
            self.summary.replies_sent += sent
            self.summary.problems.extend(problems)

    def maybe_flush(self) -> None:
        if self._in_batch >= self.batch_size:
            self.flush()
