"""The store: every database access of outreach, behind one interface (``interface.py``).

``open_store`` chooses the implementation from the configured database: a file name is the
embedded SQLite store (``sqlite/``). The rest of the code calls ``store.customers``,
``store.deliveries``, … and never sees SQL or a connection.
"""

from __future__ import annotations

from pathlib import Path

from .interface import (
    CAP_STATES,
    CONVERSATION_COLUMNS,
    CUSTOMER_COLUMNS,
    DELIVERY_COLUMNS,
    REPLY_COLUMNS,
    SENT_STATUSES,
    Store,
)

__all__ = [
    "CAP_STATES",
    "CONVERSATION_COLUMNS",
    "CUSTOMER_COLUMNS",
    "DELIVERY_COLUMNS",
    "REPLY_COLUMNS",
    "SENT_STATUSES",
    "Store",
    "open_store",
]


def open_store(database: Path | str | None) -> Store:
    """Open (creating if needed) and migrate the workspace database; None: in memory."""
    from .sqlite import open_sqlite

    return open_sqlite(database)
