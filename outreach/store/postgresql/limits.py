"""Shared send rates on PostgreSQL: one row per key holds the next free slot (see Limits).

One atomic upsert per reservation, on the server's clock (``clock_timestamp()``, read
after the row lock is taken, so a reservation that waited for another starts from the time
it got the row): the senders' hosts may disagree about the time, the server is one clock.
Only the wait leaves the server, so no host's clock is ever compared with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..interface import Limits
from .sql import unit_of_work

if TYPE_CHECKING:
    from . import PgStore

_NOW = "extract(epoch FROM clock_timestamp())::float8"
# a server clock found behind the last reservation (stepped back) moves the schedule back
# by as much, so that no send waits for the time it lost
_NEXT = (
    f"CASE WHEN r.reserved_at > {_NOW} THEN r.next_at - (r.reserved_at - {_NOW}) ELSE r.next_at END"
)
_RESERVE = (
    "INSERT INTO rate_limits AS r (key, next_at, reserved_at) "
    f"VALUES (%s, {_NOW} + %s, {_NOW}) "
    f"ON CONFLICT (key) DO UPDATE SET next_at = greatest({_NEXT}, {_NOW}) + %s, "
    f"reserved_at = {_NOW} "
    "RETURNING next_at - %s - reserved_at"
)


class PgLimits(Limits):
    """Limits on PostgreSQL."""

    def __init__(self, store: PgStore) -> None:
        self.store = store

    # run again after a lost session: a reservation committed but not answered only
    # leaves slots unused, never a send above the rate
    @unit_of_work
    def reserve(self, key: str, per_second: float, count: int) -> float:
        span = count / per_second
        (wait,) = self.store.conn.one(_RESERVE, (key, span, span, span))
        # the two clock readings of one statement differ by microseconds
        return max(0.0, float(wait))
