"""The store: every database access of outreach, behind one interface (``interface.py``).

``open_store`` chooses the implementation from the configured database: a file name is the
embedded SQLite store (``sqlite/``), a ``postgresql://`` URL the PostgreSQL store
(``postgresql/``, an optional extra). The rest of the code calls ``store.customers``,
``store.deliveries``, … and never sees SQL or a connection.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .interface import (
    CONVERSATION_COLUMNS,
    CONVERSATION_NEWS,
    CUSTOMER_COLUMNS,
    DELIVERY_COLUMNS,
    REPLY_COLUMNS,
    SENT_STATUSES,
    Limits,
    Store,
)

__all__ = [
    "CONVERSATION_COLUMNS",
    "CONVERSATION_NEWS",
    "CUSTOMER_COLUMNS",
    "DELIVERY_COLUMNS",
    "REPLY_COLUMNS",
    "SENT_STATUSES",
    "Limits",
    "Store",
    "open_store",
]


def open_store(database: Path | str | None) -> Store:
    """Open (creating if needed) and migrate the workspace database; None: in memory."""
    if isinstance(database, str) and database.startswith(("postgresql://", "postgres://")):
        try:
            from .postgresql import open_postgresql
        except ImportError as exc:
            raise ConfigError(
                f"the database is PostgreSQL but {exc.name} is not installed; "
                "install it with: pip install 'outreach[postgresql]'"
            ) from None
        return open_postgresql(database)
    from .sqlite import open_sqlite

    return open_sqlite(database)
