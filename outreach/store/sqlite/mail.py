"""Email's own rows on SQLite: the statements of ``shared/mail.py`` as written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..interface import Mail
from ..shared.mail import MailSql

if TYPE_CHECKING:
    import sqlite3

    from . import SqliteStore


class SqliteMail(MailSql, Mail):
    """Email's own rows on SQLite."""

    store: SqliteStore
    conn: sqlite3.Connection
