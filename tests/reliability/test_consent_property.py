"""Consent as a property: whatever happens, nobody gets a campaign message without opt-in.

Hypothesis draws sequences of customer imports, consent grants and revocations, STOP and
START replies (``replies ingest``) and runs at advancing ``--now`` times, all through the
real CLI in this process on a real workspace (channels on the outbox). The campaign is
hourly, sends only 09:00-17:00 Amsterdam time, and routes to sms then email, so deliveries
are planned, deferred, and sent hours later, after consent may have changed.

Checked after every step:
- every campaign message a run sent (``messages`` out, joined to a campaign delivery) went
  to a customer whose latest consent on that channel, read from the ledger just before the
  run, was ``opted_in``; and never while the test's own model says the customer revoked
  (STOP, ``consent revoke``) without a later grant;
- the outbox holds exactly the campaign messages the store says were sent;
- the consent ledger only grows: rows are never changed or removed, and UPDATE and DELETE
  are refused by the database itself.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from outreach import clock

from .support import cloned_workspace, customers_csv, in_process, outreach_toml, phone

CUSTOMERS = 4
CHANNELS = ("sms", "email")
HOURLY = """kind = "update"
template = "product_update"
channels = ["sms", "email"]

[schedule]
start = "2026-12-01 00:00"
rrule = "FREQ=HOURLY"
window = "09:00-17:00"
late = "2h"
"""
OUTBOX = "".join(
    f'[channels.{name}]\nprovider = "outbox"\nconcurrency = 4\n\n' for name in CHANNELS
)
START = clock.parse_time("2026-12-01T06:10:00Z")

cid = st.integers(0, CUSTOMERS - 1)
channel = st.sampled_from(CHANNELS)
step = st.one_of(
    st.tuples(
        st.just("import"),
        st.lists(cid, min_size=1, max_size=CUSTOMERS, unique=True),
        st.sampled_from(["", "sms", "email", "sms;email"]),
    ),
    st.tuples(st.just("grant"), cid, channel),
    st.tuples(st.just("revoke"), cid, channel),
    st.tuples(st.just("stop"), cid, channel),
    st.tuples(st.just("start"), cid, channel),
    st.tuples(st.just("run"), st.integers(1, 20)),
)


def _ledger(ws: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(ws / "outreach.db")
    try:
        return conn.execute("SELECT * FROM consent ORDER BY id").fetchall()
    finally:
        conn.close()


def _current(ws: Path) -> dict[tuple[str, str], str]:
    current: dict[tuple[str, str], str] = {}
    for row in _ledger(ws):
        current[(row[1], row[2])] = row[3]
    return current


def _campaign_sends(ws: Path, after: int) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(ws / "outreach.db")
    try:
        return conn.execute(
            "SELECT m.id, m.customer_id, m.channel FROM messages m JOIN deliveries d "
            "ON d.id = m.delivery_id WHERE m.direction = 'out' AND d.purpose = 'campaign' "
            "AND m.id > ? ORDER BY m.id",
            (after,),
        ).fetchall()
    finally:
        conn.close()


def _outbox_campaign_files(ws: Path) -> int:
    count = 0
    for path in (ws / "outbox").rglob("*"):
        if path.suffix == ".json":
            count += bool(json.loads(path.read_text(encoding="utf-8")).get("campaign"))
        elif path.suffix == ".eml":
            count += "product_update" in path.read_text(encoding="utf-8") or (
                "What's new at" in path.read_text(encoding="utf-8")
            )
    return count


def _address(i: int, ch: str) -> str:
    return phone(i) if ch == "sms" else f"c{i}@example.com"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=3, max_size=12))
def test_no_campaign_message_without_opt_in_and_the_ledger_only_grows(
    steps: list[tuple[Any, ...]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = cloned_workspace(Path(tmp) / "ws", outreach_toml(OUTBOX), {"hourly": HOURLY})
        now = START
        revoked: set[tuple[str, str]] = set()  # the test's own model of who said no
        last_message = 0
        ledger = _ledger(ws)
        for n, action in enumerate(steps):
            kind = action[0]
            at = clock.iso(now)
            if kind == "import":
                ids, opted = action[1], action[2]
                lines = customers_csv(CUSTOMERS, opted_in=opted).splitlines()
                path = Path(tmp) / f"import{n}.csv"
                path.write_text("\n".join([lines[0], *(lines[i + 1] for i in ids)]) + "\n")
                result = in_process(ws, "--now", at, "customers", "import", str(path))
                assert result.exit_code == 0, result.stderr
                for i in ids:
                    for ch in CHANNELS:
                        if ch in opted:
                            revoked.discard((f"c{i:05d}", ch))
            elif kind in ("grant", "revoke"):
                customer = f"c{action[1]:05d}"
                result = in_process(
                    ws, "--now", at, "consent", kind, customer, "--channel", action[2]
                )
                if result.exit_code == 2:  # not imported yet
                    assert "c" in result.stderr
                    continue
                assert result.exit_code == 0, result.stderr
                (revoked.add if kind == "revoke" else revoked.discard)((customer, action[2]))
            elif kind in ("stop", "start"):
                i, ch = action[1], action[2]
                line = json.dumps(
                    {"channel": ch, "from": _address(i, ch), "text": kind.upper(), "id": f"in-{n}"}
                )
                result = in_process(ws, "--now", at, "replies", "ingest", "-", input=line)
                assert result.exit_code in (0, 3), result.stderr
                known = (f"c{i:05d}", ch)
                if kind == "stop":
                    revoked.add(known)
                elif _current(ws).get(known) == "opted_in":
                    revoked.discard(known)
            else:
                now += timedelta(hours=action[1])
                before = _current(ws)
                result = in_process(ws, "--now", clock.iso(now), "run", "hourly", "--json")
                assert result.exit_code in (0, 3), result.stderr + result.stdout
                sends = _campaign_sends(ws, last_message)
                for _, customer, ch in sends:
                    assert before.get((customer, ch)) == "opted_in", (customer, ch, before)
                    assert (customer, ch) not in revoked, (customer, ch)
                if sends:
                    last_message = sends[-1][0]
                event(f"run sent {min(len(sends), 2)}+ campaign messages")
                skipped = json.loads(result.stdout)["campaigns"]
                if any(line["skipped"].get("opted_out") for line in skipped):
                    event("a run skipped an opted-out customer")
            grown = _ledger(ws)
            assert grown[: len(ledger)] == ledger, "a consent row was changed or removed"
            ledger = grown
        assert _outbox_campaign_files(ws) == len(_campaign_sends(ws, 0))
        conn = sqlite3.connect(ws / "outreach.db")
        try:
            if ledger:
                with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                    conn.execute("UPDATE consent SET status = 'opted_in'")
                with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                    conn.execute("DELETE FROM consent")
        finally:
            conn.close()
