"""outreach.toml → frozen dataclasses, validated once at load.

Every value a user writes is checked here, so that the rest of the program can trust its
configuration: a bad window, rate, cap, time zone or provider is one clear line naming the
file and key (exit 4). Secrets are never read here: channels name environment variables
(``*_env``) and the provider reads them when it is built.
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

CONFIG_FILE = "outreach.toml"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def zone_or(name: object, default: ZoneInfo) -> ZoneInfo:
    """The IANA zone ``name`` (a customer's ``timezone``), or ``default`` when it is empty
    or not a zone. Looked up once per name: a run asks for every message."""
    zone = _known_zone(name) if isinstance(name, str) and name else None
    return zone or default


@lru_cache(maxsize=512)
def _known_zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_duration(text: str, *, where: str) -> timedelta:
    """``90s``, ``30m``, ``6h``, ``3d``, ``2w`` → timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(text))
    if not match:
        raise ConfigError(f'{where}: "{text}" is not a duration; write it like 30m, 6h, 3d or 2w')
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def parse_timezone(name: str, *, where: str) -> ZoneInfo:
    """An IANA zone name → ZoneInfo, with a clear error for a typo."""
    try:
        if not name or ("/" not in name and name not in _one_word_zones()):
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f'{where}: "{name}" is not an IANA time zone; write it like Europe/Amsterdam'
        ) from exc


@lru_cache(maxsize=1)
def _one_word_zones() -> frozenset[str]:
    """IANA names without a slash (UTC, EST, EST5EDT, Japan): the rest of such words
    ("Amsterdam", a file name) are not zones, though the system may have a file so named."""
    from zoneinfo import available_timezones

    return frozenset(available_timezones() - {"localtime", "Factory", "posixrules"})


def _parse_clock(text: str, *, where: str, allow_24: bool = False) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if match:
        hour, minute = int(match[1]), int(match[2])
        if allow_24 and hour == 24 and minute == 0:
            return time.max
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise ConfigError(f'{where}: "{text}" is not a time of day; write it like 09:00')


