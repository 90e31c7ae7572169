"""Workspace-wide facts on PostgreSQL (the key that signs unsubscribe tokens)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from ..interface import Meta
from .sql import unit_of_work

if TYPE_CHECKING:
    from . import PgStore


class PgMeta(Meta):
    """Meta on PostgreSQL."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.conn = store.conn

    @unit_of_work
    def signing_key(self) -> bytes:
        """The workspace's secret key, made on first use and kept in the database."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
        if row:
            return bytes.fromhex(row[0])
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('signing_key', %s) ON CONFLICT DO NOTHING",
                (secrets.token_hex(32),),
            )
        row = self.conn.one("SELECT value FROM meta WHERE key = 'signing_key'")
        return bytes.fromhex(row[0])
