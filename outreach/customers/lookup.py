"""Looking customers up: a filtered list with current consent, one customer in full."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..config import Config
from ..consent import current_consent_detail
from ..store import Store


def list_customers(
    store: Store, where: str | None = None, *, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Customers matching ``where`` (audience SQL), each with ``consent``: channel → status.

    A bad filter raises here, before the caller has printed anything.
    """
    return _paged_with_consent(store, store.customers.select_customers(where, limit=limit))


def _paged_with_consent(store: Store, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    page: list[dict[str, Any]] = []
    for row in rows:
        page.append(row)
        if len(page) == 500:
            yield from _with_consent(store, page)
            page = []
    yield from _with_consent(store, page)


def _with_consent(store: Store, page: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if not page:
        return
    consent = store.consent.current_consent_many([r["id"] for r in page])
    for row in page:
        row["consent"] = dict(sorted(consent.get(row["id"], {}).items()))  # channels by name
        yield row


def show_customer(store: Store, config: Config, customer_id: str) -> dict[str, Any]:
    """One customer: every column, current consent per channel, conversation summary."""
    customer = store.customers.require_customer(customer_id)
    history = store.consent.consent_history(customer_id)
    return {
        "customer": customer,
        "consent": current_consent_detail(config, history),
        "conversation": store.conversations.conversation_summary(customer_id),
    }
