"""Workspace-wide facts on PostgreSQL: the statements of ``shared/meta.py``, with ``%s``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..interface import Meta
from ..shared.dialect import POSTGRESQL
from ..shared.meta import MetaSql
from .sql import unit_of_work

if TYPE_CHECKING:
    from . import PgStore
    from .sql import Connection


class PgMeta(MetaSql, Meta):
    """Meta on PostgreSQL."""

    dialect = POSTGRESQL
    store: PgStore
    conn: Connection

    @unit_of_work
    def signing_key(self) -> bytes:
        """The shared read-or-make, run again after a lost session."""
        return super().signing_key()
