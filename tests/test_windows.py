"""Windows and business hours: every planned send lies inside the recipient's local window."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.config import BusinessHours, Cap, Rate, Window
from outreach.errors import ConfigError

ZONES = sorted(
    z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "posix", "right"))
)
INTERESTING = [
    "Europe/Amsterdam",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Adelaide",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Asia/Tokyo",
]


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("09:00-20:00", time(9), time(20)),
        ("22:00-06:00", time(22), time(6)),
        ("00:00-24:00", time(0), time.max),
    ],
)
def test_window_parses(text: str, start: time, end: time) -> None:
    window = Window.parse(text, where="w")
    assert (window.start, window.end) == (start, end)


@pytest.mark.parametrize("text", ["25:00-08:00", "9-17", "09:00", "09:60-10:00", "10:00-10:00"])
def test_bad_window_is_a_config_error_naming_the_value(text: str) -> None:
    with pytest.raises(ConfigError, match=r"outreach\.toml"):
        Window.parse(text, where="outreach.toml [sending] window")


def test_rate_and_cap_parse_and_reject() -> None:
    assert Rate.parse("200/s", where="r").per_second == 200
    assert Rate.parse("600/m", where="r").per_second == 10
    assert Cap.parse("2/7d", where="c").period == timedelta(days=7)
    for bad_rate in ("fast", "0/s", "20/x"):
        with pytest.raises(ConfigError, match="not a rate"):
            Rate.parse(bad_rate, where="r")
    for bad_cap in ("2/7x", "two per week"):
        with pytest.raises(ConfigError, match="not a frequency cap"):
            Cap.parse(bad_cap, where="c")


def test_next_opening_is_tomorrow_morning_local() -> None:
    window = Window.parse("09:00-20:00", where="w")
    tz = ZoneInfo("America/New_York")
    late = datetime(2026, 12, 1, 23, 30, tzinfo=tz)
    opening = window.next_opening(late.astimezone(UTC), tz)
    assert opening.astimezone(tz) == datetime(2026, 12, 2, 9, 0, tzinfo=tz)


def test_next_opening_across_spring_forward_keeps_local_nine() -> None:
    window = Window.parse("09:00-20:00", where="w")
    tz = ZoneInfo("Europe/Amsterdam")
    # the night of 28-29 March 2026 loses an hour
    night = datetime(2026, 3, 28, 22, 0, tzinfo=tz).astimezone(UTC)
    opening = window.next_opening(night, tz).astimezone(tz)
    assert (opening.hour, opening.minute, opening.day) == (9, 0, 29)
    assert opening.utcoffset() == timedelta(hours=2)


def test_window_starting_in_a_dst_gap_opens_after_the_gap() -> None:
    window = Window.parse("02:30-05:00", where="w")
    tz = ZoneInfo("Europe/Amsterdam")
    before = datetime(2026, 3, 29, 1, 0, tzinfo=tz).astimezone(UTC)
    opening = window.next_opening(before, tz)
    assert window.contains(opening.astimezone(tz))
    assert opening >= before


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(INTERESTING) | st.sampled_from(ZONES),
    start_minutes=st.integers(0, 24 * 60 - 1),
    length=st.integers(30, 23 * 60),
    moment=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
)
def test_every_next_opening_lies_inside_the_local_window(
    zone: str, start_minutes: int, length: int, moment: datetime
) -> None:
    end_minutes = (start_minutes + length) % (24 * 60)
    start = f"{start_minutes // 60:02d}:{start_minutes % 60:02d}"
    text = f"{start}-{end_minutes // 60:02d}:{end_minutes % 60:02d}"
    window = Window.parse(text, where="w")
    tz = ZoneInfo(zone)
    opening = window.next_opening(moment, tz)
    assert opening >= moment
    assert window.contains(opening.astimezone(tz))
    assert opening - moment <= timedelta(days=2)


def test_business_hours_next_opening_skips_the_weekend() -> None:
    hours = BusinessHours.parse("Mon-Fri 09:00-17:30", where="b")
    tz = ZoneInfo("Europe/Amsterdam")
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=tz)
    assert not hours.is_open(saturday)
    assert hours.next_opening(saturday, tz) == datetime(2026, 11, 30, 9, 0, tzinfo=tz)
    assert hours.is_open(datetime(2026, 11, 30, 17, 29, tzinfo=tz))
