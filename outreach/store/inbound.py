"""SQL for inbound work: conversation state, open surveys, survey responses, status events,
and the conversation listings and transcripts that agents read.

Every writing function expects the caller to hold the write transaction (``store.write()``),
so that one inbound message, with everything it causes, commits or rolls back as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import Store, chunks, marks

# Delivery statuses a status event may move *from*, per target status: a late "sent"
# callback never undoes "delivered", and only a message still on its way can fail.
# ``unknown`` (in flight when a run died) is resolved by any proof that it went out.
_MOVES_FROM: dict[str, tuple[str, ...]] = {
    "sending": ("queued",),
    "sent": ("queued", "sending", "unknown"),
    "delivered": ("queued", "sending", "sent", "unknown"),
    "read": ("queued", "sending", "sent", "delivered", "unknown"),
    "failed": ("queued", "sending", "sent"),
}

_CONVERSATION_COLUMNS = (
    "id", "customer_id", "status", "needs_attention", "attention_reason", "last_inbound_at",
    "last_inbound_channel", "auto_reply_until", "created_at", "updated_at",
)


def get_conversation(store: Store, customer_id: str) -> dict[str, Any] | None:
    """The customer's conversation row, or None."""
    row = store.conn.execute(
        f"SELECT {', '.join(_CONVERSATION_COLUMNS)} FROM conversations WHERE customer_id = ?",
        (customer_id,),
    ).fetchone()
    return dict(zip(_CONVERSATION_COLUMNS, row, strict=True)) if row else None


def update_conversation(store: Store, conversation_id: int, **fields: Any) -> None:
    """Set columns of one conversation (``updated_at`` must be among them)."""
    assignments = ", ".join(f"{name} = ?" for name in fields)
    store.conn.execute(
        f"UPDATE conversations SET {assignments} WHERE id = ?", (*fields.values(), conversation_id)
    )


