"""The filters templates may use beyond Jinja's own: first_name, date, money.

``date`` and ``money`` format for the customer's locale and time zone, which the renderer
puts in the context under keys a template cannot name or set (``LOCALE_KEY``, ``ZONE_KEY``).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError, dates, numbers
from jinja2 import pass_context
from jinja2.runtime import Context

from .. import clock
from ..locales import locale_chain

LOCALE_KEY = "outreach:locale"  # not a Jinja identifier, so templates cannot set it
ZONE_KEY = "outreach:zone"


@lru_cache(maxsize=256)
def babel_locale(tag: str | None) -> Any:
    for candidate in (*locale_chain(tag), "en"):
        try:
            return Locale.parse(candidate.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    raise AssertionError("babel always knows en")


# --- filters ----------------------------------------------------------------------------


def first_name(value: Any, default: str = "") -> str:
    """The first given name of a full name: "Anna de Vries" → "Anna"; "Vries, Anna" → "Anna"."""
    if value is None:
        return default
    text = str(value).strip()
    if "," in text:
        text = text.split(",", 1)[1].strip() or text.split(",", 1)[0]
    words = text.split()
    return words[0] if words else default


def _as_datetime(value: Any, zone: ZoneInfo) -> datetime | date:
    if isinstance(value, datetime):
        aware: datetime = value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))
        return aware.astimezone(zone)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        moment: datetime = clock.parse_time(text, what="date value")
        return moment.astimezone(zone)
    raise TypeError(f"date filter needs a date or time, got {type(value).__name__}")


@pass_context
def date_filter(context: Context, value: Any, format: str = "medium") -> str:
    """A date or time in the customer's locale and time zone (Babel pattern or short…full)."""
    locale = context.get(LOCALE_KEY) or babel_locale(None)
    zone = context.get(ZONE_KEY) or ZoneInfo("UTC")
    moment = _as_datetime(value, zone)
    if isinstance(moment, datetime):
        return str(dates.format_datetime(moment, format, tzinfo=zone, locale=locale))
    return str(dates.format_date(moment, format, locale=locale))


@pass_context
def money_filter(context: Context, value: Any, currency: str) -> str:
    """An amount in ``currency`` (ISO 4217) formatted for the customer's locale."""
    locale = context.get(LOCALE_KEY) or babel_locale(None)
    try:
        amount = value if isinstance(value, int | float | Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"money filter needs a number, got {value!r}") from None
    return str(numbers.format_currency(amount, str(currency).upper(), locale=locale))