@dataclass(frozen=True)
class Window:
    """A daily local-time window such as 09:00-20:00; it may wrap midnight (22:00-06:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str, *, where: str) -> Window:
        parts = str(text).split("-")
        if len(parts) != 2:
            raise ConfigError(f'{where}: "{text}" is not a window; write it like 09:00-20:00')
        start = _parse_clock(parts[0], where=where)
        end = _parse_clock(parts[1], where=where, allow_24=True)
        if start == end:
            raise ConfigError(f'{where}: window "{text}" is empty; its start equals its end')
        return cls(start, end)

    def __str__(self) -> str:
        end = "24:00" if self.end == time.max else self.end.strftime("%H:%M")
        return f"{self.start:%H:%M}-{end}"

    def contains(self, local: datetime) -> bool:
        """Is this local wall-clock time inside the window?"""
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def next_opening(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """The first instant at or after ``moment`` (aware) that lies inside the window.

        Wall-clock arithmetic is done in ``tz`` so that DST changes are honoured: an opening
        at 09:00 is 09:00 local on both sides of a transition. A start that falls in a DST gap
        (02:30 on a spring-forward night) opens at the first valid instant after the gap.
        """
        local = moment.astimezone(tz)
        if self.contains(local):
            return moment
        for days in range(0, 4):
            day = (local + timedelta(days=days)).date()
            candidate = datetime.combine(day, self.start, tzinfo=tz)
            # fold/gap: normalise through UTC so a non-existent wall time moves forward;
            # a window lying wholly inside that night's gap does not open that day at all
            candidate = candidate.astimezone(ZoneInfo("UTC")).astimezone(tz)
            if candidate > local and self.contains(candidate):
                return candidate.astimezone(moment.tzinfo)
        raise AssertionError("a daily window opens within three days")


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours per weekday, e.g. ``Mon-Fri 09:00-17:30, Sat 10:00-14:00``."""

    spans: tuple[tuple[frozenset[int], Window], ...]

    @classmethod
    def parse(cls, text: str, *, where: str) -> BusinessHours:
        spans = []
        for part in str(text).split(","):
            match = re.fullmatch(r"\s*([A-Za-z]{3})(?:\s*-\s*([A-Za-z]{3}))?\s+(\S+)\s*", part)
            if not match:
                raise ConfigError(
                    f'{where}: "{part.strip()}" is not opening hours; '
                    "write it like Mon-Fri 09:00-17:30"
                )
            first, last = match[1].lower(), (match[2] or match[1]).lower()
            if first not in _DAYS or last not in _DAYS:
                raise ConfigError(f'{where}: "{part.strip()}": days are Mon, Tue, … Sun')
            a, b = _DAYS.index(first), _DAYS.index(last)
            days = (
                frozenset(range(a, b + 1)) if a <= b else frozenset([*range(a, 7), *range(b + 1)])
            )
            spans.append((days, Window.parse(match[3], where=where)))
        return cls(tuple(spans))

    def is_open(self, local: datetime) -> bool:
        """Is an agent at work at this local time?"""
        return any(
            local.weekday() in days and window.contains(local) for days, window in self.spans
        )

    def next_opening(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """The next instant (aware, in ``moment``'s zone) at which agents are at work."""
        local = moment.astimezone(tz)
        if self.is_open(local):
            return moment
        best: datetime | None = None
        for days_ahead in range(0, 8):
            day = (local + timedelta(days=days_ahead)).date()
            for days, window in self.spans:
                if day.weekday() not in days:
                    continue
                candidate = datetime.combine(day, window.start, tzinfo=tz)
                if candidate > local and (best is None or candidate < best):
                    best = candidate
            if best is not None:
                return best.astimezone(moment.tzinfo)
        raise ConfigError("business_hours: no opening in the coming week")


@dataclass(frozen=True)
class Rate:
    """``20/s``, ``100/m``, ``5000/h``: a count per period, for token buckets."""

    count: int
    per_seconds: float

    @classmethod
    def parse(cls, text: str, *, where: str) -> Rate:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*", str(text))
        if not match or int(match[1]) == 0:
            raise ConfigError(f'{where}: "{text}" is not a rate; write it like 20/s or 600/m')
        return cls(int(match[1]), int(match[2] or 1) * _UNITS[match[3]])

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    def __str__(self) -> str:
        period = _unit_text(self.per_seconds)
        return f"{self.count}/{period[1:] if re.fullmatch(r'1[a-z]', period) else period}"


@dataclass(frozen=True)
class Cap:
    """``2/7d``: at most 2 campaign messages per customer in any 7 days."""

    count: int
    period: timedelta

    @classmethod
    def parse(cls, text: str, *, where: str) -> Cap:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+[smhdw])\s*", str(text))
        if not match:
            raise ConfigError(
                f'{where}: "{text}" is not a frequency cap; write it like 2/7d (2 per 7 days)'
            )
        return cls(int(match[1]), parse_duration(match[2], where=where))

    def __str__(self) -> str:
        return f"{self.count}/{_unit_text(self.period.total_seconds())}"


def _unit_text(seconds: float) -> str:
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if unit == "w":
            continue
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class ChannelConfig:
    """One named channel: its provider and that provider's own settings (raw)."""

    name: str
    provider: str
    settings: dict[str, Any]
    rate: Rate | None = None
    concurrency: int = 4
    timeout: float = 10.0


@dataclass(frozen=True)
class ServerConfig:
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8787


DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "stop": (
        "STOP",
        "STOPALL",
        "STOP ALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "OPT-OUT",
        "AFMELDEN",
        "UITSCHRIJVEN",
    ),
    "start": ("START", "YES", "UNSTOP", "AANMELDEN"),
    "help": ("HELP", "INFO", "HULP"),
}


