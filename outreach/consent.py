"""The consent ledger's rules (SPEC §3).

Consent is append-only: every grant and revocation is a row; the current consent on a
channel is the latest row. Nothing is ever sent where the current consent is not
``opted_in``, and ``sending`` checks again right before each send.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from . import clock
from .config import Config
from .errors import NotFoundError
from .store import Store
from .store.consent import append_consent, current_consent_for
from .store.customers import get_customers

Status = Literal["opted_in", "opted_out"]
OPTED_IN: Status = "opted_in"
OPTED_OUT: Status = "opted_out"


def record(
    store: Store,
    config: Config,
    customer_ids: Iterable[str],
    channel: str,
    status: Status,
    *,
    source: str,
    evidence: str | None = None,
) -> int:
    """Append one ledger row per customer; every customer and the channel must exist."""
    config.channel(channel)
    ids = list(dict.fromkeys(customer_ids))
    known = get_customers(store, ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise NotFoundError(
            f'customer "{missing[0]}" does not exist; see outreach customers list'
        )
    at = clock.iso(clock.now())
    with store.write():
        return append_consent(store, [(i, channel, status, source, evidence, at) for i in ids])


def is_opted_in(store: Store, customer_id: str, channel: str) -> bool:
    """The check made right before every campaign send."""
    return current_consent_for(store, customer_id, channel) == OPTED_IN
