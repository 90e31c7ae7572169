"""The sending processes and their leases on SQLite.

Times are SQLite's own ``'now'`` (the real time of this host, the only one a SQLite file
has), never the clock a run may be given with ``--now``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..interface import Workers
from ..rows import iter_dicts

if TYPE_CHECKING:
    from . import SqliteStore

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


class SqliteWorkers(Workers):
    """Workers on SQLite."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.conn = store.conn

    def register(self, host: str, pid: int, kind: str) -> int:
        with self.store.write() as conn:
            cur = conn.execute(
                "INSERT INTO workers (host, pid, kind, started_at, heartbeat_at) "
                f"VALUES (?, ?, ?, {NOW}, {NOW})",
                (host, pid, kind),
            )
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

    def heartbeat(self, worker_id: int, host: str, pid: int, kind: str) -> None:
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO workers (id, host, pid, kind, started_at, heartbeat_at) "
                f"VALUES (?, ?, ?, ?, {NOW}, {NOW}) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (worker_id, host, pid, kind),
            )

    def unregister(self, worker_id: int) -> None:
        with self.store.write() as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def on_host(self, host: str) -> list[tuple[int, int]]:
        rows = self.conn.execute("SELECT id, pid FROM workers WHERE host = ?", (host,))
        return [(int(i), int(p)) for i, p in rows]

    def list_workers(self) -> list[dict[str, Any]]:
        return list(
            iter_dicts(
                self.conn.execute(
                    "SELECT id, host, pid, kind, started_at, "
                    "(julianday('now') - julianday(heartbeat_at)) * 86400.0 AS heartbeat_age "
                    "FROM workers ORDER BY id"
                )
            )
        )
