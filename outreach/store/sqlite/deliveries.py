"""Occurrences and deliveries on SQLite: planning, claiming, recording results.

Every state change of a delivery is one UPDATE guarded by its old state, so that two
processes (a ``run`` and ``serve`` sending a reply) can never both send the same delivery.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..interface import DELIVERY_COLUMNS, Deliveries, SendResult
from ..lookups import DeliveryLookups
from ..rows import chunks, column_names, marks, to_dicts

if TYPE_CHECKING:
    import sqlite3

    from . import SqliteStore

# what a send needs of a claimed delivery (fewer columns: less to decode while holding
# the write lock, smaller dicts)
CLAIMED = ", ".join(
    f"d.{c}"
    for c in (
        "id",
        "campaign",
        "occurrence",
        "customer_id",
        "channel",
        "purpose",
        "template",
        "window",
        "attempts",
        "context",
        "not_before",
        "created_at",
    )
)


def state_list(states: Sequence[str]) -> str:
    """Delivery states as SQL literals, ``'queued', 'deferred'``: a partial index over some
    states serves only a query that names them as its definition does, not as parameters."""
    if not all(str(s).isidentifier() for s in states):
        raise ValueError(f"not delivery states: {states!r}")
    return ", ".join(f"'{s}'" for s in states)


class SqliteDeliveries(DeliveryLookups, Deliveries):
    """Deliveries on SQLite."""

    conn: sqlite3.Connection

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.conn = store.conn

    def begin_occurrence(
        self, campaign: str, occurrence: str, kind: str, survey: dict[str, Any] | None, at: str
    ) -> None:
        """Record that planning of an occurrence started (idempotent)."""
        with self.store.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO occurrences (campaign, occurrence, kind, "
                "status, planned_at, "
                "survey) VALUES (?, ?, ?, 'planning', ?, ?)",
                (campaign, occurrence, kind, at, json.dumps(survey) if survey else None),
            )

    def finish_occurrence(self, campaign: str, occurrence: str, audience: int) -> None:
        with self.store.write() as conn:
            conn.execute(
                "UPDATE occurrences SET status = 'planned', audience = ? "
                "WHERE campaign = ? AND occurrence = ?",
                (audience, campaign, occurrence),
            )

    def record_missed(self, campaign: str, occurrence: str, kind: str, at: str) -> None:
        with self.store.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO occurrences (campaign, occurrence, kind, "
                "status, planned_at) "
                "VALUES (?, ?, ?, 'missed', ?)",
                (campaign, occurrence, kind, at),
            )

    def insert_deliveries(self, rows: Sequence[Sequence[Any]]) -> int:
        """Insert planned deliveries (DELIVERY_COLUMNS order); existing keys are kept as they are.

        The unique key (campaign, occurrence, customer) makes planning idempotent: a re-plan
        after a crash inserts only what is missing. Only that key is ignored: a delivery id
        taken twice is an error, never a customer silently left out. Caller holds the
        transaction.
        """
        cols = ", ".join(f'"{c}"' for c in DELIVERY_COLUMNS)
        cur = self.conn.executemany(
            f"INSERT INTO deliveries ({cols}) VALUES ({marks(DELIVERY_COLUMNS)}) "
            "ON CONFLICT (campaign, occurrence, customer_id) WHERE purpose = 'campaign' DO NOTHING",
            rows,
        )
        return cur.rowcount

    def cap_usage(
        self,
        ids: Sequence[str],
        since: str,
        campaign: str | None = None,
        *,
        states: Sequence[str],
    ) -> dict[str, int]:
        """customer → cap-counting campaign deliveries since ``since`` (optionally one campaign)."""
        out: dict[str, int] = {}
        in_states = ", ".join(f"'{s}'" for s in states)
        for chunk in chunks(ids):
            sql = (
                "SELECT customer_id, count(*) FROM deliveries WHERE customer_id IN "
                f"({marks(chunk)}) "
                f"AND counts_for_cap = 1 AND status IN ({in_states}) "
                f"AND coalesce(sent_at, not_before) >= ?"
            )
            params: list[Any] = [*chunk, since]
            if campaign is not None:
                sql += " AND campaign = ?"
                params.append(campaign)
            for cid, n in self.conn.execute(sql + " GROUP BY customer_id", params):
                out[cid] = n
        return out

    def in_flight_of(self, worker: int) -> dict[str, str]:
        """The ``sending`` deliveries claimed by ``worker``: id → channel."""
        rows = self.conn.execute(
            "SELECT id, channel FROM deliveries WHERE status = 'sending' AND claimed_by = ?",
            (worker,),
        )
        return dict(rows.fetchall())

    def recover_in_flight(
        self,
        idempotent_channels: Iterable[str],
        at: str,
        *,
        lease: float,
        dead: Sequence[int] = (),
    ) -> dict[str, int]:
        """After a crash: a dead claimer's ``sending`` rows become ``unknown``; on idempotent
        channels, ``queued``.

        A claimer is alive while its heartbeat is younger than ``lease`` seconds and the
        caller has not found its pid gone (``dead``); any other ``sending`` row was left by
        a process that died between claiming and recording. A resend on a channel that
        cannot duplicate (outbox files, idempotency keys) is safe, so those go back to the
        queue.
        """
        safe = list(idempotent_channels)
        channels = marks(safe) or "NULL"
        gone = list(dead)
        cutoff = f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{float(lease):.3f} seconds')"
        found_dead = f" AND id NOT IN ({marks(gone)})" if gone else ""
        # NULL (no claimer) is not in the list of live ones either
        orphaned = (
            "status = 'sending' AND coalesce(claimed_by NOT IN (SELECT id FROM workers "
            f"WHERE heartbeat_at >= {cutoff}{found_dead}), 1)"
        )
        with self.store.write() as conn:
            requeued = conn.execute(
                f"UPDATE deliveries SET status = 'queued', claimed_by = NULL, updated_at = ? "
                f"WHERE {orphaned} AND channel IN ({channels})",
                [at, *gone, *safe],
            ).rowcount
            unknown = conn.execute(
                "UPDATE deliveries SET status = 'unknown', reason = 'in_flight_at_crash', "
                f"updated_at = ? WHERE {orphaned}",
                [at, *gone],
            ).rowcount
            conn.execute(
                f"DELETE FROM workers WHERE heartbeat_at < {cutoff}"
                + (f" OR id IN ({marks(gone)})" if gone else ""),
                gone,
            )
        return {"requeued": requeued, "unknown": unknown}

    @contextmanager
    def planning_lock(self, campaign: str, occurrence: str, *, caps: bool) -> Iterator[bool]:
        """Always granted: on SQLite one ``run`` at a time holds the workspace lock."""
        yield True

    def planning_elsewhere(self, campaign: str, occurrence: str) -> bool:
        return False

    def retry_unknown(self, at: str) -> int:
        """``run --retry-unknown``: put unknown deliveries back in the queue."""
        with self.store.write() as conn:
            return conn.execute(
                "UPDATE deliveries SET status = 'queued', reason = NULL, updated_at = ? "
                "WHERE status = 'unknown'",
                (at,),
            ).rowcount

    def claim_due(
        self,
        now: str,
        limit: int,
        *,
        campaigns: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        from_states: Sequence[str],
        worker: int | None = None,
    ) -> list[dict[str, Any]]:
        """Move up to ``limit`` due deliveries to ``sending`` and return them with consent.

        One transaction: select due rows, re-read each customer's current consent on the
        delivery's channel (the check right before the send), and mark them ``sending`` with an
        UPDATE guarded by their old state.
        """
        where: list[str] = [f"d.status IN ({state_list(from_states)})"]
        params: list[Any] = []
        if ids is not None:
            # +: look the ids up by key, not the (partial) claim index by status
            where = [f"d.id IN ({marks(ids)})", f"+d.status IN ({state_list(from_states)})"]
            params.extend(ids)
        else:
            where.append("d.not_before <= ?")
            params.append(now)
        if campaigns:
            where.append(f"d.campaign IN ({marks(campaigns)})")
            params.extend(campaigns)
        if channels is not None:
            # one channel (a send pass's) is "channel = ?" to SQLite: one ordered range
            where.append(f"d.channel IN ({marks(channels) or 'NULL'})")
            params.extend(channels)
        # The due states written out as in the partial index deliveries_claim (m212), which
        # SQLite uses only for a WHERE naming them so: one range in (not_before, id) order
        # that stops at the LIMIT, with no merge of a range per state and no temporary
        # b-tree.
        sql = (
            f"SELECT {CLAIMED}, (SELECT c.status FROM consent c WHERE c.customer_id "
            "= d.customer_id AND c.channel = d.channel ORDER BY c.id DESC LIMIT 1) AS consent "
            f"FROM deliveries d WHERE {' AND '.join(where)} "
            "ORDER BY d.not_before, d.id LIMIT ?"
        )
        params.append(limit)
        # other processes wait for this transaction: do in it only what must be done in it
        with self.store.joined() as conn:
            cur = conn.execute(sql, params)
            names = column_names(cur)
            found = cur.fetchall()
            if found:
                key = names.index("id")
                # one row at a time by key: an id list would be copied into a temporary
                # b-tree on every claim
                conn.executemany(
                    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, "
                    "claimed_by = ?, updated_at = ? "
                    f"WHERE id = ? AND +status IN ({state_list(from_states)})",
                    [(worker, now, r[key]) for r in found],
                )
        return to_dicts(names, found)

    def record_results(
        self,
        updates: Sequence[SendResult],
        outbound: Sequence[dict[str, Any]],
    ) -> None:
        """Write send results in one transaction, each guarded by the ``sending`` state.

        ``updates``: id, status, and optionally reason, error, provider_message_id, sent_at,
        not_before. ``outbound``: messages to append to conversations (sent ones).
        """
        params = [
            (
                u.status,
                u.reason,
                u.error,
                u.provider_message_id,
                u.sent_at,
                u.not_before,
                int(u.attempts_back),
                u.at,
                u.id,
            )
            for u in updates
        ]  # built before the transaction, which other processes wait for
        with self.store.joined() as conn:
            conn.executemany(
                "UPDATE deliveries SET status = ?, reason = ?, error = ?, "
                "provider_message_id = coalesce(?, provider_message_id), "
                "sent_at = coalesce(?, sent_at), not_before = coalesce(?, not_before), "
                "attempts = attempts - ?, updated_at = ? WHERE id = ? AND status = 'sending'",
                params,
            )
            if outbound:
                self.store.conversations.record_outbound(list(outbound))
