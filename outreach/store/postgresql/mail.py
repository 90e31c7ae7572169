"""Email's own rows on PostgreSQL: the statements of ``shared/mail.py``, with ``%s``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..interface import Mail
from ..shared.dialect import POSTGRESQL
from ..shared.mail import MailSql

if TYPE_CHECKING:
    from . import PgStore
    from .sql import Connection


class PgMail(MailSql, Mail):
    """Email's own rows on PostgreSQL."""

    dialect = POSTGRESQL
    store: PgStore
    conn: Connection
