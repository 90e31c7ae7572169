"""The store contract: what every implementation guarantees, tested through the interface.

Each test runs once per implementation (``backend`` in conftest.py). Nothing here writes
SQL except where a guarantee is about what the interface refuses to allow (a newer schema,
a rewrite of the consent ledger); those go through the backend's raw connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from outreach.deliveries import CAP_STATES, DUE_STATES, reported_from
from outreach.errors import NotFoundError, StoreError, UsageError
from outreach.store import CONVERSATION_NEWS, DELIVERY_COLUMNS, REPLY_COLUMNS, Store
from tests.store.conftest import Backend

AT = "2026-12-01T10:00:00Z"
LATER = "2026-12-01T11:00:00Z"
CUSTOMER = ["id", "name", "email", "phone"]


@dataclass
class Result:
    """A send result as the engine records it (the interface's SendResult)."""

    id: str
    status: str
    at: str
    reason: str | None = None
    error: str | None = None
    provider_message_id: str | None = None
    sent_at: str | None = None
    not_before: str | None = None
    attempts_back: bool = False


def add_customers(store: Store, n: int, prefix: str = "c") -> list[str]:
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    rows = [
        [cid, f"Name {cid}", f"{cid}@example.com", f"+3161234{i:04d}"] for i, cid in enumerate(ids)
    ]
    with store.write():
        store.customers.upsert_customers(CUSTOMER, rows, AT)
    return ids


def delivery(
    delivery_id: str,
    customer: str,
    *,
    occurrence: str = AT,
    channel: str = "sms",
    not_before: str = AT,
    campaign: str = "nps",
    counts_for_cap: int = 1,
) -> tuple[Any, ...]:
    values = {
        "id": delivery_id,
        "campaign": campaign,
        "occurrence": occurrence,
        "customer_id": customer,
        "channel": channel,
        "purpose": "campaign",
        "template": "nps",
        "counts_for_cap": counts_for_cap,
        "status": "queued",
        "not_before": not_before,
        "created_at": AT,
        "updated_at": AT,
    }
    return tuple(values.get(c) for c in DELIVERY_COLUMNS)


def plan(store: Store, customers: list[str], **kwargs: Any) -> list[str]:
    ids = [
        f"d-{cid}-{kwargs.get('occurrence', AT)}-{kwargs.get('channel', 'sms')}"
        for cid in customers
    ]
    with store.write():
        store.deliveries.insert_deliveries(
            [delivery(did, cid, **kwargs) for did, cid in zip(ids, customers, strict=True)]
        )
    return ids


# ------------------------------------------------------------------------- migrations


def test_a_new_database_has_every_migration_and_reopening_applies_none(
    backend: Backend,
) -> None:
    first = backend.open()
    applied = first.applied_migrations()
    first.close()
    assert applied[0] == "m001_customers"
    assert len(set(applied)) == len(applied)
    again = backend.open()
    try:
        assert again.applied_migrations() == applied
    finally:
        again.close()


def test_a_database_written_by_a_newer_outreach_is_refused(backend: Backend) -> None:
    backend.open().close()
    table = "_sqlite_migrations" if backend.name == "sqlite" else "outreach_migrations"
    backend.raw(
        f"INSERT INTO {table} (migration_set, name, applied_at) "
        "VALUES ('outreach', 'm999_from_the_future', '2030-01-01')"
    )
    with pytest.raises(StoreError, match=r"written by a newer outreach .*m999"):
        backend.open()


def test_a_unit_of_work_runs_once_and_gives_its_value_and_its_error(store: Store) -> None:
    runs: list[int] = []

    def work() -> str:
        runs.append(1)
        with store.write():
            store.customers.upsert_customers(["id", "name"], [["u1", "U"]], "2026-12-01T09:00:00Z")
        return "done"

    assert store.retrying(work) == "done"
    assert runs == [1]
    assert store.customers.require_customer("u1")["name"] == "U"

    def refused() -> None:
        with store.write():
            store.customers.upsert_customers(["id", "name"], [["u2", "V"]], "2026-12-01T09:00:00Z")
            raise UsageError("no")

    with pytest.raises(UsageError):
        store.retrying(refused)  # an error of the work is not a fault to run it again for
    assert store.customers.get_customer("u2") is None
    with store.write():  # inside a transaction, the outer unit is the one run again
        assert store.retrying(lambda: 7) == 7


def test_the_database_answers_a_health_check(store: Store) -> None:
    store.check()
    assert store.name


# -------------------------------------------------------------------------- customers


def test_upsert_creates_then_updates_and_none_keeps_the_stored_value(store: Store) -> None:
    store.customers.ensure_columns(["plan"])
    with store.write():
        created = store.customers.upsert_customers(
            ["id", "name", "plan"], [["a", "Anna", "pro"], ["b", "Bo", "free"]], AT
        )
    assert created == (2, 0)
    with store.write():
        again = store.customers.upsert_customers(
            ["id", "name", "plan"], [["a", None, "free"], ["c", "Cy", None]], LATER
        )
    assert again == (1, 1)
    anna = store.customers.require_customer("a")
    assert (anna["name"], anna["plan"], anna["updated_at"]) == ("Anna", "free", LATER)
    assert anna["created_at"] == AT
    assert store.customers.attribute_columns() == ["plan"]
    assert set(store.customers.get_customers(["a", "b", "zz"])) == {"a", "b"}
    assert store.customers.existing_customer_ids(["a", "zz"]) == {"a"}
    assert store.customers.count_customers() == {"customers": 3, "unverified_contacts": 0}
    with pytest.raises(NotFoundError, match='customer "zz" does not exist'):
        store.customers.require_customer("zz")


def test_ensure_columns_is_case_insensitive_and_idempotent(store: Store) -> None:
    store.customers.ensure_columns(["Plan", "age"])
    store.customers.ensure_columns(["plan", "AGE", "age"])
    assert [c.lower() for c in store.customers.attribute_columns()] == ["plan", "age"]


def test_customers_are_found_by_address_verified_and_oldest_first(store: Store) -> None:
    with store.write():
        store.customers.upsert_customers(
            CUSTOMER, [["a", "A", "Anna@Example.com", "+31600000001"]], AT
        )
        store.customers.create_contact("x", {"email": "anna@example.com"}, LATER)
        store.customers.add_address("chat", "U-77", "a")
    find = store.customers.find_customer_by_address
    assert find("email", "email", "ANNA@example.com") == "a"
    assert find("sms", "phone", "+31600000001") == "a"
    assert find("chat", "user", "U-77") == "a"
    assert find("chat", "user", "U-78") is None
    assert store.customers.customers_by_address(
        "email", "email", ["anna@example.com", "nobody@example.com"]
    ) == {"anna@example.com": "a"}
    assert store.customers.user_addresses("chat", ["a", "x"]) == {"a": "U-77"}
    assert store.customers.count_customers() == {"customers": 1, "unverified_contacts": 1}


def test_an_import_remembers_the_ids_it_has_seen(store: Store) -> None:
    store.customers.begin_import_scratch()
    store.customers.remember_import_ids([("a", 2), ("b", 3)])
    store.customers.remember_import_ids([("a", 9)])
    assert store.customers.import_ids_seen(["a", "b", "c"]) == {"a": 2, "b": 3}
    store.customers.end_import_scratch()
    store.customers.begin_import_scratch()
    assert store.customers.import_ids_seen(["a"]) == {}
    store.customers.end_import_scratch()


def test_select_customers_streams_pages_and_honours_limit_and_columns(store: Store) -> None:
    store.customers.ensure_columns(["plan"])
    rows = [[f"c{i:04d}", "pro" if i % 2 else "free"] for i in range(1, 1201)]
    with store.write():
        store.customers.upsert_customers(["id", "plan"], rows, AT)
    pro = store.customers.select_customers("plan = 'pro'")
    assert isinstance(pro, Iterator)
    ids = [r["id"] for r in pro]
    assert len(ids) == 600 and ids == sorted(ids)
    assert len(list(store.customers.select_customers(None, limit=501))) == 501
    assert next(store.customers.select_customers("plan = 'pro'", columns=["plan"])) == {
        "id": "c0001",
        "plan": "pro",
    }


@pytest.mark.parametrize(
    "where",
    [
        "id IN (SELECT customer_id FROM consent)",
        "(SELECT count(*) FROM customers) > 0",
        "1 = 1; DELETE FROM customers",
        "no_such_column = 1",
    ],
)
def test_a_filter_can_only_read_customer_columns(store: Store, where: str) -> None:
    add_customers(store, 2)
    with pytest.raises(UsageError, match="where"):
        store.customers.validate_where(where)
    assert store.customers.count_customers()["customers"] == 2


# ---------------------------------------------------------------------------- consent


def test_the_consent_ledger_only_grows_and_the_latest_row_is_current(
    store: Store, backend: Backend
) -> None:
    add_customers(store, 2)
    with store.write():
        store.consent.append_consent(
            [
                ("c00000", "sms", "opted_in", "import", None, AT),
                ("c00000", "sms", "opted_out", "keyword", "STOP", LATER),
                ("c00001", "email", "opted_in", "import", None, AT),
            ]
        )
    assert store.consent.current_consent_for("c00000", "sms") == "opted_out"
    assert store.consent.current_consent_for("c00000", "email") is None
    assert store.consent.current_consent_many(["c00000", "c00001"]) == {
        "c00000": {"sms": "opted_out"},
        "c00001": {"email": "opted_in"},
    }
    assert store.consent.customers_with_history(["c00000", "c00001"], "sms") == {"c00000"}
    history = store.consent.consent_history("c00000")
    assert [(h["status"], h["evidence"]) for h in history] == [
        ("opted_in", None),
        ("opted_out", "STOP"),
    ]
    assert store.consent.consent_summary() == {
        "email": {"opted_in": 1},
        "sms": {"opted_out": 1},
    }
    for sql in ("UPDATE consent SET status = 'opted_in'", "DELETE FROM consent"):
        with pytest.raises(Exception, match="append-only"):
            backend.raw(sql)
    assert len(store.consent.consent_history("c00000")) == 2


# ------------------------------------------------------------------------- deliveries


def test_planning_is_idempotent_by_campaign_occurrence_and_customer(store: Store) -> None:
    ids = add_customers(store, 3)
    with store.write():
        assert (
            store.deliveries.insert_deliveries(
                [delivery(f"d{i}", cid) for i, cid in enumerate(ids)]
            )
            == 3
        )
    with store.write():
        # a re-plan after a crash: new delivery ids, the same keys, nothing inserted
        assert (
            store.deliveries.insert_deliveries(
                [delivery(f"e{i}", cid) for i, cid in enumerate(ids)]
            )
            == 0
        )
        # another occurrence is another key
        assert store.deliveries.insert_deliveries([delivery("f0", ids[0], occurrence=LATER)]) == 1
    more = add_customers(store, 2, prefix="m")
    with store.write():
        # a batch that meets a planned key part-way keeps the others of the batch
        batch = [delivery("g0", more[0]), delivery("g1", ids[1]), delivery("g2", more[1])]
        assert store.deliveries.insert_deliveries(batch) == 2
    assert store.deliveries.count_due(LATER) == 6
    assert store.deliveries.delivery_outcome("g1") is None
    # a delivery id taken twice is an error, never a customer silently left out
    with pytest.raises(Exception), store.write():  # noqa: B017
        store.deliveries.insert_deliveries([delivery("d0", ids[0], campaign="other")])
    assert store.deliveries.count_due(LATER) == 6


def test_occurrences_begin_once_finish_and_keep_their_survey(store: Store) -> None:
    survey = {"question": "How likely?", "type": "nps"}
    store.deliveries.begin_occurrence("nps", AT, "scheduled", survey, AT)
    store.deliveries.begin_occurrence("nps", AT, "scheduled", None, LATER)
    assert store.deliveries.occurrence_status("nps", AT) == "planning"
    assert store.deliveries.occurrence_status("nps", "never") is None
    assert store.deliveries.occurrence_survey("nps", "never") is None
    store.deliveries.finish_occurrence("nps", AT, 12)
    store.deliveries.record_missed("nps", LATER, "scheduled", LATER)
    assert store.deliveries.known_occurrences("nps") == {AT: "planned", LATER: "missed"}
    assert store.deliveries.occurrence_survey("nps", AT) == survey
    assert store.deliveries.occurrence_survey("nps", LATER) is None
    assert store.reports.occurrences("nps")[0]["audience"] == 12


def test_a_claim_takes_due_deliveries_in_order_with_current_consent(store: Store) -> None:
    ids = add_customers(store, 3)
    with store.write():
        store.consent.append_consent([(ids[0], "sms", "opted_in", "import", None, AT)])
    plan(store, ids[:1], not_before=AT)
    plan(store, ids[1:2], not_before="2026-12-01T09:00:00Z")
    plan(store, ids[2:], not_before="2026-12-02T00:00:00Z")  # not due yet
    claimed = store.deliveries.claim_due(LATER, 10, from_states=DUE_STATES)
    assert [c["customer_id"] for c in claimed] == [ids[1], ids[0]]
    assert claimed[1]["consent"] == "opted_in" and claimed[0]["consent"] is None
    assert claimed[0]["attempts"] == 0  # claims before this one
    claim = store.deliveries.claim_due
    assert claim(LATER, 10, from_states=DUE_STATES) == []  # already sending
    assert claim(LATER, 10, channels=[], from_states=DUE_STATES) == []
    assert store.reports.queue_figures()["sending"] == 2


def test_two_claimers_never_get_the_same_delivery(backend: Backend) -> None:
    setup = backend.open()
    ids = add_customers(setup, 400)
    plan(setup, ids)
    setup.close()
    claimed: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claimer(n: int) -> None:
        store = backend.open()
        try:
            start.wait()
            while batch := store.deliveries.claim_due(LATER, 7, from_states=DUE_STATES):
                claimed[n].extend(d["id"] for d in batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    everything = claimed[0] + claimed[1]
    assert len(everything) == len(set(everything)) == 400


def test_results_are_recorded_only_over_sending(store: Store) -> None:
    ids = add_customers(store, 2)
    plan(store, ids)
    first, second = store.deliveries.claim_due(LATER, 10, from_states=DUE_STATES)
    store.deliveries.record_results(
        [Result(first["id"], "sent", LATER, provider_message_id="SM1", sent_at=LATER)],
        [
            {
                "customer_id": first["customer_id"],
                "channel": "sms",
                "text": "hello",
                "at": LATER,
                "delivery_id": first["id"],
                "campaign": "nps",
            }
        ],
    )
    # a late second record of the same send changes nothing: it is no longer sending
    store.deliveries.record_results([Result(first["id"], "failed", LATER, error="late")], [])
    outcome = store.deliveries.delivery_outcome(first["id"])
    assert outcome is not None
    assert outcome["status"] == "sent"
    # in one batch too: each result is guarded on its own
    others = add_customers(store, 2, prefix="b")
    plan(store, others)
    third, fourth = store.deliveries.claim_due(LATER, 10, from_states=DUE_STATES)
    store.deliveries.record_results(
        [
            Result(first["id"], "failed", LATER, error="late again"),
            Result(third["id"], "failed", LATER, reason="provider", error="refused"),
            Result(fourth["id"], "sent", LATER, provider_message_id="SM4", sent_at=LATER),
        ],
        [],
    )
    outcomes = store.deliveries.delivery_outcomes([first["id"], third["id"], fourth["id"]])
    assert sorted(outcomes, key=lambda o: o["id"]) == [
        {"id": i, "customer_id": c, "channel": "sms", "status": st, "reason": r, "error": e}
        for i, c, st, r, e in sorted(
            [
                (first["id"], first["customer_id"], "sent", None, None),
                (third["id"], third["customer_id"], "failed", "provider", "refused"),
                (fourth["id"], fourth["customer_id"], "sent", None, None),
            ]
        )
    ]
    # deferred with attempts given back
    store.deliveries.record_results(
        [
            Result(
                second["id"],
                "deferred",
                LATER,
                not_before="2026-12-01T12:00:00Z",
                attempts_back=True,
            )
        ],
        [],
    )
    assert store.deliveries.count_due(LATER) == 0
    assert store.deliveries.count_due("2026-12-01T12:00:00Z") == 1
    again = store.deliveries.claim_due("2026-12-01T12:00:00Z", 10, from_states=DUE_STATES)
    assert [d["attempts"] for d in again] == [0]
    transcript = store.conversations.transcript(first["customer_id"])
    assert [(m["direction"], m["text"]) for m in transcript] == [("out", "hello")]
    assert store.deliveries.customer_of_sent_message("SM1") == first["customer_id"]


def test_status_events_move_forward_only(store: Store) -> None:
    ids = add_customers(store, 1)
    plan(store, ids)
    (d,) = store.deliveries.claim_due(LATER, 1, from_states=DUE_STATES)
    store.deliveries.record_results([Result(d["id"], "sent", LATER, provider_message_id="SM9")], [])

    def report(provider_id: str, status: str, error: str | None = None) -> int:
        return store.deliveries.apply_status(
            provider_id, status, LATER, error=error, from_states=reported_from(status)
        )

    with store.write():
        assert report("SM9", "delivered") == 1
        assert report("SM9", "sent") == 0
        assert report("SM9", "failed", error="x") == 0
        assert report("nope", "read") == 0
    assert store.deliveries.delivery_status_counts([d["id"]]) == {"delivered": 1}


def test_recovery_makes_in_flight_deliveries_unknown_or_requeues_idempotent_ones(
    store: Store,
) -> None:
    ids = add_customers(store, 3)
    plan(store, ids[:2], channel="sms")
    plan(store, ids[2:], channel="outbox")
    assert len(store.deliveries.claim_due(LATER, 10, from_states=DUE_STATES)) == 3
    recovered = store.deliveries.recover_in_flight(["outbox"], LATER, lease=30)
    assert recovered == {"requeued": 1, "unknown": 2}  # no claimer: nobody is sending them
    unknown = store.deliveries.delivery_outcome(f"d-{ids[0]}-{AT}-sms")
    assert unknown == {
        "status": "unknown",
        "reason": "in_flight_at_crash",
        "error": None,
        "channel": "sms",
    }
    rows = list(store.deliveries.queue_rows(None))
    assert [r["status"] for r in rows][:2] == ["unknown", "unknown"]
    assert store.deliveries.retry_unknown(LATER) == 2
    assert store.deliveries.count_due(LATER) == 3


def _statuses(store: Store, ids: list[str]) -> list[str]:
    outcomes = {r["id"]: r["status"] for r in store.deliveries.delivery_outcomes(ids)}
    return [outcomes[i] for i in ids]


def test_recovery_leaves_a_live_claimers_deliveries_alone(store: Store) -> None:
    ids = add_customers(store, 3)
    live = store.workers.register("here", 101, "serve")
    gone = store.workers.register("here", 102, "run")
    first, second, third = plan(store, ids[:1]), plan(store, ids[1:2]), plan(store, ids[2:])
    claim = store.deliveries.claim_due
    assert len(claim(LATER, 1, ids=first, from_states=DUE_STATES, worker=live)) == 1
    assert len(claim(LATER, 1, ids=second, from_states=DUE_STATES, worker=gone)) == 1
    store.workers.unregister(gone)  # a claimer without a row has ended
    assert len(claim(LATER, 1, ids=third, from_states=DUE_STATES)) == 1  # no claimer
    assert store.deliveries.recover_in_flight([], LATER, lease=30) == {
        "requeued": 0,
        "unknown": 2,
    }
    assert _statuses(store, [*first, *second, *third]) == ["sending", "unknown", "unknown"]
    # its pid found gone on its host (the caller's finding): dead at once, row removed
    assert store.deliveries.recover_in_flight([], LATER, lease=30, dead=[live]) == {
        "requeued": 0,
        "unknown": 1,
    }
    assert _statuses(store, first) == ["unknown"]
    assert store.workers.list_workers() == []


def test_a_claimers_in_flight_deliveries_are_read_by_its_id(store: Store) -> None:
    ids = add_customers(store, 4)
    mine = store.workers.register("here", 201, "run")
    other = store.workers.register("here", 202, "run")
    planned = plan(store, ids)
    claim = store.deliveries.claim_due
    taken = claim(LATER, 2, ids=planned[:2], from_states=DUE_STATES, worker=mine)
    claim(LATER, 1, ids=planned[2:3], from_states=DUE_STATES, worker=other)
    store.deliveries.record_results([Result(taken[1]["id"], "sent", LATER)], [])
    with store.write():
        # the sent one is no longer in flight; the other claimer's is not this one's
        assert store.deliveries.in_flight_of(mine) == {taken[0]["id"]: "sms"}
    assert store.deliveries.in_flight_of(9999) == {}


def test_a_claimer_whose_heartbeat_is_older_than_the_lease_is_dead(store: Store) -> None:
    ids = add_customers(store, 2)
    stale = store.workers.register("other-host", 7, "worker")
    fresh = store.workers.register("other-host", 8, "worker")
    old, new = plan(store, ids[:1], channel="outbox"), plan(store, ids[1:])
    claim = store.deliveries.claim_due
    assert len(claim(LATER, 1, ids=old, from_states=DUE_STATES, worker=stale)) == 1
    assert len(claim(LATER, 1, ids=new, from_states=DUE_STATES, worker=fresh)) == 1
    time.sleep(0.6)  # real time: the clock a run is given (--now) plays no part
    store.workers.heartbeat(fresh, "other-host", 8, "worker")
    assert store.deliveries.recover_in_flight(["outbox"], LATER, lease=0.5) == {
        "requeued": 1,
        "unknown": 0,
    }
    assert _statuses(store, [*old, *new]) == ["queued", "sending"]
    workers = store.workers.list_workers()
    assert [(w["id"], w["host"], w["pid"], w["kind"]) for w in workers] == [
        (fresh, "other-host", 8, "worker")
    ]
    assert 0 <= workers[0]["heartbeat_age"] < 0.5
    assert store.workers.on_host("other-host") == [(fresh, 8)]
    assert store.workers.on_host("here") == []


def test_a_heartbeat_makes_a_removed_row_again_and_ids_are_never_reused(store: Store) -> None:
    first = store.workers.register("here", 1, "run")
    store.workers.unregister(first)
    second = store.workers.register("here", 2, "worker")
    assert second != first
    store.deliveries.recover_in_flight([], LATER, lease=30, dead=[second])
    assert store.workers.list_workers() == []
    # alive after all (a stalled host): its next heartbeat makes its row again
    store.workers.heartbeat(second, "here", 2, "worker")
    assert store.workers.on_host("here") == [(second, 2)]
    assert store.workers.register("here", 3, "helper") not in (first, second)


def test_planning_an_occurrence_is_granted_to_one_process_at_a_time(backend: Backend) -> None:
    one, two = backend.open(), backend.open()
    try:
        with one.deliveries.planning_lock("nps", AT, caps=False) as granted:
            assert granted
            assert not one.deliveries.planning_elsewhere("nps", AT)
            with two.deliveries.planning_lock("nps", AT, caps=False) as also:
                # SQLite: one run at a time holds the workspace lock, so it is always granted
                assert also is (backend.name == "sqlite")
            assert two.deliveries.planning_elsewhere("nps", AT) is (backend.name != "sqlite")
            with two.deliveries.planning_lock("nps", LATER, caps=False) as other:
                assert other  # another occurrence
        assert not two.deliveries.planning_elsewhere("nps", AT)
        with two.deliveries.planning_lock("nps", AT, caps=False) as granted:
            assert granted
    finally:
        one.close()
        two.close()


@pytest.mark.postgresql
def test_a_dead_planners_lock_is_released_and_cap_plans_run_one_at_a_time(
    backend: Backend,
) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite plans under the workspace lock")
    one, two = backend.open(), backend.open()
    try:
        held = one.deliveries.planning_lock("nps", AT, caps=True)
        assert held.__enter__()
        order: list[str] = []

        def plan_other() -> None:
            with two.deliveries.planning_lock("weekly", AT, caps=True) as granted:
                order.append(f"weekly {granted}")

        waiter = threading.Thread(target=plan_other)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and order == []  # waits for the other cap-counting plan
        order.append("nps done")
        held.__exit__(None, None, None)
        waiter.join(60)
        assert order == ["nps done", "weekly True"]
        with one.deliveries.planning_lock("nps", AT, caps=True) as granted:
            assert granted
            one.close()  # the planner dies: the server releases its locks as it ends
            # the server ends its session a moment later (much later on a busy machine)
            deadline = time.monotonic() + 60
            while two.deliveries.planning_elsewhere("nps", AT):
                assert time.monotonic() < deadline, "the dead planner's lock is still held"
                time.sleep(0.01)
            with two.deliveries.planning_lock("nps", AT, caps=True) as taken:
                assert taken
    finally:
        one.close()
        two.close()


def test_cap_usage_counts_cap_deliveries_since_a_time(store: Store) -> None:
    ids = add_customers(store, 2)
    plan(store, ids[:1], occurrence="2026-11-01T00:00:00Z", not_before="2026-11-01T00:00:00Z")
    plan(store, ids[:1], occurrence=AT)
    plan(store, ids[:1], occurrence=LATER, campaign="other")
    plan(store, ids[1:], occurrence=AT, counts_for_cap=0)
    usage = store.deliveries.cap_usage
    assert usage(ids, "2026-11-15T00:00:00Z", states=CAP_STATES) == {ids[0]: 2}
    assert usage(ids, "2026-10-01T00:00:00Z", campaign="nps", states=CAP_STATES) == {ids[0]: 2}


def test_replies_are_queued_and_summarised(store: Store) -> None:
    ids = add_customers(store, 1)
    plan(store, ids)
    with store.write():
        reply = {
            "id": "r1",
            "customer_id": ids[0],
            "channel": "sms",
            "purpose": "follow_up",
            "template": "thanks",
            "counts_for_cap": 0,
            "status": "queued",
            "not_before": AT,
            "created_at": AT,
            "updated_at": AT,
        }
        store.deliveries.insert_reply(tuple(reply.get(c) for c in DELIVERY_COLUMNS))
    assert list(store.deliveries.summarize([("nps", AT)])) == [("nps", AT, {"queued": 1})]
    assert store.deliveries.count_due(AT, ["sms"]) == 2
    claimed = store.deliveries.claim_due(AT, 5, ids=["r1"], from_states=DUE_STATES)
    assert [d["id"] for d in claimed] == ["r1"]


# ---------------------------------------------------------------------- conversations


def test_a_conversation_is_created_once_and_read_back(store: Store) -> None:
    ids = add_customers(store, 2)
    with store.write():
        first = store.conversations.ensure_conversation(ids[0], AT)
        assert store.conversations.ensure_conversation(ids[0], LATER) == first
        other = store.conversations.create_conversation(ids[1], AT)
    assert other != first
    conversation = store.conversations.get_conversation(ids[0])
    assert conversation is not None
    assert (conversation["id"], conversation["status"], conversation["created_at"]) == (
        first,
        "open",
        AT,
    )
    with store.write():
        store.conversations.update_conversation(
            first, needs_attention=1, attention_reason="reply", updated_at=LATER
        )
    updated = store.conversations.get_conversation(ids[0])
    assert updated is not None
    assert updated["needs_attention"] == 1
    assert set(store.conversations.conversations_for(ids)) == set(ids)
    assert store.conversations.get_conversation("nobody") is None


def test_an_inbound_message_is_stored_once_per_provider_id(store: Store) -> None:
    ids = add_customers(store, 1)
    with store.write():
        conversation = store.conversations.ensure_conversation(ids[0], AT)
        message = {
            "conversation_id": conversation,
            "customer_id": ids[0],
            "direction": "in",
            "channel": "sms",
            "text": "YES",
            "external_id": "SM-in-1",
            "at": AT,
        }
        first = store.conversations.insert_message(**message)
        again = store.conversations.insert_message(**message)
        # the same id on another channel is another message
        other = store.conversations.insert_message(**{**message, "channel": "whatsapp"})
    assert isinstance(first, int) and again is None and isinstance(other, int)
    assert store.conversations.wrote_since([(ids[0], "sms"), (ids[0], "email")], AT) == {
        (ids[0], "sms"),
    }
    listed = list(store.conversations.list_conversations())
    assert [c["customer_id"] for c in listed] == ids
    summary = store.conversations.conversation_summary(ids[0])
    assert summary is not None and summary["messages"] == 2


# ----------------------------------------------------------------------------- export


def test_exports_stream_rows_in_order(store: Store) -> None:
    ids = add_customers(store, 3)
    with store.write():
        for n, cid in enumerate(ids):
            conversation = store.conversations.ensure_conversation(cid, AT)
            store.conversations.insert_message(
                conversation_id=conversation,
                customer_id=cid,
                direction="in",
                channel="sms",
                text=f"reply {n}",
                external_id=f"in-{n}",
                at=f"2026-12-01T10:0{n}:00Z",
            )
    replies = store.reports.iter_replies(campaign=None, since=None, until=None)
    assert isinstance(replies, Iterator)
    first = next(replies)
    assert dict(zip(REPLY_COLUMNS, first, strict=True))["text"] == "reply 0"
    assert [r[REPLY_COLUMNS.index("text")] for r in replies] == ["reply 1", "reply 2"]
    window = store.reports.iter_replies(
        campaign=None, since="2026-12-01T10:01:00Z", until="2026-12-01T10:02:00Z"
    )
    assert [r[1] for r in window] == [ids[1]]
    messages = list(store.reports.iter_conversation_messages(campaign=None, since=None, until=None))
    assert len(messages) == 3


def test_the_signing_key_is_made_once_and_kept(backend: Backend) -> None:
    first = backend.open()
    key = first.meta.signing_key()
    assert len(key) == 32 and first.meta.signing_key() == key
    first.close()
    again = backend.open()
    try:
        assert again.meta.signing_key() == key
    finally:
        again.close()


def test_the_same_inbound_message_from_two_processes_is_stored_once(backend: Backend) -> None:
    """Two serve replicas given the same provider message at once: one stores it, the other
    is told it is a duplicate (it waits for the first's transaction, then skips)."""
    setup = backend.open()
    ids = add_customers(setup, 1)
    with setup.write():
        conversation = setup.conversations.ensure_conversation(ids[0], AT)
    setup.close()
    results: list[int | None] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def replica() -> None:
        store = backend.open()
        try:
            start.wait()
            result = store.when_unlocked(lambda: _store_once(store, conversation, ids[0]))
            results.append(result)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 2 and sum(r is not None for r in results) == 1


def _store_once(store: Store, conversation: int, customer: str) -> int | None:
    with store.write():
        return store.conversations.insert_message(
            conversation_id=conversation,
            customer_id=customer,
            direction="in",
            channel="sms",
            text="YES",
            external_id="SM-twice",
            at=AT,
        )


def test_an_email_thread_is_the_latest_message_each_way(store: Store) -> None:
    ids = add_customers(store, 1)
    plan(store, ids, channel="email")
    (sent,) = store.deliveries.claim_due(LATER, 1, from_states=DUE_STATES)
    store.deliveries.record_results(
        [Result(sent["id"], "sent", LATER)],
        [
            {
                "customer_id": ids[0],
                "channel": "email",
                "text": "How likely…",
                "at": LATER,
                "subject": "Your opinion",
                "delivery_id": sent["id"],
            }
        ],
    )
    assert store.conversations.email_thread(ids[0], "email") == {
        "out_subject": "Your opinion",
        "out_delivery": sent["id"],
    }
    with store.write():
        conversation = store.conversations.ensure_conversation(ids[0], LATER)
        store.conversations.insert_message(
            conversation_id=conversation,
            customer_id=ids[0],
            direction="in",
            channel="email",
            text="9",
            subject="Re: Your opinion",
            external_id="<m1@example.com>",
            at="2026-12-01T12:00:00Z",
        )
    thread = store.conversations.email_thread(ids[0], "email")
    assert (thread["in_subject"], thread["in_id"]) == ("Re: Your opinion", "<m1@example.com>")
    assert store.conversations.email_thread("nobody", "email") == {}


def test_replies_find_their_customer_by_reply_token_and_quoted_message_id(store: Store) -> None:
    ids = add_customers(store, 2)
    plan(store, ids, channel="email")
    first, second = store.deliveries.claim_due(LATER, 2, from_states=DUE_STATES)
    store.deliveries.record_results(
        [
            Result(first["id"], "sent", LATER, provider_message_id=f"<{first['id']}@acme.example>"),
            Result(second["id"], "sent", LATER),
        ],
        [
            {
                "customer_id": first["customer_id"],
                "channel": "email",
                "text": "Hi",
                "at": LATER,
                "reply_token": "tok123",
            }
        ],
    )
    assert store.mail.customers_by_reply_token(["tok123", "nope"]) == {
        "tok123": first["customer_id"]
    }
    found = store.mail.customers_by_sent_message(
        [f"<{first['id']}@acme.example>", f"{second['id']}@acme.example", "x@y"]
    )
    assert found == {
        f"{first['id']}@acme.example": first["customer_id"],
        f"{second['id']}@acme.example": second["customer_id"],
    }


# -- shared send rates ------------------------------------------------------------------------


def test_reservations_of_one_key_follow_each_other(store: Store) -> None:
    t0 = time.monotonic()
    first = store.limits.reserve("channel:sms", 100.0, 10)
    second = store.limits.reserve("channel:sms", 100.0, 10)
    third = store.limits.reserve("channel:sms", 100.0, 5)
    elapsed = time.monotonic() - t0
    assert first < 0.001
    # 10 slots at 100/s are 0.1 s: the next batch starts where the first ends
    assert 0.1 - elapsed - 0.005 <= second <= 0.1 + 0.005
    assert 0.2 - elapsed - 0.005 <= third <= 0.2 + 0.005
    # another key has a schedule of its own
    assert store.limits.reserve("campaign:nps", 100.0, 10) < 0.001


def test_an_idle_limit_gives_no_burst_credit(store: Store) -> None:
    for attempt in range(5):  # again (a new key) if the machine was too busy to tell
        key = f"channel:sms{attempt}"
        store.limits.reserve(key, 100.0, 1)
        time.sleep(0.3)  # 30 slots' worth of idle time
        t0 = time.monotonic()
        assert store.limits.reserve(key, 100.0, 20) < 0.001
        wait = store.limits.reserve(key, 100.0, 1)
        elapsed = time.monotonic() - t0
        if elapsed < 0.15:
            break
    # the idle time bought nothing: the next batch waits for those 20 slots (0.2 s) but
    # the time between the two reservations; with credit for the idle time, those slots
    # would be spent already and it would not wait at all
    assert elapsed < 0.15, f"{elapsed:.3f} s between two reservations: too slow to tell"
    assert 0.2 - elapsed - 0.002 <= wait <= 0.2 + 0.002


def test_reservations_from_many_connections_never_share_a_slot(backend: Backend) -> None:
    # slots far longer than a reservation takes, so that none has passed when the last
    # is made
    rate, threads, each = 100.0, 4, 50
    setup = backend.open()
    setup.limits.reserve("channel:sms", rate, 1)  # the row and the schema exist
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def reserver() -> None:
        store = backend.open()
        try:
            start.wait()
            for _ in range(each):
                store.limits.reserve("channel:sms", rate, 1)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            store.close()

    t0 = time.monotonic()
    workers = [threading.Thread(target=reserver) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    # every one of the 1 + 200 reservations moved the shared next slot: the schedule now
    # reaches 201 slots from the start, however the connections interleaved
    wait = setup.limits.reserve("channel:sms", rate, 1)
    reached = time.monotonic() - t0 + wait
    assert reached >= (1 + threads * each) / rate - 0.01
    setup.close()


RANKS = {"opt_out_intent": 3, "unclear_answer": 2, "reply": 1}


def _merge(store: Store, customer: str, **news: Any) -> dict[str, Any]:
    conversation = store.conversations.get_conversation(customer)
    assert conversation is not None
    row = {
        "id": conversation["id"],
        "last_inbound_at": AT,
        "last_inbound_channel": "sms",
        "auto_reply_until": None,
        "updated_at": AT,
        "attention_reason": None,
        **news,
    }
    row["attention_rank"] = RANKS.get(row["attention_reason"] or "", 0)
    with store.write():
        store.conversations.merge_conversations([tuple(row[c] for c in CONVERSATION_NEWS)], RANKS)
    merged = store.conversations.get_conversation(customer)
    assert merged is not None
    return merged


def test_merged_conversation_news_keep_the_later_message_and_the_stronger_reason(
    store: Store,
) -> None:
    ids = add_customers(store, 1)
    with store.write():
        conversation = store.conversations.ensure_conversation(ids[0], AT)
        store.conversations.update_conversation(conversation, status="closed", updated_at=AT)
    first = _merge(store, ids[0], attention_reason="reply", updated_at=LATER)
    assert (first["status"], first["needs_attention"], first["attention_reason"]) == (
        "open",
        1,
        "reply",
    )
    assert first["updated_at"] == LATER
    stronger = _merge(store, ids[0], attention_reason="opt_out_intent")
    assert stronger["attention_reason"] == "opt_out_intent"
    assert stronger["updated_at"] == LATER  # an earlier batch's time never goes back
    weaker = _merge(store, ids[0], attention_reason="reply")
    assert weaker["attention_reason"] == "opt_out_intent"
    equal = _merge(store, ids[0], attention_reason="unclear_answer")
    assert equal["attention_reason"] == "opt_out_intent"
    # a message that needs nobody changes neither flag nor reason
    quiet = _merge(store, ids[0])
    assert (quiet["needs_attention"], quiet["attention_reason"]) == (1, "opt_out_intent")
    # once an agent has cleared it, any reason flags it again
    with store.write():
        store.conversations.update_conversation(
            conversation, needs_attention=0, attention_reason=None, updated_at=LATER
        )
    again = _merge(store, ids[0], attention_reason="reply")
    assert (again["needs_attention"], again["attention_reason"]) == (1, "reply")
    # the later message names the reply channel, whichever batch is merged last
    later = _merge(
        store,
        ids[0],
        last_inbound_at=LATER,
        last_inbound_channel="whatsapp",
        auto_reply_until=LATER,
    )
    earlier = _merge(
        store, ids[0], last_inbound_at=AT, last_inbound_channel="email", auto_reply_until=AT
    )
    assert later["last_inbound_channel"] == earlier["last_inbound_channel"] == "whatsapp"
    assert earlier["last_inbound_at"] == LATER
    assert earlier["auto_reply_until"] == LATER


def test_a_held_customer_is_held_until_the_holder_commits(backend: Backend) -> None:
    """Two serve replicas with messages of one customer: the second waits for the first's
    commit before it reads the conversation; one of another customer does not wait (on
    SQLite every write transaction waits for the one before)."""
    setup = backend.open()
    ids = add_customers(setup, 2)
    setup.close()
    first, second, third = backend.open(), backend.open(), backend.open()
    order: list[str] = []

    def hold(store: Store, customer: str, name: str) -> None:
        with store.write():
            store.conversations.hold_customers([customer])
            order.append(name)

    try:
        with first.write():
            first.conversations.hold_customers([ids[1], ids[0], ids[0]])
            waiter = threading.Thread(target=hold, args=(second, ids[0], "second"))
            waiter.start()
            if backend.name == "postgresql":
                hold(third, ids[1] + "-other", "other")
            waiter.join(0.5)
            assert waiter.is_alive()  # still waiting for the first's commit
            order.append("first")
        waiter.join(10)
        assert not waiter.is_alive()
        expected = ["first", "second"]
        assert order == (["other", *expected] if backend.name == "postgresql" else expected)
    finally:
        for store in (first, second, third):
            store.close()


def test_a_clock_stepped_back_does_not_stall_the_limit(store: Store, backend: Backend) -> None:
    store.limits.reserve("channel:sms", 100.0, 10)  # 0.1 s of slots
    # as if those slots had been reserved by a clock an hour ahead of today's
    backend.raw("UPDATE rate_limits SET next_at = next_at + 3600, reserved_at = reserved_at + 3600")
    wait = store.limits.reserve("channel:sms", 100.0, 1)
    # the schedule moved back with the clock: the next slot follows the 10 reserved
    assert 0.05 <= wait <= 0.1 + 0.005


def test_a_large_batch_holds_every_customer_with_one_lock(backend: Backend) -> None:
    """A batch of hundreds of customers (a replies ingest batch) holds everyone at once
    rather than filling the server's lock table; any other holder waits for its commit."""
    setup = backend.open()
    ids = add_customers(setup, 300)
    other = add_customers(setup, 1, prefix="x")
    setup.close()
    first, second = backend.open(), backend.open()
    order: list[str] = []

    def hold_other() -> None:
        with second.write():
            second.conversations.hold_customers(other)
            order.append("other")

    try:
        with first.write():
            assert first.conversations.hold_customers(ids) is True
            waiter = threading.Thread(target=hold_other)
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive()
            order.append("first")
        waiter.join(10)
        assert order == ["first", "other"]
        with first.write():
            # a few customers are held one by one (on SQLite the transaction holds all)
            assert first.conversations.hold_customers(ids[:3]) is (backend.name == "sqlite")
    finally:
        first.close()
        second.close()
