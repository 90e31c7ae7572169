"""The sending processes and their leases on PostgreSQL.

Heartbeats are the server's ``clock_timestamp()``: every host compares leases on one
clock, whatever its own says, and never the clock a run may be given with ``--now``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..interface import Workers
from ..rows import dicts
from .sql import unit_of_work

if TYPE_CHECKING:
    from . import PgStore


class PgWorkers(Workers):
    """Workers on PostgreSQL."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.conn = store.conn

    @unit_of_work
    def register(self, host: str, pid: int, kind: str) -> int:
        row = self.conn.one(
            "INSERT INTO workers (host, pid, kind) VALUES (%s, %s, %s) RETURNING id",
            (host, pid, kind),
        )
        return int(row[0])

    @unit_of_work
    def heartbeat(self, worker_id: int, host: str, pid: int, kind: str) -> None:
        self.conn.execute(
            "INSERT INTO workers (id, host, pid, kind) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp()",
            (worker_id, host, pid, kind),
        )

    @unit_of_work
    def unregister(self, worker_id: int) -> None:
        self.conn.execute("DELETE FROM workers WHERE id = %s", (worker_id,))

    def on_host(self, host: str) -> list[tuple[int, int]]:
        rows = self.conn.execute("SELECT id, pid FROM workers WHERE host = %s", (host,))
        return [(int(i), int(p)) for i, p in rows]

    def list_workers(self) -> list[dict[str, Any]]:
        return dicts(
            self.conn.execute(
                "SELECT id, host, pid, kind, "
                "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                "AS started_at, "
                "extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS heartbeat_age "
                "FROM workers ORDER BY id"
            )
        )
