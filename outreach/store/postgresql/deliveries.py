"""Occurrences and deliveries on PostgreSQL: planning, claiming, recording results.

Every state change of a delivery is one UPDATE guarded by its old state, so that two
processes (a ``run`` and ``serve`` sending a reply) can never both send the same delivery.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

from ..interface import DELIVERY_COLUMNS, Deliveries, SendResult
from ..lookups import DeliveryLookups
from ..rows import dicts, quote
from ..shared.dialect import POSTGRESQL
from .sql import columns, literals, marks, unit_of_work

if TYPE_CHECKING:
    from . import PgStore
    from .sql import Connection

# the advisory lock that cap-counting plans take one after another (see planning_lock)
CAPS_KEY = int.from_bytes(hashlib.sha256(b"outreach caps").digest()[:8], "big", signed=True)


def advisory_key(campaign: str, occurrence: str) -> int:
    """The bigint advisory lock of planning one occurrence (64 bits of a hash: two
    occurrences sharing one is as likely as a random collision of 64-bit numbers)."""
    digest = hashlib.sha256(f"{campaign}\0{occurrence}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _unlock(conn: Connection, key: int) -> None:
    # a connection that is gone has released its locks already
    if conn.raw.closed:
        return
    with contextlib.suppress(psycopg.OperationalError):
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


# what a send needs of a claimed delivery; attempts as they were before this claim
CLAIMED_RETURNING = ", ".join(
    [
        *(
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
                "context",
                "not_before",
                "created_at",
            )
        ),
        "d.attempts - 1 AS attempts",
    ]
)


# the array type of each delivery column that is not text, for ``unnest``
_TYPES = {"counts_for_cap": "int"}


class PgDeliveries(DeliveryLookups, Deliveries):
    """Deliveries on PostgreSQL."""

    dialect = POSTGRESQL
    conn: Connection

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.conn = store.conn

    @unit_of_work
    def begin_occurrence(
        self, campaign: str, occurrence: str, kind: str, survey: dict[str, Any] | None, at: str
    ) -> None:
        """Record that planning of an occurrence started (idempotent)."""
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO occurrences (campaign, occurrence, kind, "
                "status, planned_at, "
                "survey) VALUES (%s, %s, %s, 'planning', %s, %s) ON CONFLICT DO NOTHING",
                (campaign, occurrence, kind, at, json.dumps(survey) if survey else None),
            )

    @unit_of_work
    def finish_occurrence(self, campaign: str, occurrence: str, audience: int) -> None:
        with self.store.write() as conn:
            conn.execute(
                "UPDATE occurrences SET status = 'planned', audience = %s "
                "WHERE campaign = %s AND occurrence = %s",
                (audience, campaign, occurrence),
            )

    @unit_of_work
    def record_missed(self, campaign: str, occurrence: str, kind: str, at: str) -> None:
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO occurrences (campaign, occurrence, kind, "
                "status, planned_at) "
                "VALUES (%s, %s, %s, 'missed', %s) ON CONFLICT DO NOTHING",
                (campaign, occurrence, kind, at),
            )

    def insert_deliveries(self, rows: Sequence[Sequence[Any]]) -> int:
        """Insert planned deliveries (DELIVERY_COLUMNS order); existing keys are kept as they are.

        The unique key (campaign, occurrence, customer) makes planning idempotent: a re-plan
        after a crash inserts only what is missing. Only that key is ignored: a delivery id
        taken twice is an error, never a customer silently left out. Caller holds the
        transaction.

        A new occurrence's rows go in with COPY (a third of the server's time of an INSERT
        per row); COPY cannot skip a key that is there already, so a batch that meets one
        (a re-plan) is rolled back to its savepoint and inserted with ON CONFLICT instead.
        """
        if not rows:
            return 0
        try:
            with self.store.raw.transaction():
                return self.conn.copy_rows("deliveries", DELIVERY_COLUMNS, rows)
        except pg_errors.UniqueViolation:
            pass
        cols = ", ".join(quote(c) for c in DELIVERY_COLUMNS)
        arrays = ", ".join(f"%s::{_TYPES.get(c, 'text')}[]" for c in DELIVERY_COLUMNS)
        return self.conn.execute(
            f"INSERT INTO deliveries ({cols}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT (campaign, occurrence, customer_id) WHERE purpose = 'campaign' DO NOTHING",
            columns(rows, len(DELIVERY_COLUMNS)),
        ).rowcount

    def cap_usage(
        self,
        ids: Sequence[str],
        since: str,
        campaign: str | None = None,
        *,
        states: Sequence[str],
    ) -> dict[str, int]:
        """customer → cap-counting campaign deliveries since ``since`` (optionally one campaign)."""
        if not ids:
            return {}
        # counted per customer, by deliveries_cap: a plain IN query let the planner (with
        # no statistics yet on a table that planning fills) scan every delivery by status,
        # once per batch
        sql = (
            "SELECT u.id, (SELECT count(*) FROM deliveries d WHERE d.customer_id = u.id "
            f"AND d.counts_for_cap = 1 AND d.status IN ({literals(states)}) "
            "AND coalesce(d.sent_at, d.not_before) >= %s"
            + (" AND d.campaign = %s" if campaign is not None else "")
            + ") AS n FROM unnest(%s::text[]) AS u(id)"
        )
        params: list[Any] = [since, *([campaign] if campaign is not None else []), list(ids)]
        return {cid: n for cid, n in self.conn.execute(sql, params) if n}

    @unit_of_work
    def in_flight_of(self, worker: int) -> dict[str, str]:
        """The ``sending`` deliveries claimed by ``worker``: id → channel, locked until the
        caller's transaction ends (a second recoverer waits, then finds them changed)."""
        rows = self.conn.execute(
            "SELECT id, channel FROM deliveries WHERE status = 'sending' "
            "AND claimed_by = %s FOR UPDATE",
            (worker,),
        ).fetchall()
        return {r[0]: r[1] for r in rows}

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

        A claimer is alive while its heartbeat (the server's clock) is younger than
        ``lease`` seconds and the caller has not found its pid gone (``dead``); any other
        ``sending`` row was left by a process that died between claiming and recording.
        Many processes on many hosts may recover at once: each row changes once, guarded by
        its ``sending`` state. A resend on a channel that cannot duplicate (outbox files,
        idempotency keys) is safe, so those go back to the queue.
        """
        safe = list(idempotent_channels)
        gone = list(dead)
        # NULL (no claimer) is not in the list of live ones either
        orphaned = (
            "status = 'sending' AND coalesce(claimed_by NOT IN (SELECT id FROM workers "
            "WHERE heartbeat_at >= clock_timestamp() - make_interval(secs => %s) "
            "AND id <> ALL(%s::bigint[])), true)"
        )
        with self.store.write() as conn:
            requeued = conn.execute(
                "UPDATE deliveries SET status = 'queued', claimed_by = NULL, updated_at = %s "
                f"WHERE {orphaned} AND channel = ANY(%s::text[])",
                [at, float(lease), gone, safe],
            ).rowcount
            unknown = conn.execute(
                "UPDATE deliveries SET status = 'unknown', reason = 'in_flight_at_crash', "
                f"updated_at = %s WHERE {orphaned}",
                [at, float(lease), gone],
            ).rowcount
            conn.execute(
                "DELETE FROM workers WHERE heartbeat_at < clock_timestamp() - "
                "make_interval(secs => %s) OR id = ANY(%s::bigint[])",
                [float(lease), gone],
            )
        return {"requeued": requeued, "unknown": unknown}

    @contextmanager
    def planning_lock(self, campaign: str, occurrence: str, *, caps: bool) -> Iterator[bool]:
        """A session advisory lock per occurrence: one process plans it, the others skip
        it; the server releases it when the planner's connection ends (it died), and the
        next process to take it re-plans idempotently.

        Frequency caps count deliveries that other plans write: two processes planning two
        cap-counting campaigns side by side would each read the other's customers as
        unused (neither sees the other's uncommitted batch), and both plan them. There is
        no row to lock for "this customer's count", so every cap-counting plan takes one
        more lock, the same for all, and they run one after another.
        """
        key = advisory_key(campaign, occurrence)
        if not self.conn.one("SELECT pg_try_advisory_lock(%s)", (key,))[0]:
            yield False
            return
        # the locks live in this session: a new one takes them again, or stops the plan
        locks = self.conn.session_locks
        locks.append(key)
        try:
            if caps:
                # always after an occurrence's lock: one order for all, no deadlock
                self.conn.execute("SELECT pg_advisory_lock(%s)", (CAPS_KEY,))
                locks.append(CAPS_KEY)
            try:
                yield True
            finally:
                if caps:
                    locks.remove(CAPS_KEY)
                    _unlock(self.conn, CAPS_KEY)
        finally:
            locks.remove(key)
            _unlock(self.conn, key)

    def planning_elsewhere(self, campaign: str, occurrence: str) -> bool:
        """Read from pg_locks (a try-lock would take the lock for a moment, and another
        process trying then would skip an occurrence that nobody plans)."""
        key = advisory_key(campaign, occurrence) & 0xFFFFFFFFFFFFFFFF
        row = self.conn.one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::text::bigint = %s AND objid::text::bigint = %s AND objsubid = 1 "
            "AND pid <> pg_backend_pid())",
            (key >> 32, key & 0xFFFFFFFF),
        )
        return bool(row[0])

    @unit_of_work
    def retry_unknown(self, at: str) -> int:
        """``run --retry-unknown``: put unknown deliveries back in the queue."""
        with self.store.write() as conn:
            return conn.execute(
                "UPDATE deliveries SET status = 'queued', reason = NULL, updated_at = %s "
                "WHERE status = 'unknown'",
                (at,),
            ).rowcount

    @unit_of_work
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
        where: list[str] = []
        params: list[Any] = []
        if ids is not None:
            where.append(f"d.id IN ({marks(ids)})")
            params.extend(ids)
        else:
            where.append("d.not_before <= %s")
            params.append(now)
        if campaigns:
            where.append(f"d.campaign IN ({marks(campaigns)})")
            params.extend(campaigns)
        if channels is not None:
            where.append(f"d.channel IN ({marks(channels) or 'NULL'})")
            params.extend(channels)
        # Rows another claimer holds are skipped, not waited for, so any number of
        # processes claim side by side; a row locked here is re-read when its lock is
        # taken, so the status test holds for the latest version (never a stale one).
        # The states are written in, not passed: then the planner walks the partial index
        # of due deliveries (deliveries_claim_due) in order and stops at the limit, instead
        # of sorting the whole backlog for every claim.
        states = literals(from_states)
        sql = (
            "WITH due AS (SELECT d.id FROM deliveries d "
            f"WHERE d.status IN ({states}) AND {' AND '.join(where)} "
            "ORDER BY d.not_before, d.id LIMIT %s FOR UPDATE SKIP LOCKED) "
            "UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1, "
            "claimed_by = %s, updated_at = %s FROM due WHERE d.id = due.id "
            f"AND d.status IN ({states}) "
            f"RETURNING {CLAIMED_RETURNING}, (SELECT c.status FROM consent c "
            "WHERE c.customer_id = d.customer_id AND c.channel = d.channel "
            "ORDER BY c.id DESC LIMIT 1) AS consent"
        )
        with self.store.write() as conn:
            claimed = dicts(conn.execute(sql, [*params, limit, worker, now]))
        claimed.sort(key=lambda row: (row["not_before"], row["id"]))
        return claimed

    @unit_of_work
    def record_results(
        self,
        updates: Sequence[SendResult],
        outbound: Sequence[dict[str, Any]],
    ) -> None:
        """Write send results in one transaction, each guarded by the ``sending`` state.

        ``updates``: id, status, and optionally reason, error, provider_message_id, sent_at,
        not_before. ``outbound``: messages to append to conversations (sent ones).
        """
        # One statement for the whole batch: the results travel as one JSON array of
        # rows, joined by id (json.dumps costs a tenth of binding nine arrays of them).
        payload = json.dumps(
            [
                (
                    u.id,
                    u.status,
                    u.reason,
                    u.error,
                    u.provider_message_id,
                    u.sent_at,
                    u.not_before,
                    int(u.attempts_back),
                    u.at,
                )
                for u in updates
            ]
        )  # built before the transaction, which other processes wait for
        with self.store.write() as conn:
            if updates:
                conn.execute(
                    "UPDATE deliveries d SET status = u.r->>1, reason = u.r->>2, "
                    "error = u.r->>3, "
                    "provider_message_id = coalesce(u.r->>4, d.provider_message_id), "
                    "sent_at = coalesce(u.r->>5, d.sent_at), "
                    "not_before = coalesce(u.r->>6, d.not_before), "
                    "attempts = d.attempts - (u.r->>7)::int, updated_at = u.r->>8 "
                    "FROM json_array_elements(%s::json) AS u(r) "
                    "WHERE d.id = u.r->>0 AND d.status = 'sending'",
                    (payload,),
                )
            if outbound:
                self.store.conversations.record_outbound(list(outbound))
