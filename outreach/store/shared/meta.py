"""Workspace-wide facts on both stores (the key that signs unsubscribe tokens)."""

from __future__ import annotations

import secrets

from .dialect import TableStatements


class MetaSql(TableStatements):
    """Mixed into each store's meta."""

    def signing_key(self) -> bytes:
        """The workspace's secret key, made on first use and kept in the database."""
        row = self._execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
        if row:
            return bytes.fromhex(row[0])
        with self.store.write():
            self._execute(
                f"{self.dialect.insert_or_ignore} INTO meta (key, value) "
                f"VALUES ('signing_key', ?){self.dialect.or_ignore}",
                (secrets.token_hex(32),),
            )
        row = self._execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
        return bytes.fromhex(row[0])
