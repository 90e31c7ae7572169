"""The consent ledger: recording grants and revocations, and reading them back.

Consent is append-only: every grant and revocation is a row; the current consent on a
channel is the latest row. What consent allows is decided in ``policy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from . import clock
from .config import Config
from .errors import NotFoundError
from .store import Store

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
    known = store.customers.existing_customer_ids(ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise NotFoundError(f'customer "{missing[0]}" does not exist; see outreach customers list')
    at = clock.iso(clock.now())
    rows = [(i, channel, status, source, evidence, at) for i in ids]

    def append() -> int:
        with store.write():
            return store.consent.append_consent(rows)

    # a unit of work: run again on a new session if the first one was lost (PostgreSQL)
    return store.retrying(append)


def current_consent_detail(
    config: Config, history: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """channel → its latest ledger row (status, source, recorded_at), for every configured
    channel (status None where the ledger has nothing) and any other channel with history."""
    out: dict[str, dict[str, Any]] = {
        name: {"status": None, "source": None, "recorded_at": None} for name in config.channels
    }
    for row in history:  # oldest first: the last row of a channel wins
        out[row["channel"]] = {
            "status": row["status"],
            "source": row["source"],
            "recorded_at": row["recorded_at"],
        }
    return out


def consent_report(store: Store, config: Config, customer_id: str) -> dict[str, Any]:
    """A customer's current consent per channel and the whole ledger history, oldest first."""
    store.customers.require_customer(customer_id)
    history = store.consent.consent_history(customer_id)
    return {
        "customer": customer_id,
        "current": current_consent_detail(config, history),
        "history": history,
    }