def save_conversations(store: Store, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write back the state of conversations (rows as ``get_conversation`` returns them)."""
    store.conn.executemany(
        "UPDATE conversations SET status = :status, needs_attention = :needs_attention, "
        "attention_reason = :attention_reason, last_inbound_at = :last_inbound_at, "
        "last_inbound_channel = :last_inbound_channel, auto_reply_until = :auto_reply_until, "
        "updated_at = :updated_at WHERE id = :id",
        list(rows),
    )


def open_survey_candidates(store: Store, customer_id: str) -> list[dict[str, Any]]:
    """The customer's latest sent survey deliveries, newest first, without a valid answer.

    The caller checks the message's time against ``sent_at`` and expiry
    (``sent_at + expires_seconds``).
    """
    cur = store.conn.execute(
        """
        SELECT d.id AS delivery_id, d.campaign, d.occurrence, d.sent_at, o.survey
        FROM deliveries d
        JOIN occurrences o ON o.campaign = d.campaign AND o.occurrence = d.occurrence
        WHERE d.customer_id = ? AND d.purpose = 'campaign'
          AND d.status IN ('sent', 'delivered', 'read')
          AND d.sent_at IS NOT NULL
          AND o.survey IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM survey_responses r WHERE r.delivery_id = d.id AND r.valid = 1)
        ORDER BY d.sent_at DESC, d.id DESC
        LIMIT 5
        """,
        (customer_id,),
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


def insert_survey_response(store: Store, **fields: Any) -> None:
    """One survey_responses row (message_id, delivery_id, customer_id, campaign, occurrence,
    question, type, answer, score, valid, recorded_at)."""
    cols = list(fields)
    store.conn.execute(
        f"INSERT OR IGNORE INTO survey_responses ({', '.join(cols)}) "
        f"VALUES ({marks(cols)})",
        tuple(fields.values()),
    )


def apply_status(
    store: Store,
    provider_message_id: str,
    status: str,
    at: str,
    error: str | None = None,
    reason: str | None = None,
) -> int:
    """Move the delivery with this provider message id to ``status``, never backwards.

    Returns how many deliveries changed (0 for an unknown id, a stale or repeated event).
    """
    sources = _MOVES_FROM.get(status)
    if not sources:
        return 0
    states = marks(sources)
    if status == "failed":
        cur = store.conn.execute(
            f"UPDATE deliveries SET status = 'failed', error = coalesce(?, error), "
            f"reason = coalesce(?, reason, 'provider'), updated_at = ? "
            f"WHERE provider_message_id = ? AND status IN ({states})",
            (error, reason, at, provider_message_id, *sources),
        )
    else:
        cur = store.conn.execute(
            f"UPDATE deliveries SET status = ?, updated_at = ?, "
            f"sent_at = CASE WHEN ? IN ('sent', 'delivered', 'read') "
            f"THEN coalesce(sent_at, ?) ELSE sent_at END "
            f"WHERE provider_message_id = ? AND status IN ({states})",
            (status, at, status, at, provider_message_id, *sources),
        )
    return cur.rowcount


def customer_of_sent_message(store: Store, provider_message_id: str) -> str | None:
    """The customer a message with this provider id (an email's Message-ID) was sent to.

    Every Message-ID outreach writes is ``<DELIVERY-ID@domain>``, so the delivery id in it
    is tried too (the outbox records its own provider ids).
    """
    delivery_id = provider_message_id.strip("<> ").split("@")[0]
    row = store.conn.execute(
        "SELECT customer_id FROM deliveries WHERE provider_message_id IN (?, ?) OR id = ? "
        "LIMIT 1",
        (provider_message_id, provider_message_id.strip("<> "), delivery_id),
    ).fetchone()
    return str(row[0]) if row else None


def delivery_outcome(store: Store, delivery_id: str) -> dict[str, Any] | None:
    """status, reason and error of one delivery."""
    row = store.conn.execute(
        "SELECT status, reason, error, channel FROM deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()
    if row is None:
        return None
    return {"status": row[0], "reason": row[1], "error": row[2], "channel": row[3]}


def delivery_status_counts(store: Store, delivery_ids: Iterable[str]) -> dict[str, int]:
    """status → how many of these deliveries have it."""
    counts: dict[str, int] = {}
    for chunk in chunks(list(delivery_ids)):
        for status, n in store.conn.execute(
            f"SELECT status, count(*) FROM deliveries WHERE id IN ({marks(chunk)}) "
            "GROUP BY status",
            chunk,
        ):
            counts[status] = counts.get(status, 0) + n
    return counts


def wrote_since(
    store: Store, pairs: Iterable[tuple[str, str]], since: str
) -> set[tuple[str, str]]:
    """Which (customer id, channel) pairs have an inbound message at or after ``since``."""
    by_channel: dict[str, list[str]] = {}
    for customer_id, channel in set(pairs):
        by_channel.setdefault(channel, []).append(customer_id)
    found: set[tuple[str, str]] = set()
    for channel, ids in by_channel.items():
        for chunk in chunks(ids):
            found.update(
                (customer_id, channel)
                for (customer_id,) in store.conn.execute(
                    "SELECT DISTINCT customer_id FROM messages WHERE direction = 'in' "
                    f"AND channel = ? AND at >= ? AND customer_id IN ({marks(chunk)})",
                    [channel, since, *chunk],
                )
            )
    return found


def list_conversations(
    store: Store, *, needs_attention: bool = False, since: str | None = None
) -> Iterator[dict[str, Any]]:
    """Conversations with their customer's name and last message, most recent first."""
    where = ["1 = 1"]
    params: list[Any] = []
    if needs_attention:
        where.append("c.needs_attention = 1")
    sql = f"""
        SELECT c.customer_id, cu.name, cu.verified, c.status, c.needs_attention,
               c.attention_reason, c.last_inbound_at, c.last_inbound_channel,
               m.at AS last_message_at, m.channel AS last_channel,
               m.direction AS last_direction
        FROM conversations c
        JOIN customers cu ON cu.id = c.customer_id
        LEFT JOIN messages m ON m.id = (
            SELECT id FROM messages WHERE conversation_id = c.id ORDER BY at DESC, id DESC LIMIT 1)
        WHERE {" AND ".join(where)}
    """
    sql = f"SELECT * FROM ({sql})"
    if since is not None:
        sql += " WHERE last_message_at >= ?"
        params.append(since)
    sql += " ORDER BY last_message_at DESC, customer_id"
    cur = store.conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    for row in cur:
        yield dict(zip(names, row, strict=True))


def transcript(store: Store, customer_id: str) -> list[dict[str, Any]]:
    """Every message of the customer's conversation, every channel, oldest first, with the
    survey answer it gave (if any)."""
    cur = store.conn.execute(
        """
        SELECT m.id, m.at, m.direction, m.channel, m.address, m.subject, m.text,
               m.external_id, m.delivery_id, m.campaign, m.author,
               r.question AS survey_question, r.type AS survey_type, r.answer AS survey_answer,
               r.score AS survey_score, r.valid AS survey_valid, r.campaign AS survey_campaign
        FROM messages m
        JOIN conversations c ON c.id = m.conversation_id
        LEFT JOIN survey_responses r ON r.message_id = m.id
        WHERE c.customer_id = ?
        ORDER BY m.at, m.id
        """,
        (customer_id,),
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


def customers_by_address(
    store: Store, channel: str, kind: str, addresses: Iterable[str]
) -> dict[str, str]:
    """address → customer id for many addresses on one channel at once (the batch form of
    ``customers.find_customer_by_address``, with the same precedence: the channel's own
    addresses table, then the email/phone column, verified customers first, oldest first)."""
    wanted = sorted(set(addresses))
    found: dict[str, str] = {}
    for chunk in chunks(wanted):
        found.update(
            store.conn.execute(
                f"SELECT address, customer_id FROM addresses WHERE channel = ? "
                f"AND address IN ({marks(chunk)})",
                [channel, *chunk],
            ).fetchall()
        )
    rest = [a for a in wanted if a not in found]
    if kind not in ("email", "phone", "id") or not rest:
        return found
    column = {"email": "lower(email)", "phone": "phone", "id": "id"}[kind]
    for chunk in chunks(rest):
        rows = store.conn.execute(
            f"SELECT {column}, id FROM customers WHERE {column} IN ({marks(chunk)}) "
            f"ORDER BY verified ASC, created_at DESC, id DESC",
            chunk,
        )
        # later rows win: the last one per address is verified and oldest
        found.update({str(a): str(c) for a, c in rows})
    return found


def conversations_for(store: Store, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """customer id → conversation row, for many customers at once."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(customer_ids))):
        for row in store.conn.execute(
            f"SELECT {', '.join(_CONVERSATION_COLUMNS)} FROM conversations "
            f"WHERE customer_id IN ({marks(chunk)})",
            chunk,
        ):
            item = dict(zip(_CONVERSATION_COLUMNS, row, strict=True))
            out[item["customer_id"]] = item
    return out


def survey_candidates_for(
    store: Store, customer_ids: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """``open_survey_candidates`` for many customers at once (customer id → rows)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks(sorted(set(customer_ids))):
        cur = store.conn.execute(
            f"""
            SELECT customer_id, delivery_id, campaign, occurrence, sent_at, survey FROM (
                SELECT d.customer_id, d.id AS delivery_id, d.campaign, d.occurrence,
                       d.sent_at, o.survey,
                       row_number() OVER (
                           PARTITION BY d.customer_id ORDER BY d.sent_at DESC, d.id DESC) AS n
                FROM deliveries d
                JOIN occurrences o ON o.campaign = d.campaign AND o.occurrence = d.occurrence
                WHERE d.customer_id IN ({marks(chunk)}) AND d.purpose = 'campaign'
                  AND d.status IN ('sent', 'delivered', 'read')
                  AND d.sent_at IS NOT NULL
                  AND o.survey IS NOT NULL
                  AND NOT EXISTS (
                      SELECT 1 FROM survey_responses r
                      WHERE r.delivery_id = d.id AND r.valid = 1)
            ) WHERE n <= 5
            ORDER BY customer_id, sent_at DESC, delivery_id DESC
            """,
            chunk,
        )
        names = [d[0] for d in cur.description]
        for row in cur:
            item = dict(zip(names, row, strict=True))
            out.setdefault(item.pop("customer_id"), []).append(item)
    return out