@dataclass(frozen=True)
class Config:
    """The whole, validated outreach.toml of one workspace."""

    root: Path
    database: Path | str  # a SQLite file, or a postgresql:// URL (without its password)
    timezone: ZoneInfo
    default_region: str
    business_hours: BusinessHours
    window: Window
    frequency_cap: Cap | None
    sender_name: str
    channels: dict[str, ChannelConfig]
    processes: int = 1  # send processes for local channels (the outbox); see _processes
    lease: float = 30.0  # seconds without a heartbeat after which a sender counts as dead
    server: ServerConfig = field(default_factory=ServerConfig)
    keywords: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_KEYWORDS))
    help_text: str = ""

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def campaigns_dir(self) -> Path:
        return self.root / "campaigns"

    def channel(self, name: str) -> ChannelConfig:
        try:
            return self.channels[name]
        except KeyError:
            known = ", ".join(self.channels) or "none"
            raise ConfigError(
                f'channel "{name}" is not configured in {CONFIG_FILE} (configured: {known})'
            ) from None


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error names the file, line and column (exit 4)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path.name}: line {line}: not UTF-8; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", text)
        reason = re.sub(r"\s*\(at .*\)", "", text)
        where = f"line {match[1]}, column {match[2]}" if match else "syntax"
        raise ConfigError(f"{path.name}: {where}: {reason}; fix the TOML syntax") from None


def _check_keys(section: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(allowed))}"
        )


def _str(section: dict[str, Any], key: str, default: str, where: str) -> str:
    value = section.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _processes(sending: dict[str, Any], where: str) -> int:
    """``processes``: how many processes send local channels; by default one per CPU this
    process may use, at most 4 (SQLite takes one writer at a time, so more gain little)."""
    value = sending.get("processes")
    if value is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, min(cpus or 1, 4))
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 64:
        raise ConfigError(f"{where} processes: expected a whole number from 1 to 64, got {value!r}")
    return value


def _lease(sending: dict[str, Any], where: str) -> float:
    """``lease``: seconds a sending process may go without a heartbeat before another
    process counts it as dead and turns its in-flight deliveries ``unknown``."""
    value = sending.get("lease", 30)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 1 <= value <= 3600:
        raise ConfigError(f"{where} lease: expected seconds from 1 to 3600, got {value!r}")
    return float(value)


DATABASE_URL_ENV = "OUTREACH_DATABASE_URL"


