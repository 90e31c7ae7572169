"""The one clock of outreach.

Every module asks ``clock.now()`` for the time, never ``datetime.now()``, so that
``--now`` / ``OUTREACH_NOW`` can move the whole program in time for tests and what-if runs.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dateutil import parser as date_parser

from .errors import UsageError

_fixed: datetime | None = None


def parse_time(text: str, tz: ZoneInfo | None = None, *, what: str = "time") -> datetime:
    """Parse an ISO-ish time; a naive time is taken in ``tz`` (UTC when None). Returns UTC."""
    try:
        value = date_parser.isoparse(text.strip())
    except (ValueError, OverflowError):
        try:
            value = date_parser.parse(text)
        except (ValueError, OverflowError) as exc:
            raise UsageError(
                f'{what} "{text}" is not a time; write it like 2026-12-01 10:00 or '
                "2026-12-01T10:00:00+01:00"
            ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz or UTC)
    return value.astimezone(UTC)


def set_now(value: datetime | str | None) -> None:
    """Fix the clock (``--now``); None returns to the real clock."""
    global _fixed
    if isinstance(value, str):
        value = parse_time(value, what="--now")
    _fixed = value.astimezone(UTC) if value is not None else None


def fixed() -> datetime | None:
    """The time ``--now`` fixed, or None on the real clock (for a child process)."""
    return _fixed


def now() -> datetime:
    """The current time, aware and in UTC, honouring --now and OUTREACH_NOW."""
    if _fixed is not None:
        return _fixed
    env = os.environ.get("OUTREACH_NOW")
    if env:
        return parse_time(env, what="OUTREACH_NOW")
    return datetime.now(UTC)


_last_iso: tuple[int, str] | None = None


def iso(value: datetime) -> str:
    """UTC ISO 8601 to the second with a Z: how every time is stored.

    One fixed width, so that SQL can compare the strings as times. A send records a time
    per message, mostly within the same second: the last second's text is reused.
    """
    global _last_iso
    second = math.floor(value.timestamp())
    if _last_iso is not None and _last_iso[0] == second:
        return _last_iso[1]
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _last_iso = (second, text)
    return text
