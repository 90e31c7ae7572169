"""Workspace-wide facts on SQLite: the statements of ``shared/meta.py`` as written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..interface import Meta
from ..shared.meta import MetaSql

if TYPE_CHECKING:
    import sqlite3

    from . import SqliteStore


class SqliteMeta(MetaSql, Meta):
    """Meta on SQLite."""

    store: SqliteStore
    conn: sqlite3.Connection
