"""Workspace-wide facts on SQLite (the key that signs unsubscribe tokens)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from ..interface import Meta

if TYPE_CHECKING:
    from . import SqliteStore


class SqliteMeta(Meta):
    """Meta on SQLite."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.conn = store.conn

    def signing_key(self) -> bytes:
        """The workspace's secret key, made on first use and kept in the database."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
        if row:
            return bytes.fromhex(row[0])
        with self.store.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('signing_key', ?)",
                (secrets.token_hex(32),),
            )
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
        return bytes.fromhex(row[0])
