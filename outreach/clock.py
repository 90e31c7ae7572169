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
# a --now without a zone: workspace time, so it is resolved once the workspace is known
_fixed_naive: datetime | None = None
_zone: ZoneInfo | None = None


def parse_time(text: str, tz: ZoneInfo | None = None, *, what: str = "time") -> datetime:
    """Parse an ISO-ish time; a naive time is taken in ``tz`` (UTC when None). Returns UTC."""
    value = _parse(text, what)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz or UTC)
    return value.astimezone(UTC)


def _parse(text: str, what: str) -> datetime:
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
    return value


def set_zone(tz: ZoneInfo | None) -> None:
    """The workspace time zone: a ``--now``/``OUTREACH_NOW`` without a zone is read in it."""
    global _zone
    _zone = tz


def set_now(value: datetime | str | None) -> None:
    """Fix the clock (``--now``); None returns to the real clock.

    A time without a zone is workspace time (see ``set_zone``; UTC until one is known).
    """
    global _fixed, _fixed_naive
    if isinstance(value, str):
        value = _parse(value, "--now")
    _fixed_naive = None
    if value is not None and value.tzinfo is None:
        _fixed_naive, value = value, None
    _fixed = value.astimezone(UTC) if value is not None else None


def fixed() -> datetime | None:
    """The time ``--now`` fixed, or None on the real clock (for a child process)."""
    if _fixed_naive is not None:
        return _fixed_naive.replace(tzinfo=_zone or UTC).astimezone(UTC)
    return _fixed


def now() -> datetime:
    """The current time, aware and in UTC, honouring --now and OUTREACH_NOW."""
    if _fixed is not None:
        return _fixed
    if _fixed_naive is not None:
        return _fixed_naive.replace(tzinfo=_zone or UTC).astimezone(UTC)
    env = os.environ.get("OUTREACH_NOW")
    if env:
        return parse_time(env, _zone, what="OUTREACH_NOW")
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
