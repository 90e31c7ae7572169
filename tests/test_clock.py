"""clock.iso reuses the last second's text: it must never hand out another second's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from outreach import clock

moments = st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)


@given(st.lists(moments, min_size=1, max_size=20))
def test_iso_is_the_utc_second_of_each_moment_in_any_order(values: list[datetime]) -> None:
    for value in values:
        assert clock.iso(value) == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_iso_around_a_second_boundary_and_the_epoch() -> None:
    for base in (datetime(2026, 12, 1, 15, 30, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)):
        for offset in (-0.6, -0.1, 0, 0.1, 0.9, 1.0, 1.2, 0.3, -1.0):
            value = base + timedelta(seconds=offset)
            assert clock.iso(value) == value.strftime("%Y-%m-%dT%H:%M:%SZ")
