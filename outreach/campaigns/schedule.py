"""Occurrence maths: which occurrences of a campaign are due, missed, latest or next.

An occurrence is the UTC ISO time of one firing of a campaign's schedule (or, for a
triggered send, the hash of its ``--customers`` file); planning is keyed on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from .. import clock
from ..config import Config
from ..errors import OutreachError
from ..store import Store
from .files import Campaign, list_campaigns, load_campaign, recurrence


def occurrences(campaign: Campaign, tz: ZoneInfo, until: datetime) -> Iterator[datetime]:
    """A campaign's occurrences (UTC) from its start up to ``until`` inclusive."""
    if campaign.start is None:
        return
    if campaign.rrule is None:
        if campaign.start <= until:
            yield campaign.start
        return
    end = min(until, campaign.until) if campaign.until else until
    for moment in recurrence(campaign, tz):
        moment_utc = moment.astimezone(UTC)
        if moment_utc > end:
            return
        yield moment_utc


@dataclass(frozen=True)
class Due:
    """An occurrence to plan now, or one to record as missed."""

    campaign: Campaign
    occurrence: str
    missed: bool = False


def due_occurrences(
    config: Config,
    store: Store,
    now: datetime,
    *,
    on_broken: Callable[[OutreachError], None] | None = None,
) -> list[Due]:
    """``run --due``: for each campaign, its unplanned occurrences up to ``now``.

    A machine that was off for a while must not fire every occurrence it slept through:
    only the latest unplanned one is planned, older ones are recorded as missed, and with
    ``late`` set the latest is missed too when it is older than that.

    A campaign file that does not load is passed to ``on_broken`` and the others are
    still due (without ``on_broken``, its error is raised).
    """
    out: list[Due] = []
    for name in list_campaigns(config):
        try:
            campaign = load_campaign(config, name)
        except OutreachError as exc:
            if on_broken is None:
                raise
            on_broken(exc)
            continue
        if campaign.start is None:
            continue  # triggered campaigns (run NAME --customers FILE) are never due
        known = store.deliveries.known_occurrences(name)
        # an occurrence still 'planning' was interrupted mid-way: planning it again is safe
        pending = [
            clock.iso(o)
            for o in occurrences(campaign, config.timezone, now)
            if known.get(clock.iso(o), "planning") == "planning"
        ]
        if not pending:
            continue
        *older, latest = pending
        out.extend(Due(campaign, o, missed=True) for o in older[-50:])
        too_late = campaign.late is not None and now - clock.parse_time(latest) > campaign.late
        out.append(Due(campaign, latest, missed=too_late))
    return out


def latest_occurrence(config: Config, campaign: Campaign, now: datetime) -> str | None:
    """``run NAME``: the latest occurrence at or before now (sent even when late)."""
    latest = None
    for moment in occurrences(campaign, config.timezone, now):
        latest = moment
    return clock.iso(latest) if latest else None


def next_occurrence(config: Config, campaign: Campaign, now: datetime) -> datetime | None:
    """The first occurrence after ``now``, for messages like "starts on …"."""
    if campaign.start is None:
        return None
    if campaign.rrule is None:
        return campaign.start if campaign.start > now else None
    rule = recurrence(campaign, config.timezone)
    moment = rule.after(now.astimezone(config.timezone))
    if moment is None:
        return None
    moment_utc: datetime = moment.astimezone(UTC)
    if campaign.until and moment_utc > campaign.until:
        return None
    return moment_utc


def trigger_occurrence(path: Path) -> str:
    """A triggered send's occurrence key: the file's content hash, so a re-run is a no-op."""
    return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
