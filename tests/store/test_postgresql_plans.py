"""The PostgreSQL store's hot statements keep plans that do not grow with the backlog.

A run claims, counts caps and records in batches while planning fills the deliveries
table, often before the server has statistics for it (autovacuum lags behind a bulk
insert). A claim that sorts every due delivery, or a cap count that scans every delivery
by status, makes a run of 100,000 quadratic. Each test captures the statement the store
really sends and reads the server's plan for it, on a backlog large enough to matter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from outreach.deliveries import CAP_STATES, DUE_STATES
from outreach.store import Store, open_store
from outreach.store.postgresql import PgStore
from tests.postgresql import empty_database
from tests.store.test_contract import LATER, add_customers, plan

pytestmark = pytest.mark.postgresql
BACKLOG = 3000


@pytest.fixture
def store(postgresql_database: str) -> Iterator[Store]:
    opened = open_store(postgresql_database)
    try:
        yield opened
    finally:
        opened.close()
        empty_database(postgresql_database)


def _plan_of(store: PgStore, call: Any) -> dict[str, Any]:
    """Run ``call`` with the store's statements captured; the plan of the first one that
    reads deliveries (EXPLAIN ANALYZE in a transaction that is rolled back)."""
    sent: list[tuple[str, Any]] = []
    execute = store.conn.execute

    def capture(sql: str, params: Any = None) -> Any:
        sent.append((sql, params))
        return execute(sql, params)

    store.conn.execute = capture  # type: ignore[method-assign]
    try:
        call()
    finally:
        store.conn.execute = execute  # type: ignore[method-assign]
    sql, params = next((s, p) for s, p in sent if "deliveries" in s)
    with store.raw.transaction(force_rollback=True):
        row = store.raw.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
    assert row is not None
    plan_json = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return dict(plan_json[0]["Plan"])


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_a_claim_walks_the_due_index_in_order_without_sorting_the_backlog(store: Store) -> None:
    assert isinstance(store, PgStore)
    plan(store, add_customers(store, BACKLOG))
    top = _plan_of(
        store,
        lambda: store.deliveries.claim_due(LATER, 50, channels=["sms"], from_states=DUE_STATES),
    )
    nodes = list(_nodes(top))
    assert not [n for n in nodes if n["Node Type"] == "Sort"], nodes
    scans = [n for n in nodes if n.get("Index Name") == "deliveries_claim_due"]
    assert scans and scans[0]["Actual Rows"] <= 50


def test_cap_usage_looks_each_customer_up_instead_of_scanning_by_status(store: Store) -> None:
    assert isinstance(store, PgStore)
    ids = add_customers(store, BACKLOG)
    plan(store, ids)
    top = _plan_of(
        store,
        lambda: store.deliveries.cap_usage(ids[:100], "2026-11-01T00:00:00Z", states=CAP_STATES),
    )
    # rows the server looked at in deliveries: 100 customers, one delivery each
    examined = sum(
        (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get("Actual Loops", 1)
        for n in _nodes(top)
        if n.get("Relation Name") == "deliveries"
        or str(n.get("Index Name", "")).startswith("deliveries")
    )
    assert 100 <= examined <= 200, top
