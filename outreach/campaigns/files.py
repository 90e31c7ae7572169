"""Campaign files: reading and validating ``campaigns/NAME.toml`` into a ``Campaign``.

Every error names the file and the key, and says how to fix it; a campaign that loads is
one the planner and the sending engine can use without checking it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from .. import clock
from ..config import Cap, Config, Rate, Window, parse_duration, read_toml
from ..errors import ConfigError, NotFoundError, UsageError
from ..locales import locale_chain
from ..policy import counts_for_cap

KINDS = ("survey", "notification", "update")
SURVEY_TYPES = ("nps", "csat", "choice", "yes_no", "text")


@dataclass(frozen=True)
class Survey:
    question: str
    type: str
    choices: tuple[str, ...]
    expires: timedelta
    follow_up: str | None
    # the question in other languages: locale (nl, nl-BE) → text
    translations: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """What is stored with an occurrence, for reading replies later."""
        return {
            "question": self.question,
            "type": self.type,
            "choices": list(self.choices),
            "expires_seconds": int(self.expires.total_seconds()),
            "follow_up": self.follow_up,
            "translations": dict(self.translations),
        }


@dataclass(frozen=True)
class Campaign:
    """One validated ``campaigns/NAME.toml``."""

    name: str
    kind: str
    template: str
    channels: tuple[str, ...]
    where: str | None
    start: datetime | None
    rrule: str | None
    until: datetime | None
    window: Window | None
    late: timedelta | None
    survey: Survey | None
    rate: Rate | None
    frequency_cap: Cap | None
    whatsapp_template: dict[str, Any] | None

    @property
    def counts_for_cap(self) -> bool:
        """Whether its deliveries count against (and are held back by) frequency caps."""
        return counts_for_cap(self.kind)


def recurrence(campaign: Campaign, tz: ZoneInfo) -> rrule:
    """The campaign's RRULE, anchored at its start in the workspace's zone."""
    assert campaign.start is not None and campaign.rrule is not None
    start_local = campaign.start.astimezone(tz)
    rule = rrulestr(campaign.rrule, dtstart=start_local)
    if not isinstance(rule, rrule):
        raise ConfigError(f"campaign {campaign.name}: rrule must be one RRULE")
    return rule


def list_campaigns(config: Config) -> list[str]:
    if not config.campaigns_dir.is_dir():
        return []
    return sorted(p.stem for p in config.campaigns_dir.glob("*.toml"))


def load_campaign(config: Config, name: str) -> Campaign:
    """Read and validate ``campaigns/NAME.toml``; errors name the file and key."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UsageError(f'"{name}" is not a campaign name; names are letters, digits, - and _')
    path = config.campaigns_dir / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(list_campaigns(config)) or "none"
        raise NotFoundError(f"campaign {name}: no file campaigns/{name}.toml (known: {known})")
    data = read_toml(path)
    where = f"campaigns/{name}.toml"
    allowed = {
        "kind",
        "template",
        "channels",
        "audience",
        "schedule",
        "survey",
        "limits",
        "whatsapp_template",
    }
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(allowed))}"
            )
    kind = data.get("kind", "notification")
    if kind not in KINDS:
        raise ConfigError(f'{where} kind: "{kind}" is not one of {", ".join(KINDS)}')
    template = data.get("template")
    if not isinstance(template, str) or not template:
        raise ConfigError(f"{where} template: required; the name of a folder in templates/")
    if not (config.templates_dir / template).is_dir():
        raise ConfigError(f"{where} template: templates/{template}/ does not exist")
    channels = data.get("channels", ["preferred"])
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) for c in channels)
    ):
        raise ConfigError(f'{where} channels: expected a list like ["preferred", "email"]')
    for channel in channels:
        if channel != "preferred" and channel not in config.channels:
            raise ConfigError(
                f'{where} channels: "{channel}" is not configured in outreach.toml '
                f"(configured: {', '.join(config.channels)})"
            )
    audience = _table(data, "audience", where)
    where_sql = audience.get("where")
    if where_sql is not None and not isinstance(where_sql, str):
        raise ConfigError(f"{where} [audience] where: expected an SQL expression as a string")
    schedule = _table(data, "schedule", where)
    tz = config.timezone
    start = _time(schedule.get("start"), tz, f"{where} [schedule] start")
    until = _time(schedule.get("until"), tz, f"{where} [schedule] until")
    window = (
        Window.parse(schedule["window"], where=f"{where} [schedule] window")
        if "window" in schedule
        else None
    )
    late = (
        parse_duration(schedule["late"], where=f"{where} [schedule] late")
        if "late" in schedule
        else None
    )
    rule_text = schedule.get("rrule")
    survey = _survey(data, kind, where)
    limits = _table(data, "limits", where)
    campaign = Campaign(
        name=name,
        kind=kind,
        template=template,
        channels=tuple(channels),
        where=where_sql,
        start=start,
        rrule=rule_text,
        until=until,
        window=window,
        late=late,
        survey=survey,
        rate=Rate.parse(limits["rate"], where=f"{where} [limits] rate")
        if "rate" in limits
        else None,
        frequency_cap=Cap.parse(limits["frequency_cap"], where=f"{where} [limits] frequency_cap")
        if "frequency_cap" in limits
        else None,
        whatsapp_template=_table(data, "whatsapp_template", where) or None,
    )
    if rule_text is not None:
        _check_rrule(campaign, tz, where)
    return campaign


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _time(value: Any, tz: ZoneInfo, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    try:
        return clock.parse_time(str(value), tz, what=where)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None


def _check_rrule(campaign: Campaign, tz: ZoneInfo, where: str) -> None:
    if campaign.start is None:
        raise ConfigError(f"{where} [schedule] rrule: needs a start")
    try:
        rule = recurrence(campaign, tz)
        # bounded: a rule whose constraints can never match must not spin for ever
        horizon = campaign.start.astimezone(tz) + timedelta(days=4 * 366)
        rule.replace(until=horizon, count=None)[0]
    except IndexError:
        raise ConfigError(
            f"{where} [schedule] rrule: {campaign.rrule!r} yields no occurrence in the five "
            "years after start; check BYMONTH/BYMONTHDAY and UNTIL"
        ) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{where} [schedule] rrule: {campaign.rrule!r} is not an RFC 5545 rule ({exc}); "
            "write it like FREQ=MONTHLY;BYMONTHDAY=1"
        ) from None


