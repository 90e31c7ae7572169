"""The sender tasks of one network channel: at most ``size`` at once, taking prepared
messages from one queue in claim order.

A task per message, each waiting on a semaphore, cost more CPU than the send itself
leaves to spare, so a few long-lived tasks each send until the queue is empty and the
channel worker starts more when it adds to the queue.

A task leaves the pool in the same step that it finds the queue empty. Counted until its
done callbacks ran instead (a turn later), the tasks that had all just finished in the
turn the worker topped up looked busy: none was started, and the messages put in that
turn waited in the queue with nobody to send them (a stopped run left them ``sending``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SenderPool(Generic[T]):
    """Send each item ``put`` with ``send``, in order, by at most ``size`` tasks."""

    def __init__(self, size: int, send: Callable[[T], Awaitable[None]]) -> None:
        self.size = size
        self.queue: deque[T] = deque()
        self._send = send
        self._tasks: set[asyncio.Task[None]] = set()

    def put(self, item: T) -> None:
        self.queue.append(item)

    def top_up(self) -> None:
        """Start tasks for what waits in the queue, up to ``size`` in all."""
        for _ in range(min(len(self.queue), self.size - len(self._tasks))):
            task = asyncio.create_task(self._run())
            self._tasks.add(task)
            # a task cancelled before its first step never reaches its ``finally``
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until everything put has been sent (or has failed: raised here)."""
        self.top_up()
        if self._tasks:  # nothing is put meanwhile: these are the last
            await asyncio.gather(*self._tasks)

    async def _run(self) -> None:
        try:
            while self.queue:
                await self._send(self.queue.popleft())
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
