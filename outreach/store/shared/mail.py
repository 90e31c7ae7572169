"""Email's own rows on both stores: what a stored reply was (``email_messages``), where a
mailbox sync stopped (``mailbox_sync``), and bounces moving their delivery to ``bounced``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..rows import chunks
from .dialect import TableStatements


class MailSql(TableStatements):
    """Mixed into each store's mail."""

    def save_email_parts(self, rows: Sequence[dict[str, Any]]) -> None:
        """One ``email_messages`` row per stored email (message_id, kind, full_text, raw, size,
        attachments, problem). Caller holds the write transaction."""
        if not rows:
            return
        self._executemany(
            f"{self.dialect.insert_or_ignore} INTO email_messages "
            "(message_id, kind, full_text, raw, size, attachments, problem) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?){self.dialect.or_ignore}",
            [
                (
                    row["message_id"],
                    row["kind"],
                    row.get("full_text"),
                    row.get("raw"),
                    int(row.get("size") or 0),
                    json.dumps(row["attachments"]) if row.get("attachments") else None,
                    row.get("problem"),
                )
                for row in rows
            ],
        )

    def raw_email(self, message_id: int) -> bytes | None:
        """The message as received, when it was kept."""
        row = self._execute(
            "SELECT raw FROM email_messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def mailbox_position(self, channel: str, mailbox: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID stored) of a channel's folder, or None before its first sync."""
        row = self._execute(
            "SELECT uidvalidity, last_uid FROM mailbox_sync WHERE channel = ? AND mailbox = ?",
            (channel, mailbox),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def save_mailbox_position(
        self, channel: str, mailbox: str, uidvalidity: int, last_uid: int, at: str
    ) -> None:
        """Remember the last UID stored; written in the transaction that stored its message,
        so a sync that dies between batches resumes exactly after what it stored."""
        self._execute(
            "INSERT INTO mailbox_sync (channel, mailbox, uidvalidity, last_uid, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, mailbox) DO UPDATE SET "
            "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, "
            "updated_at = excluded.updated_at",
            (channel, mailbox, uidvalidity, last_uid, at),
        )

    def bounce_delivery(
        self,
        message_id: str,
        reason: str,
        error: str | None,
        at: str,
        from_states: Sequence[str],
    ) -> dict[str, Any] | None:
        """Move the delivery an email with this Message-ID was, to ``bounced`` (from one of
        ``from_states``).

        Returns the delivery (id, customer_id, channel, changed) or None when outreach never
        sent that Message-ID. Every Message-ID outreach writes is ``<DELIVERY-ID@domain>``.
        """
        bare = message_id.strip().strip("<>")
        row = self._execute(
            "SELECT id, customer_id, channel FROM deliveries "
            "WHERE provider_message_id IN (?, ?) OR id = ? LIMIT 1",
            (f"<{bare}>", bare, bare.split("@")[0]),
        ).fetchone()
        if row is None:
            return None
        # guarded by the old state: a repeated bounce, or one for a failed send, changes nothing
        cur = self._execute(
            f"UPDATE deliveries SET status = 'bounced', reason = ?, error = ?, updated_at = ? "
            f"WHERE id = ? AND status IN ({self._marks(from_states)})",
            (reason, error, at, row[0], *from_states),
        )
        return {"id": row[0], "customer_id": row[1], "channel": row[2], "changed": cur.rowcount > 0}

    def email_parts_of_customer(self, customer_id: str) -> dict[str, dict[str, Any]]:
        """(channel, external id) → the email row of each stored email in the customer's
        conversation, keyed as ``conversations show`` lists messages."""
        out: dict[str, dict[str, Any]] = {}
        for row in self._execute(
            "SELECT m.channel, m.external_id, e.kind, e.full_text, e.size, e.attachments, "
            "e.problem, e.raw IS NOT NULL AS raw_kept FROM messages m "
            "JOIN email_messages e ON e.message_id = m.id "
            "WHERE m.customer_id = ? AND m.direction = 'in'",
            (customer_id,),
        ):
            out[f"{row[0]}\x00{row[1]}"] = {
                "kind": row[2],
                "full_text": row[3],
                "size": row[4],
                "attachments": json.loads(row[5]) if row[5] else [],
                "problem": row[6],
                "raw_kept": bool(row[7]),
            }
        return out

    def customers_by_reply_token(self, tokens: Sequence[str]) -> dict[str, str]:
        """token → customer for many Reply-To tokens at once (the ``reply`` addresses that
        sending records with each email)."""
        found: dict[str, str] = {}
        for chunk in chunks(sorted(set(tokens))):
            found.update(
                self._execute(
                    f"SELECT address, customer_id FROM addresses WHERE channel = 'reply' "
                    f"AND address IN ({self._marks(chunk)})",
                    chunk,
                ).fetchall()
            )
        return found

    def customers_by_sent_message(self, message_ids: Sequence[str]) -> dict[str, str]:
        """Message-ID (as quoted, without <>) → the customer it was sent to, for many at once.

        A Message-ID outreach wrote is ``<DELIVERY-ID@domain>`` and a provider id may be
        stored with or without its brackets, so each is looked for all three ways.
        """
        wanted = sorted({m.strip().strip("<>") for m in message_ids if m and m.strip()})
        found: dict[str, str] = {}
        for chunk in chunks(wanted, 300):
            provider_ids = [*chunk, *(f"<{m}>" for m in chunk)]
            delivery_ids = [m.split("@")[0] for m in chunk]
            rows = self._execute(
                f"SELECT provider_message_id, id, customer_id FROM deliveries "
                f"WHERE provider_message_id IN ({self._marks(provider_ids)}) "
                f"OR id IN ({self._marks(delivery_ids)})",
                [*provider_ids, *delivery_ids],
            ).fetchall()
            by_provider = {str(p).strip("<>"): str(c) for p, _, c in rows if p}
            by_delivery = {str(d): str(c) for _, d, c in rows}
            for message_id in chunk:
                customer = by_provider.get(message_id) or by_delivery.get(message_id.split("@")[0])
                if customer:
                    found[message_id] = customer
        return found