def _survey(data: dict[str, Any], kind: str, where: str) -> Survey | None:
    section = data.get("survey")
    if kind != "survey":
        if section:
            raise ConfigError(f'{where} [survey]: only for kind = "survey"')
        return None
    if not isinstance(section, dict) or not section.get("question"):
        raise ConfigError(f"{where} [survey] question: required for a survey")
    stype = section.get("type", "text")
    if stype not in SURVEY_TYPES:
        raise ConfigError(
            f'{where} [survey] type: "{stype}" is not one of {", ".join(SURVEY_TYPES)}'
        )
    choices = section.get("choices", [])
    if stype == "choice" and (not isinstance(choices, list) or len(choices) < 2):
        raise ConfigError(f"{where} [survey] choices: a choice survey needs at least two choices")
    return Survey(
        question=str(section["question"]),
        type=stype,
        choices=tuple(str(c) for c in choices),
        expires=parse_duration(section.get("expires", "7d"), where=f"{where} [survey] expires"),
        follow_up=section.get("follow_up"),
        translations=_translations(section.get("translations", {}), where),
    )


def _translations(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(
            f'{where} [survey.translations]: expected locale = "question", like nl = "Hoe …?"'
        )
    return dict(value)


def localized_question(survey: dict[str, Any], locale: str | None) -> str:
    """The survey question in the customer's language: nl-BE, then nl, then the default."""
    translations = survey.get("translations") or {}
    for tag in locale_chain(locale):
        if tag in translations:
            return str(translations[tag])
    return str(survey.get("question", ""))