def _database(root: Path, ws: dict[str, Any], where: str) -> Path | str:
    """The workspace database: OUTREACH_DATABASE_URL, else [workspace] database (a file
    name relative to the workspace, or a postgresql:// URL without a password)."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"{DATABASE_URL_ENV} is not a postgresql:// URL; set it like "
                "postgresql://user@host:5432/outreach, or unset it to use the SQLite file"
            )
        return url
    text = _str(ws, "database", "outreach.db", where)
    if not text.startswith(("postgresql://", "postgres://")):
        return root / text
    parts = urllib.parse.urlsplit(text)
    query = urllib.parse.parse_qs(parts.query)
    if parts.password is not None or "password" in query:
        # the message must not repeat the URL: it holds the secret
        raise ConfigError(
            f"{where} database: the URL holds a password; remove it and give the password "
            f"through PGPASSWORD, ~/.pgpass or a libpq service file, or put the whole URL in "
            f"{DATABASE_URL_ENV}"
        )
    return text


def load_config(root: Path) -> Config:
    """Load and validate ``root/outreach.toml``."""
    path = root / CONFIG_FILE
    data = read_toml(path)
    name = CONFIG_FILE
    _check_keys(data, {"workspace", "sending", "channels", "server", "keywords"}, name)
    ws = data.get("workspace", {})
    _check_keys(
        ws,
        {"database", "timezone", "default_region", "business_hours", "help_text"},
        f"{name} [workspace]",
    )
    sending = data.get("sending", {})
    _check_keys(
        sending,
        {"window", "frequency_cap", "sender_name", "processes", "lease"},
        f"{name} [sending]",
    )
    where = f"{name} [workspace]"
    timezone = parse_timezone(_str(ws, "timezone", "UTC", where), where=f"{where} timezone")
    region = _str(ws, "default_region", "", where).upper()
    if region and not re.fullmatch(r"[A-Z]{2}", region):
        raise ConfigError(f'{where} default_region: "{region}" is not a country code like NL')
    cap_text = sending.get("frequency_cap")
    channels = {
        cname: _load_channel(cname, section) for cname, section in data.get("channels", {}).items()
    }
    from .mail.settings import setting_problems  # here: it builds on this module

    for channel in channels.values():
        problems = setting_problems(channel)
        if problems:
            raise ConfigError(f"{name} {problems[0]}")
    srv = data.get("server", {})
    _check_keys(srv, {"public_url", "host", "port"}, f"{name} [server]")
    keywords = dict(DEFAULT_KEYWORDS)
    for kind, words in data.get("keywords", {}).items():
        if kind not in DEFAULT_KEYWORDS or not isinstance(words, list):
            raise ConfigError(
                f'{name} [keywords] {kind}: expected stop, start or help = ["WORD", ...]'
            )
        keywords[kind] = tuple(dict.fromkeys([*DEFAULT_KEYWORDS[kind], *map(str, words)]))
    sender = _str(sending, "sender_name", "outreach", f"{name} [sending]")
    return Config(
        root=root,
        database=_database(root, ws, where),
        timezone=timezone,
        default_region=region,
        business_hours=BusinessHours.parse(
            _str(ws, "business_hours", "Mon-Fri 09:00-17:30", where),
            where=f"{where} business_hours",
        ),
        window=Window.parse(
            _str(sending, "window", "09:00-20:00", f"{name} [sending]"),
            where=f"{name} [sending] window",
        ),
        frequency_cap=Cap.parse(cap_text, where=f"{name} [sending] frequency_cap")
        if cap_text
        else None,
        sender_name=sender,
        channels=channels,
        processes=_processes(sending, f"{name} [sending]"),
        lease=_lease(sending, f"{name} [sending]"),
        server=ServerConfig(
            public_url=(srv.get("public_url") or "").rstrip("/") or None,
            host=str(srv.get("host", "127.0.0.1")),
            port=int(srv.get("port", 8787)),
        ),
        keywords=keywords,
        help_text=_str(
            ws,
            "help_text",
            f"{sender}: reply STOP to unsubscribe, START to subscribe again.",
            where,
        ),
    )


def _load_channel(name: str, section: Any) -> ChannelConfig:
    where = f"{CONFIG_FILE} [channels.{name}]"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table of settings")
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ConfigError(f"{where}: channel names are lower-case letters, digits, - and _")
    # imported here: the registry's settings checks import this module
    from .channels import LOCAL_PROVIDER, REGISTRY

    provider = section.get("provider")
    if provider is None:
        raise ConfigError(
            f'{where}: no provider; add provider = "{LOCAL_PROVIDER}" (a folder, no account) '
            f"or one of {', '.join(p for p in REGISTRY if p != LOCAL_PROVIDER)}"
        )
    if provider not in REGISTRY:
        raise ConfigError(
            f'{where} provider: "{provider}" is not a provider; use one of {", ".join(REGISTRY)}'
        )
    settings = {
        k: v for k, v in section.items() if k not in {"provider", "rate", "concurrency", "timeout"}
    }
    concurrency = section.get("concurrency", 4)
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 1024:
        raise ConfigError(f"{where} concurrency: expected a whole number from 1 to 1024")
    timeout = section.get("timeout", 10.0)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(f"{where} timeout: expected seconds, more than 0 and at most 300")
    rate = section.get("rate")
    return ChannelConfig(
        name=name,
        provider=provider,
        settings=settings,
        rate=Rate.parse(rate, where=f"{where} rate") if rate else None,
        concurrency=concurrency,
        timeout=float(timeout),
    )
