"""Validating and normalising one customer cell: phones, emails, time zones, locales.

A ``Normaliser`` is made once per import and caches what repeats in a file (domains,
zones, locales, opted_in lists), so that a row costs dictionary look-ups where it can.
Every method returns the stored value or raises ``BadCell`` whose message says what is
wrong and how to write it.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from typing import Any

import phonenumbers
from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email

from ..config import Config, parse_timezone
from ..errors import ConfigError
from ..locales import normalize_locale, split_extensions, valid_extensions

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")
_INT64 = 2**63
# RFC 5322 dot-atom in ASCII: the local parts email_validator accepts without changing them.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_NON_DIGITS = re.compile(r"\D")
_E164_SHAPE = re.compile(r"\+([1-9][0-9]{6,14})")
_UNKNOWN: Any = object()
_LIST_SEPARATORS = re.compile(r"[;,]")


class BadCell(Exception):
    """One cell is invalid; the message is the reason and how to fix it."""


def show_value(text: str, limit: int = 60) -> str:
    """A value quoted for a message: printable even if it held bad bytes, and short."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return json.dumps(text if len(text) <= limit else text[:limit] + "…", ensure_ascii=False)


class Normaliser:
    """Validates and normalises cells for one import; caches what repeats.

    Time zones, locales, opted_in lists and email domains repeat across a file, so each
    distinct one is validated once. An email whose local part is plain ASCII dot-atom is
    valid exactly when its domain is, which lets ``email_validator`` judge each domain once
    instead of on every row; any other address gets the full ``validate_email``.
    """

    def __init__(self, config: Config) -> None:
        # Keep compiled metadata patterns instead of going through re's cache on every
        # match: 15% of phone validation time (phonenumbers ≥ 8.13.50 has the switch).
        enable_cache = getattr(phonenumbers, "enable_pattern_cache", None)
        if enable_cache is not None:
            enable_cache()
        self.config = config
        self.channels = tuple(config.channels)
        self.region = config.default_region or None
        self._phonenumbers = phonenumbers
        self._parse_phone = phonenumbers.parse
        self._valid_phone = phonenumbers.is_valid_number
        self._format_phone = phonenumbers.format_number
        self._e164 = phonenumbers.PhoneNumberFormat.E164
        self._phone_error = phonenumbers.NumberParseException
        self._validate_email = validate_email
        self._email_error = EmailNotValidError
        self._country_codes = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
        self._national_prefixes: dict[int, re.Pattern[str] | str | None] = {}
        self._domains: dict[str, str | None] = {}
        self._zones: dict[str, str | BadCell] = {}
        self._locales: dict[str, str | BadCell] = {}
        self._opted: dict[str, frozenset[str] | BadCell] = {}

    def text(self, value: Any) -> str:
        if type(value) is str:
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadCell("expected text; write a plain value, not a list or object")
        return str(value)

    def email(self, value: Any) -> str:
        text = value if type(value) is str else self.text(value)
        local, at, domain = text.rpartition("@")
        if at and len(local) <= 64 and len(text) <= 254 and _DOT_ATOM.fullmatch(local):
            normal = self._domains.get(domain, "")
            if normal == "":
                normal = self._domain(domain)
            if normal is not None:
                return f"{local}@{normal}"
        try:
            return self._validate_email(text, check_deliverability=False).normalized
        except self._email_error as exc:
            raise BadCell(
                f"{show_value(text)} is not a valid email address ({exc}); "
                "write it like name@example.com"
            ) from None

    def _domain(self, domain: str) -> str | None:
        if len(self._domains) > 100_000:
            self._domains.clear()
        try:
            result = self._validate_email(f"a@{domain}", check_deliverability=False)
            normal: str | None = result.domain if domain.isascii() else None
        except self._email_error:
            normal = None
        self._domains[domain] = normal
        return normal

    def phone(self, value: Any) -> str:
        text = value if type(value) is str else self.text(value)
        shape = _E164_SHAPE.fullmatch(text)
        if shape is not None and self._valid_e164(shape[1]):
            return text
        try:
            number = self._parse_phone(text, self.region)
            if self._valid_phone(number):
                return str(self._format_phone(number, self._e164))
        except self._phone_error:
            pass
        stripped = text.lstrip()
        digits = _NON_DIGITS.sub("", stripped)
        if stripped.startswith("+") and len(digits) == 13 and digits.startswith("521"):
            # a Mexican mobile in its pre-2019 form (+52 1 …), as WhatsApp still writes it:
            # stored in today's form, which inbound WhatsApp ids (521…) are matched against
            return self.phone("+52" + digits[3:])
        if stripped.startswith(("+", "00")):
            raise BadCell(
                f"{show_value(text)} is not a valid phone number; check the digits after the +"
            )
        if not self.region:
            raise BadCell(
                f"{show_value(text)} has no country code and [workspace] default_region is not "
                "set; "
                "write it as +CC… (e.g. +31612345678) or set default_region"
            )
        code = self._phonenumbers.country_code_for_region(self.region)
        digits = _NON_DIGITS.sub("", text)
        raise BadCell(
            f"{show_value(text)} is not a valid number in region {self.region}; "
            f"write it as +{code}{digits.lstrip('0')[:1]}…"
        )

    def _valid_e164(self, digits: str) -> bool:
        """True when ``+digits`` is a valid number, decided without ``phonenumbers.parse``.

        For input already in E.164, parse() only splits off the country code and, if the
        region's national prefix pattern matches, strips a prefix; when no prefix can match
        and there is no leading zero, the number it builds is exactly (country code, rest),
        so is_valid_number on that is the same answer at half the cost. False means "ask
        parse()", which also gives the reason.
        """
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in self._country_codes:
                break
        else:
            return False
        national = digits[size:]
        if national.startswith("0"):
            return False
        prefix = self._national_prefixes.get(code, _UNKNOWN)
        if prefix is _UNKNOWN:
            prefix = self._national_prefix(code)
            self._national_prefixes[code] = prefix
        if prefix is None or (prefix and prefix.match(national)):
            return False
        number = self._phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
        return bool(self._valid_phone(number))

    def _national_prefix(self, code: int) -> re.Pattern[str] | str | None:
        """The region's national-prefix pattern; "" when it has none; None: not handled."""
        region = self._phonenumbers.region_code_for_country_code(code)
        if region in ("001", "ZZ"):
            return None
        metadata = self._phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            code, region
        )
        if metadata is None:
            return None
        pattern = metadata.national_prefix_for_parsing
        return re.compile(pattern) if pattern else ""

    def channel(self, value: Any) -> str:
        name = self.text(value).lower()
        if name not in self.channels:
            raise BadCell(
                f"{show_value(name)} is not a configured channel; use one of "
                f"{', '.join(self.channels)} "
                "(see [channels] in outreach.toml)"
            )
        return name

    def channels_list(self, value: Any) -> frozenset[str]:
        if isinstance(value, list):
            return frozenset(self.channel(str(v).strip()) for v in value if str(v).strip())
        text = self.text(value)
        cached = self._opted.get(text)
        if cached is None:
            try:
                cached = frozenset(
                    self.channel(v.strip()) for v in _LIST_SEPARATORS.split(text) if v.strip()
                )
            except BadCell as exc:
                cached = exc
            self._opted[text] = cached
        if isinstance(cached, BadCell):
            raise cached
        return cached

    def locale(self, value: Any) -> str:
        text = self.text(value)
        cached = self._locales.get(text)
        if cached is None:
            cached = self._locales[text] = self._parse_locale(text)
        if isinstance(cached, BadCell):
            raise cached
        return cached

    @staticmethod
    def _parse_locale(text: str) -> str | BadCell:
        tag = normalize_locale(text) or text
        base, extensions = split_extensions(tag)
        try:
            Locale.parse(base, sep="-")
        except (ValueError, TypeError, UnknownLocaleError):
            known = False
        else:
            known = valid_extensions(extensions)
        if not known:
            return BadCell(
                f"{show_value(text)} is not a known BCP 47 locale; write it like nl-BE, en or fr-CA"
            )
        return tag

    def timezone(self, value: Any) -> str:
        text = self.text(value)
        cached = self._zones.get(text)
        if cached is None:
            try:
                parse_timezone(text, where="timezone")
                cached = text
            except ConfigError:
                cached = BadCell(f"{show_value(text)} is not an IANA time zone; {_zone_hint(text)}")
            self._zones[text] = cached
        if isinstance(cached, BadCell):
            raise cached
        return cached

    @staticmethod
    def attribute(value: Any) -> Any:
        if isinstance(value, str):
            if _NUMBER.fullmatch(value):
                return float(value) if "." in value else int(value)
            return value
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value if -_INT64 <= value < _INT64 else str(value)
        if isinstance(value, float):
            return value
        raise BadCell("nested values are not supported; flatten them into columns of their own")


def _zone_hint(text: str) -> str:
    lowered = text.strip().lower()
    for name in sorted(zoneinfo.available_timezones()):
        if name.lower() == lowered:
            return f"did you mean {name}?"
    return "write it like Europe/Amsterdam or America/New_York"
