"""Shared send rates on SQLite: one row per key holds the next free slot (see Limits).

Every process of a SQLite workspace is on one machine, so the clock is this machine's
monotonic clock (one for all its processes, and never stepped back as the wall clock can
be), read while the write lock is held (a reservation that waited for the lock must not
start from the time it began waiting). A clock behind the last reservation (the machine
has restarted) moves the schedule back by as much, so it never waits for a time that will
not come.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..interface import Limits

if TYPE_CHECKING:
    from . import SqliteStore

_RESERVE = (
    "INSERT INTO rate_limits (key, next_at, reserved_at) VALUES (:key, :now + :span, :now) "
    "ON CONFLICT (key) DO UPDATE SET next_at = max(CASE WHEN reserved_at > :now "
    "THEN next_at - (reserved_at - :now) ELSE next_at END, :now) + :span, reserved_at = :now "
    "RETURNING next_at"
)


class SqliteLimits(Limits):
    """Limits on SQLite."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def reserve(self, key: str, per_second: float, count: int) -> float:
        span = count / per_second

        def work() -> float:
            with self.store.write() as conn:
                now = time.monotonic()
                values = {"key": key, "now": now, "span": span}
                (next_at,) = conn.execute(_RESERVE, values).fetchone()
            return max(0.0, float(next_at) - span - now)

        # polls for the lock where serve's reply sender has turned the busy handler off
        return self.store.when_unlocked(work)
