"""Campaign files, their schedules, and planning an occurrence into deliveries (SPEC §5, §6).

Planning streams the audience, routes each customer to the first channel that is
configured, has an address and current consent, applies frequency caps, and computes
``not_before`` from the window in the customer's own time zone. It writes one delivery per
(campaign, occurrence, customer) — skips included, with their reason — in batches; the
unique key makes a re-plan after a crash insert only what is missing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from . import clock
from .channels import ADDRESS_COLUMN, address_kind
from .config import Cap, Config, Rate, Window, parse_duration, read_toml, zone_or
from .errors import ConfigError, NotFoundError, UsageError
from .locales import locale_chain
from .store import Store
from .store import deliveries as sql
from .store.consent import current_consent_many
from .store.customers import user_addresses

KINDS = ("survey", "notification", "update")
SURVEY_TYPES = ("nps", "csat", "choice", "yes_no", "text")
BATCH = 2000


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
        """Transactional notifications are neither counted against nor held back by caps."""
        return self.kind != "notification"

    def occurrences(self, tz: ZoneInfo, until: datetime) -> Iterator[datetime]:
        """Occurrences (UTC) from start up to ``until`` inclusive."""
        if self.start is None:
            return
        if self.rrule is None:
            if self.start <= until:
                yield self.start
            return
        end = min(until, self.until) if self.until else until
        for moment in _rule(self, tz):
            moment_utc = moment.astimezone(UTC)
            if moment_utc > end:
                return
            yield moment_utc


def _rule(campaign: Campaign, tz: ZoneInfo) -> rrule:
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
        rule = _rule(campaign, tz)
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


# --- which occurrences to plan ----------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """An occurrence to plan now, or one to record as missed."""

    campaign: Campaign
    occurrence: str
    missed: bool = False


def due_occurrences(config: Config, store: Store, now: datetime) -> list[Due]:
    """``run --due``: for each campaign, its unplanned occurrences up to ``now``.

    A machine that was off for a while must not fire every occurrence it slept through:
    only the latest unplanned one is planned, older ones are recorded as missed, and with
    ``late`` set the latest is missed too when it is older than that.
    """
    out: list[Due] = []
    for name in list_campaigns(config):
        campaign = load_campaign(config, name)
        if campaign.start is None:
            continue  # triggered campaigns (run NAME --customers FILE) are never due
        known = sql.known_occurrences(store, name)
        # an occurrence still 'planning' was interrupted mid-way: planning it again is safe
        pending = [
            clock.iso(o)
            for o in campaign.occurrences(config.timezone, now)
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
    for moment in campaign.occurrences(config.timezone, now):
        latest = moment
    return clock.iso(latest) if latest else None


def next_occurrence(config: Config, campaign: Campaign, now: datetime) -> datetime | None:
    """The first occurrence after ``now``, for messages like "starts on …"."""
    if campaign.start is None:
        return None
    if campaign.rrule is None:
        return campaign.start if campaign.start > now else None
    rule = _rule(campaign, config.timezone)
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


# --- planning ---------------------------------------------------------------------------


@dataclass
class PlanResult:
    audience: int = 0
    planned: int = 0
    deferred: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def new_delivery_id() -> str:
    """20 hex characters: milliseconds since the epoch, then a per-process sequence.

    Time first, so that a million planned deliveries are appended to the primary-key
    index in order instead of scattered over it (random keys made large plans slow down
    as the index outgrew the page cache). The sequence starts at a random point in each
    process, so ids never repeat within a process (32 random bits per id did: about a
    0.3 % chance of a clash in a plan of a million) and two processes would have to start
    within the same millisecond and the same stretch of 2**32 to meet.
    """
    return f"{time.time_ns() // 1_000_000:012x}{next(_sequence) & 0xFFFFFFFF:08x}"


_sequence = itertools.count(secrets.randbits(32))


def route(
    config: Config,
    campaign: Campaign,
    customer: dict[str, Any],
    consent: dict[str, str],
    user_channels: Collection[str] = (),
) -> tuple[str | None, str | None]:
    """(channel, None) for the first usable channel, else (None, skip reason).

    ``user_channels``: the channels addressed by platform user id (``address = "user"``)
    on which this customer has one.
    """
    reason = "no_address"
    seen: set[str] = set()
    for entry in campaign.channels:
        name = customer.get("preferred_channel") if entry == "preferred" else entry
        if not name or name in seen or name not in config.channels:
            continue
        seen.add(name)
        kind = address_kind(config.channels[name])
        if kind == "user":
            if name not in user_channels:
                continue
        else:
            field = ADDRESS_COLUMN.get(kind)
            if field is None or not customer.get(field):
                continue
        status = consent.get(name)
        if status == "opted_in":
            return name, None
        if status == "opted_out":
            reason = "opted_out"
        elif reason != "opted_out":
            reason = "no_consent"
    return None, reason


def plan_occurrence(
    config: Config,
    store: Store,
    campaign: Campaign,
    occurrence: str,
    now: datetime,
    *,
    customers: Sequence[tuple[str, dict[str, Any]]] | None = None,
    dry_run: bool = False,
    on_batch: Callable[[Sequence[Sequence[Any]]], None] | None = None,
) -> PlanResult:
    """Write one delivery per audience member for this occurrence (skips included).

    ``customers`` (id, event data) replaces the audience query for triggered sends.
    ``on_batch`` sees each batch of rows (DELIVERY_COLUMNS order) once it is committed.
    """
    from .store.audience import select_customers
    from .store.customers import get_customers

    result = PlanResult()
    if sql.occurrence_status(store, campaign.name, occurrence) == "planned":
        return result
    # find the audience first: a bad filter must not leave a half-begun occurrence behind
    events: dict[str, dict[str, Any]] = {}
    if customers is not None:
        events = dict(customers)
        found = get_customers(store, list(events))
        missing = [cid for cid in events if cid not in found]
        if missing:
            raise NotFoundError(
                f'customer "{missing[0]}" in the --customers file does not exist; import it first'
            )
        stream: Iterator[dict[str, Any]] = iter(found[cid] for cid in events)
    else:
        try:
            # unverified contacts (strangers who wrote in) are never a campaign's audience
            where = f"verified = 1 AND ({campaign.where})" if campaign.where else "verified = 1"
            stream = select_customers(store, where)
        except UsageError as exc:
            raise ConfigError(f"campaigns/{campaign.name}.toml [audience] {exc}") from None
    at = clock.iso(now)
    store.use_large_cache()
    if not dry_run:
        sql.begin_occurrence(
            store,
            campaign.name,
            occurrence,
            campaign.kind,
            campaign.survey.snapshot() if campaign.survey else None,
            at,
        )
    window = campaign.window or config.window
    occurrence_time = clock.parse_time(occurrence) if occurrence[:1].isdigit() else now
    ready_at = max(now, occurrence_time)
    # the workspace cap counts every campaign; a campaign's own cap counts only itself
    caps: list[tuple[Cap, str | None]] = []
    if campaign.counts_for_cap:
        if config.frequency_cap:
            caps.append((config.frequency_cap, None))
        if campaign.frequency_cap:
            caps.append((campaign.frequency_cap, campaign.name))
    batch: list[dict[str, Any]] = []
    preview = _DryRunRenderer(config, campaign, now) if dry_run else None

    def flush() -> None:
        rows = _plan_batch(
            config,
            store,
            campaign,
            occurrence,
            batch,
            caps,
            events,
            window,
            ready_at,
            now,
            at,
            result,
        )
        if preview is not None:
            preview.render(batch, rows, result)
        else:
            with store.write():
                sql.insert_deliveries(store, rows)
            if on_batch is not None:
                on_batch(rows)
        batch.clear()

    for customer in stream:
        result.audience += 1
        batch.append(customer)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    if not dry_run:
        sql.finish_occurrence(store, campaign.name, occurrence, result.audience)
    return result


class _DryRunRenderer:
    """``run --dry-run`` renders what it plans, so template errors show before a real run."""

    def __init__(self, config: Config, campaign: Campaign, now: datetime) -> None:
        from .templates.render import Renderer

        self.renderer = Renderer(config)
        self.campaign = campaign
        self.now = now
        self.survey = campaign.survey.snapshot() if campaign.survey else None

    def render(
        self, batch: list[dict[str, Any]], rows: list[tuple[Any, ...]], result: PlanResult
    ) -> None:
        import json

        from .errors import TemplateError

        for customer, row in zip(batch, rows, strict=True):
            channel, status, context = row[4], row[9], row[12]
            if status == "skipped":
                continue
            try:
                self.renderer.render(
                    self.campaign.template,
                    channel,
                    customer,
                    campaign={"name": self.campaign.name, "kind": self.campaign.kind},
                    survey={
                        **self.survey,
                        "question": localized_question(self.survey, customer.get("locale")),
                    }
                    if self.survey
                    else None,
                    now=self.now,
                    extra=json.loads(context) if context else None,
                )
            except TemplateError:
                result.planned -= 1
                if status == "deferred":
                    result.deferred -= 1
                result.skipped["template_error"] = result.skipped.get("template_error", 0) + 1


def _plan_batch(
    config: Config,
    store: Store,
    campaign: Campaign,
    occurrence: str,
    batch: list[dict[str, Any]],
    caps: list[tuple[Cap, str | None]],
    events: dict[str, dict[str, Any]],
    window: Window,
    ready_at: datetime,
    now: datetime,
    at: str,
    result: PlanResult,
) -> list[tuple[Any, ...]]:
    import json

    ids = [c["id"] for c in batch]
    consent = current_consent_many(store, ids)
    # customers with a platform user id, per channel that addresses people that way and
    # that this campaign can route to
    reachable = config.channels if "preferred" in campaign.channels else campaign.channels
    with_user_id = {
        name: set(user_addresses(store, name, ids))
        for name, channel in config.channels.items()
        if name in reachable and address_kind(channel) == "user"
    }
    usage = [
        (cap, sql.cap_usage(store, ids, clock.iso(now - cap.period), scope)) for cap, scope in caps
    ]
    rows: list[tuple[Any, ...]] = []
    window_text = str(window)
    ready_iso = clock.iso(ready_at)  # a skipped row's not_before
    # the window's next opening, and its text, are the same for everyone in a time zone
    openings: dict[ZoneInfo, tuple[datetime, str]] = {}
    for customer in batch:
        cid = customer["id"]
        users = [name for name, known in with_user_id.items() if cid in known]
        channel, reason = route(config, campaign, customer, consent.get(cid, {}), users)
        if channel is not None:
            for cap, counts in usage:
                if counts.get(cid, 0) >= cap.count:
                    channel, reason = None, "frequency_cap"
                    break
        if channel is not None:
            tz = zone_or(customer.get("timezone"), config.timezone)
            opening = openings.get(tz)
            if opening is None:
                moment = window.next_opening(ready_at, tz)
                opening = openings[tz] = (moment, clock.iso(moment))
            not_before, not_before_iso = opening
            status = "queued" if not_before <= now else "deferred"
            result.planned += 1
            if status == "deferred":
                result.deferred += 1
        else:
            status, not_before_iso = "skipped", ready_iso
            result.skipped[reason or "no_address"] = (
                result.skipped.get(reason or "no_address", 0) + 1
            )
        event = events.get(cid)
        rows.append(
            (
                new_delivery_id(),
                campaign.name,
                occurrence,
                cid,
                channel,
                "campaign",
                campaign.template,
                int(campaign.counts_for_cap),
                window_text,
                status,
                reason,
                not_before_iso,
                json.dumps({"event": event}) if event else None,
                at,
                at,
            )
        )
    return rows
