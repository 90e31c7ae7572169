"""Send windows as a property of the whole ``run``, across time zones and DST changes.

Hypothesis draws a window (possibly wrapping midnight, on quarter hours), the recipients'
time zones (DST in both hemispheres, half- and quarter-hour offsets, Lord Howe's half-hour
DST shift) and a clock near a DST transition. The campaign is planned and run at that
clock, then run again at each deferred delivery's ``not_before`` until all are sent.
Every send's ``sent_at``, read in the recipient's zone, must lie inside the window, and
every deferral must point forward in time. (``tests/test_windows.py`` checks
``Window.next_opening`` alone; this checks the run that uses it.)

The property found a bug, fixed since and pinned by the tests at the end: a window that
opens at a wall time lost to a DST gap got an "opening" outside the window, or at ``now``
itself, and ``run`` then never returned.
"""

from __future__ import annotations

import subprocess
import tempfile
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach import clock
from outreach.config import Window

from .support import (
    cloned_workspace,
    customers_csv,
    in_process,
    make_workspace,
    outreach_toml,
    query,
    run_cli,
)

ZONES = (
    "Europe/Amsterdam",
    "Europe/London",
    "America/New_York",
    "America/St_Johns",
    "America/Santiago",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Asia/Tehran",
    "UTC",
)
# DST changes in 2026 (UTC days): US, EU, Chile, AU/NZ
TRANSITIONS = (
    "2026-03-08",
    "2026-03-29",
    "2026-04-05",
    "2026-09-06",
    "2026-09-27",
    "2026-10-04",
    "2026-10-25",
    "2026-11-01",
)
OUTBOX = '[channels.sms]\nprovider = "outbox"\nconcurrency = 4\n'

quarter = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
windows = st.tuples(quarter, quarter).filter(lambda w: w[0] != w[1])
clocks = st.builds(
    lambda day, minutes: clock.parse_time(day + "T00:00:00Z") + timedelta(minutes=minutes),
    st.sampled_from(TRANSITIONS),
    st.integers(-36 * 60, 36 * 60),
)


def _fmt(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    window=windows,
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=4),
    start=clocks,
)
def test_every_send_is_inside_the_recipients_local_window(
    window: tuple[time, time], zones: list[str], start: datetime
) -> None:
    text = f"{_fmt(window[0])}-{_fmt(window[1])}"
    parsed = Window.parse(text, where="test")
    campaign = (
        'kind = "update"\ntemplate = "product_update"\nchannels = ["sms"]\n\n'
        f'[schedule]\nstart = "{clock.iso(start - timedelta(minutes=5))}"\n'
        f'window = "{text}"\n'
    )
    with tempfile.TemporaryDirectory() as tmp:
        ws = cloned_workspace(Path(tmp) / "ws", outreach_toml(OUTBOX))
        (ws / "campaigns" / "w.toml").write_text(campaign, encoding="utf-8")
        (ws / "customers.csv").write_text(customers_csv(len(zones), timezones=zones))
        imported = in_process(ws, "customers", "import", str(ws / "customers.csv"))
        assert imported.exit_code == 0, imported.stderr
        now = start
        for _ in range(6):
            result = in_process(ws, "--now", clock.iso(now), "run", "w", "--json")
            assert result.exit_code == 0, result.stderr + result.stdout
            waiting = query(ws, "SELECT not_before FROM deliveries WHERE status = 'deferred'")
            if not waiting:
                break
            later = min(clock.parse_time(r[0]) for r in waiting)
            assert later > now, "a deferral that does not move forward"
            now = later
        rows = query(
            ws,
            "SELECT d.status, d.sent_at, c.timezone FROM deliveries d "
            "JOIN customers c ON c.id = d.customer_id",
        )
        assert len(rows) == len(zones)
        for status, sent_at, zone in rows:
            assert status == "sent", (status, text, zone, start)
            local = clock.parse_time(sent_at).astimezone(ZoneInfo(zone))
            assert parsed.contains(local), f"sent at {local} outside {text} ({zone})"


@pytest.mark.parametrize(
    ("zone", "moment"),
    [("America/St_Johns", "2026-03-08T05:30:00Z"), ("Europe/Amsterdam", "2026-03-29T00:10:00Z")],
)
def test_next_opening_of_a_window_inside_a_dst_gap_is_inside_the_window(
    zone: str, moment: str
) -> None:
    window = Window.parse("02:00-02:15", where="test")
    tz = ZoneInfo(zone)
    opening = window.next_opening(clock.parse_time(moment), tz)
    assert opening > clock.parse_time(moment)
    assert window.contains(opening.astimezone(tz))


def test_a_run_whose_window_opens_in_a_dst_gap_returns(tmp_path: Path) -> None:
    campaign = (
        'kind = "update"\ntemplate = "product_update"\nchannels = ["sms"]\n\n'
        '[schedule]\nstart = "2026-03-08T00:00:00Z"\nwindow = "02:00-02:15"\n'
    )
    ws = make_workspace(
        tmp_path / "ws",
        outreach_toml(OUTBOX),
        campaigns={"w": campaign},
        customers_text=customers_csv(1, timezones=["America/St_Johns"]),
    )
    first = run_cli(ws, "run", "w", "--json", now="2026-03-08T04:00:00Z")
    assert first.returncode == 0, first.stderr
    try:
        again = run_cli(ws, "run", "--json", now="2026-03-08T05:30:00Z", timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("`outreach run` at the end of the DST gap did not return in 5 s")
    assert again.returncode == 0
