"""SQL for workspace-wide facts (the key that signs unsubscribe tokens)."""

from __future__ import annotations

import secrets

from . import Store


def signing_key(store: Store) -> bytes:
    """The workspace's secret key, made on first use and kept in the database."""
    row = store.conn.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
    if row:
        return bytes.fromhex(row[0])
    with store.write() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('signing_key', ?)",
            (secrets.token_hex(32),),
        )
    row = store.conn.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
    return bytes.fromhex(row[0])
