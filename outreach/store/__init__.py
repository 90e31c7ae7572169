"""The store: every database access of outreach, behind one interface (``interface.py``).

``open_store`` chooses the implementation from the configured database: a file name is the
embedded SQLite store (``sqlite/``), a ``postgresql://`` URL the PostgreSQL store
(``postgresql/``, an optional extra). The rest of the code calls ``store.customers``,
``store.deliveries``, … and never sees SQL or a connection.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, StoreError
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
    "store_fault",
]


def store_fault(exc: BaseException, database: Path | str | None) -> StoreError:
    """The one line for a PostgreSQL error that escaped a command: the database (no
    password) and the server's reason."""
    from .postgresql.connect import reason

    where = "the database"
    if isinstance(database, str):
        from .postgresql import display_name

        where = display_name(database)
    return StoreError(f"{where}: {reason(exc)}")


def open_store(database: Path | str | None, *, check: bool = True) -> Store:
    """Open (creating if needed) and migrate the workspace database; None: in memory.
    ``check=False`` skips SQLite's quick_check on open (it reads every page)."""
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

    return open_sqlite(database, check=check)
