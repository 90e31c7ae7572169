"""Customer import (SPEC §3): read a file, validate and normalise each row, upsert in batches.

The design is a stream, so that a file of a million rows imports in flat memory:

- A reader (``customer_files.py``) turns FILE into records ``(line, element, cells)`` one
  at a time. Bytes that are not UTF-8 survive as lone surrogates, so the bad row is
  reported here with its line and rejected instead of crashing the import.
- A column plan, built once from the header (for JSON from a first pass over the keys),
  maps each source column to a stored column and a normaliser. Bad column names are a
  ``UsageError`` before anything is written.
- Good rows are collected by id (a duplicate id merges into the earlier row: last wins) and
  written every ``batch_size`` rows in one ``store.write()`` transaction, so an interrupted
  import leaves whole batches only. ``--strict`` wraps the whole file in one transaction
  and rolls it back when any row was rejected.
- Consent from a file is only a starting point: ``opted_in`` appends an ``opted_in`` ledger
  row (source ``import:FILE``) only for a customer with no ledger history on that channel,
  so an import can never override a STOP and never clears consent.

An empty cell means "not given": a re-import updates the fields it gives and keeps the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import clock
from .config import Config, parse_timezone
from .customer_files import detect_format, is_blank, read_records
from .errors import ConfigError, UsageError
from .locales import normalize_locale
from .store import Store
from .store import consent as consent_store
from .store import customers as customer_store

BATCH_SIZE = 2_000
MAX_CELL_BYTES = 64 * 1024
# Errors and duplicate warnings kept for the report; the rest are only counted.
MAX_KEPT = 1_000
KNOWN_COLUMNS = (
    "id", "name", "email", "phone", "preferred_channel", "locale", "timezone", "opted_in",
)
STORED_COLUMNS = KNOWN_COLUMNS[:-1]
# Built-in columns a file may not write, and SQLite's aliases of the row id.
RESERVED_COLUMNS = ("verified", "created_at", "updated_at", "rowid", "oid", "_rowid_")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Canonical decimals become numbers (so `age > 30` works); "0612", "+31", "1e3" stay text.
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")
_INT64 = 2**63
# RFC 5322 dot-atom in ASCII: the local parts email_validator accepts without changing them.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_NON_DIGITS = re.compile(r"\D")
_E164_SHAPE = re.compile(r"\+([1-9][0-9]{6,14})")
_UNKNOWN: Any = object()
_LIST_SEPARATORS = re.compile(r"[;,]")


class _Bad(Exception):
    """One cell is invalid; the message is the reason and how to fix it."""


@dataclass(frozen=True)
class RowProblem:
    """One reported problem: where (line, JSON element, column) and why."""

    line: int
    column: str | None
    reason: str
    element: int | None = None

    def format(self, file: str) -> str:
        where = f"{file}:{self.line}"
        if self.element is not None:
            where += f" [{self.element}]"
        column = f" {self.column}:" if self.column else ""
        return f"{where}:{column} {self.reason}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "column": self.column, "reason": self.reason}
        if self.element is not None:
            out["element"] = self.element
        return out


@dataclass
class ImportResult:
    """What an import did (or, with ``dry_run``, would do)."""

    file: str
    format: str
    dry_run: bool = False
    strict: bool = False
    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    duplicates: int = 0
    consents: int = 0
    new_columns: list[str] = field(default_factory=list)
    errors: list[RowProblem] = field(default_factory=list)
    error_count: int = 0
    warnings: list[RowProblem] = field(default_factory=list)
    rolled_back: bool = False

    @property
    def imported(self) -> int:
        return self.created + self.updated

    def error_lines(self) -> list[str]:
        return [p.format(self.file) for p in self.errors]

    def warning_lines(self) -> list[str]:
        return [p.format(self.file) for p in self.warnings]

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "dry_run": self.dry_run,
            "strict": self.strict,
            "rows": self.rows,
            "imported": self.imported,
            "created": self.created,
            "updated": self.updated,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "consents_recorded": self.consents,
            "new_columns": self.new_columns,
            "errors": [p.as_json() for p in self.errors],
            "errors_total": self.error_count,
            "warnings": [p.as_json() for p in self.warnings],
        }

    def _problem(self, problem: RowProblem) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_KEPT:
            self.errors.append(problem)


# --------------------------------------------------------------------------- validating


def _show(text: str, limit: int = 60) -> str:
    """A value quoted for a message: printable even if it held bad bytes, and short."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return json.dumps(text if len(text) <= limit else text[:limit] + "…", ensure_ascii=False)


def suggest_identifier(name: str) -> str:
    """A valid column name close to ``name`` ("first name" → first_name)."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_").lower() or "column"
    return f"_{out}" if out[0].isdigit() else out


class _Normaliser:
    """Validates and normalises cells for one import; caches what repeats.

    Time zones, locales, opted_in lists and email domains repeat across a file, so each
    distinct one is validated once. An email whose local part is plain ASCII dot-atom is
    valid exactly when its domain is, which lets ``email_validator`` judge each domain once
    instead of on every row; any other address gets the full ``validate_email``.
    """

    def __init__(self, config: Config) -> None:
        import phonenumbers
        from email_validator import EmailNotValidError, validate_email

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
        self._zones: dict[str, str | _Bad] = {}
        self._locales: dict[str, str | _Bad] = {}
        self._opted: dict[str, frozenset[str] | _Bad] = {}

    def text(self, value: Any) -> str:
        if type(value) is str:
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Bad("expected text; write a plain value, not a list or object")
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
            raise _Bad(
                f"{_show(text)} is not a valid email address ({exc}); "
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
        if stripped.startswith(("+", "00")):
            raise _Bad(f"{_show(text)} is not a valid phone number; check the digits after the +")
        if not self.region:
            raise _Bad(
                f"{_show(text)} has no country code and [workspace] default_region is not set; "
                "write it as +CC… (e.g. +31612345678) or set default_region"
            )
        code = self._phonenumbers.country_code_for_region(self.region)
        digits = _NON_DIGITS.sub("", text)
        raise _Bad(
            f"{_show(text)} is not a valid number in region {self.region}; "
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
            raise _Bad(
                f"{_show(name)} is not a configured channel; use one of "
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
            except _Bad as exc:
                cached = exc
            self._opted[text] = cached
        if isinstance(cached, _Bad):
            raise cached
        return cached

    def locale(self, value: Any) -> str:
        text = self.text(value)
        cached = self._locales.get(text)
        if cached is None:
            cached = self._locales[text] = self._parse_locale(text)
        if isinstance(cached, _Bad):
            raise cached
        return cached

    @staticmethod
    def _parse_locale(text: str) -> str | _Bad:
        from babel import Locale, UnknownLocaleError

        parts = text.replace("_", "-").split("-")
        try:
            Locale.parse("-".join(parts), sep="-")
        except (ValueError, TypeError, UnknownLocaleError):
            return _Bad(
                f"{_show(text)} is not a known BCP 47 locale; write it like nl-BE, en or fr-CA"
            )
        return normalize_locale(text) or text

    def timezone(self, value: Any) -> str:
        text = self.text(value)
        cached = self._zones.get(text)
        if cached is None:
            try:
                parse_timezone(text, where="timezone")
                cached = text
            except ConfigError:
                cached = _Bad(f"{_show(text)} is not an IANA time zone; {_zone_hint(text)}")
            self._zones[text] = cached
        if isinstance(cached, _Bad):
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
        raise _Bad("nested values are not supported; flatten them into columns of their own")


def _zone_hint(text: str) -> str:
    import zoneinfo

    lowered = text.strip().lower()
    for name in sorted(zoneinfo.available_timezones()):
        if name.lower() == lowered:
            return f"did you mean {name}?"
    return "write it like Europe/Amsterdam or America/New_York"


@dataclass
class _Plan:
    """How each source column of a file becomes a stored value."""

    targets: list[str]  # stored columns, in upsert order (id first)
    cells: list[tuple[int, int, str, Callable[[Any], Any]]]  # source, target (-1: opted_in)
    new_columns: list[str]
    width: int


def _plan(
    names: Sequence[str],
    id_column: str | None,
    existing: Sequence[str],
    norm: _Normaliser,
    label: str,
) -> _Plan:
    if id_column is not None and id_column not in names:
        lowered = {n.strip().lower(): n for n in names}
        if id_column.lower() not in lowered:
            raise UsageError(
                f'{label}: no column "{id_column}" for --id-column; the columns are '
                f"{', '.join(names) or 'none'}"
            )
        id_column = lowered[id_column.lower()]
    by_lower = {c.lower(): c for c in existing}
    seen: dict[str, str] = {}
    targets = list(STORED_COLUMNS)
    new_columns: list[str] = []
    handlers: dict[str, Callable[[Any], Any]] = {
        "id": norm.text, "name": norm.text, "email": norm.email, "phone": norm.phone,
        "preferred_channel": norm.channel, "locale": norm.locale, "timezone": norm.timezone,
        "opted_in": norm.channels_list,
    }
    cells: list[tuple[int, int, str, Callable[[Any], Any]]] = []
    for index, raw in enumerate(names):
        name = raw.strip()
        low = name.lower()
        if id_column is not None and raw == id_column:
            target = "id"
        elif not name:
            raise UsageError(
                f"{label}: column {index + 1} has no name; name it in the header or remove it"
            )
        elif low in KNOWN_COLUMNS:
            target = low
            if target == "id" and id_column is not None:
                raise UsageError(
                    f'{label}: has an id column and --id-column "{id_column}"; '
                    "rename or remove one of them"
                )
        elif low in RESERVED_COLUMNS:
            raise UsageError(
                f"{label}: column {_show(name)} clashes with the built-in column {low}; "
                f"rename it, e.g. to file_{low}"
            )
        elif not _IDENTIFIER.fullmatch(name):
            raise UsageError(
                f"{label}: column {_show(name)} is not a valid column name; rename it to "
                f"{suggest_identifier(name)} (letters, digits and _, not starting with a digit)"
            )
        else:
            target = by_lower.get(low, name)
        if target.lower() in seen:
            raise UsageError(
                f"{label}: column {_show(name)} appears twice "
                f"(also as {_show(seen[target.lower()])}); keep one of them"
            )
        seen[target.lower()] = name
        if target in handlers:
            pos = -1 if target == "opted_in" else targets.index(target)
            cells.append((index, pos, target, handlers[target]))
        else:
            if low not in by_lower:
                new_columns.append(target)
            targets.append(target)
            cells.append((index, len(targets) - 1, target, norm.attribute))
    if "id" not in seen:
        raise UsageError(
            f"{label}: no id column (columns: {_show(', '.join(names), 200)[1:-1]}); "
            "add an id column or name the one to use with --id-column COL"
        )
    return _Plan(targets, cells, new_columns, len(targets))


def _bad_bytes(text: str) -> str:
    found = sorted({f"0x{ord(c) - 0xDC00:02X}" for c in text if "\udc80" <= c <= "\udcff"})
    return ", ".join(found[:3])


_Row = tuple[list[Any], frozenset[str]]  # values in target order, opted-in channels


def _normalise(plan: _Plan, cells: Sequence[Any]) -> _Row | list[tuple[str, str]] | None:
    """One record → its row, or its problems (column, reason), or None when it is empty."""
    values: list[Any] = [None] * plan.width
    opted: frozenset[str] = frozenset()
    problems: list[tuple[str, str]] = []
    given = False
    ncells = len(cells)
    for src, pos, name, handler in plan.cells:
        if src >= ncells:
            continue
        raw = cells[src]
        if raw is None or raw == "":
            continue
        given = True
        try:
            if isinstance(raw, str):
                if len(raw) > MAX_CELL_BYTES // 4 and (
                    size := len(raw.encode("utf-8", "surrogateescape"))
                ) > MAX_CELL_BYTES:
                    raise _Bad(
                        f"the value is {_size(size)}; a cell holds at most 64 KiB, "
                        "keep long texts out of the customer file"
                    )
                try:
                    raw.encode("utf-8")
                except UnicodeEncodeError:
                    raise _Bad(
                        f"not UTF-8 (byte {_bad_bytes(raw)}); save the file as UTF-8"
                    ) from None
                raw = raw.strip()
                if not raw:
                    continue
            value = handler(raw)
        except _Bad as exc:
            problems.append((name, str(exc)))
            continue
        if pos < 0:
            opted = value
        else:
            values[pos] = value
    if problems:
        return problems
    if not given:
        return None
    key = values[0]
    if key is None:
        return [("id", "is empty; every customer needs an id")]
    if not key.isprintable():
        return [("id", f"{_show(key)} contains a line break or control character; "
                 'check the quoting of this row (an unclosed " joins the lines after it)')]
    return values, opted


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1024:.0f} KiB"


# --------------------------------------------------------------------------- importing


def import_customers(
    store: Store,
    config: Config,
    path: Path,
    *,
    format: str | None = None,
    id_column: str | None = None,
    dry_run: bool = False,
    strict: bool = False,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Upsert the customers of ``path``; bad rows are reported in the result, not raised.

    Raises UsageError for what stops the whole file (missing or empty file, no id column,
    bad column names). The caller turns ``result.rejected`` into exit code 3.
    """
    label = path.name
    if not path.exists():
        raise UsageError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise UsageError(f"{path}: is not a file; name a CSV, JSON or JSONL file")
    try:
        blank = is_blank(path)
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot read it ({exc.strerror}); check its permissions"
        ) from None
    if blank:
        raise UsageError(
            f"{label} is empty; a CSV starts with a header row such as id,name,email,phone"
        )
    fmt = detect_format(path, format)
    result = ImportResult(file=label, format=fmt, dry_run=dry_run, strict=strict)
    norm = _Normaliser(config)
    with ExitStack() as stack:
        names, records = read_records(stack, path, fmt, label)
        plan = _plan(names, id_column, customer_store.attribute_columns(store), norm, label)
        result.new_columns = plan.new_columns
        writer = _BatchWriter(store, plan, result, source=f"import:{label}", label=label)
        stack.callback(writer.close)
        if strict and not dry_run:
            stack.enter_context(_strict_transaction(store, result))
        for record in records:
            result.rows += 1
            if record.cells is None:
                result.rejected += 1
                result._problem(RowProblem(record.line, None, record.problem or "", record.element))
                continue
            outcome = _normalise(plan, record.cells)
            if outcome is None:
                result.rows -= 1
                continue
            if isinstance(outcome, list):
                result.rejected += 1
                for column, reason in outcome:
                    result._problem(RowProblem(record.line, column, reason, record.element))
                continue
            values, opted = outcome
            writer.add(values, opted, record.line)
            if writer.full(batch_size):
                writer.flush(write=not dry_run and not (strict and result.rejected))
                if on_progress is not None:
                    on_progress(result.rows)
        writer.flush(write=not dry_run and not (strict and result.rejected))
        if on_progress is not None:
            on_progress(result.rows)
    return result


class _StrictRollback(Exception):
    """Raised inside the --strict transaction to roll it back."""


@contextmanager
def _strict_transaction(store: Store, result: ImportResult) -> Iterator[None]:
    """--strict: the whole file is one transaction, rolled back when any row was rejected."""
    try:
        with store.write():
            yield
            if result.rejected:
                raise _StrictRollback
    except _StrictRollback:
        result.rolled_back = True
        result.created = result.updated = result.consents = 0
        result.new_columns = []


class _BatchWriter:
    """Collects good rows by id (last wins) and writes them a batch per transaction."""

    def __init__(
        self, store: Store, plan: _Plan, result: ImportResult, *, source: str, label: str
    ) -> None:
        self.store, self.plan, self.result = store, plan, result
        self.source, self.label = source, label
        self.rows: dict[str, list[Any]] = {}
        self.opted: dict[str, frozenset[str]] = {}
        self.lines: dict[str, int] = {}
        self.columns_ready = not plan.new_columns
        customer_store.begin_import_scratch(store)

    def add(self, values: list[Any], opted: frozenset[str], line: int) -> None:
        key = values[0]
        earlier = self.rows.get(key)
        if earlier is not None:
            self._duplicate(key, self.lines[key], line)
            # Same outcome as writing both rows in order: later values win, gaps keep.
            for i, v in enumerate(values):
                if v is not None:
                    earlier[i] = v
            self.opted[key] = self.opted[key] | opted
            self.lines[key] = line
            return
        self.rows[key] = values
        self.opted[key] = opted
        self.lines[key] = line

    def _duplicate(self, key: str, first: int, line: int) -> None:
        self.result.duplicates += 1
        if len(self.result.warnings) < MAX_KEPT:
            self.result.warnings.append(
                RowProblem(
                    line, "id",
                    f'"{key}" also appears on line {first}; the later row wins '
                    "(empty cells keep the earlier values)",
                )
            )

    def full(self, size: int) -> bool:
        return len(self.rows) >= size

    def flush(self, *, write: bool) -> None:
        if not self.rows:
            return
        ids = list(self.rows)
        seen = customer_store.import_ids_seen(self.store, ids)
        for key, first in seen.items():
            self._duplicate(key, first, self.lines[key])
        fresh = [i for i in ids if i not in seen]
        customer_store.remember_import_ids(self.store, [(i, self.lines[i]) for i in fresh])
        if write:
            self._write(ids, fresh, len(seen))
        else:
            known = customer_store.existing_customer_ids(self.store, fresh)
            self.result.created += len(fresh) - len(known)
            self.result.updated += len(known)
            self.result.consents += self._consent_rows(ids, "", count_only=True)
        self.rows, self.opted, self.lines = {}, {}, {}

    def _write(self, ids: list[str], fresh: list[str], seen: int) -> None:
        at = clock.iso(clock.now())
        with self.store.write():
            if not self.columns_ready:
                customer_store.ensure_columns(self.store, self.plan.new_columns)
                self.columns_ready = True
            created, updated = customer_store.upsert_customers(
                self.store, self.plan.targets, [self.rows[i] for i in ids], at
            )
            self.result.consents += self._consent_rows(ids, at, count_only=False)
        self.result.created += created
        self.result.updated += updated - seen

    def _consent_rows(self, ids: list[str], at: str, *, count_only: bool) -> int:
        by_channel: dict[str, list[str]] = {}
        for key in ids:
            for channel in self.opted[key]:
                by_channel.setdefault(channel, []).append(key)
        rows: list[consent_store.ConsentRow] = []
        for channel, members in by_channel.items():
            # Any ledger history (a STOP, a grant from the CLI) outranks a file's opted_in.
            history = consent_store.customers_with_history(self.store, members, channel)
            rows += [
                (key, channel, "opted_in", self.source, f"{self.label}:{self.lines[key]}", at)
                for key in members
                if key not in history
            ]
        if rows and not count_only:
            consent_store.append_consent(self.store, rows)
        return len(rows)

    def close(self) -> None:
        customer_store.end_import_scratch(self.store)


# --------------------------------------------------------------------------- looking


def list_customers(
    store: Store, where: str | None = None, *, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Customers matching ``where`` (audience SQL), each with ``consent``: channel → status.

    A bad filter raises here, before the caller has printed anything.
    """
    from .store.audience import select_customers

    return _paged_with_consent(store, select_customers(store, where, limit=limit))


def _paged_with_consent(
    store: Store, rows: Iterator[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    page: list[dict[str, Any]] = []
    for row in rows:
        page.append(row)
        if len(page) == 500:
            yield from _with_consent(store, page)
            page = []
    yield from _with_consent(store, page)


def _with_consent(store: Store, page: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if not page:
        return
    consent = consent_store.current_consent_many(store, [r["id"] for r in page])
    for row in page:
        row["consent"] = dict(sorted(consent.get(row["id"], {}).items()))  # channels by name
        yield row


def show_customer(store: Store, config: Config, customer_id: str) -> dict[str, Any]:
    """One customer: every column, current consent per channel, conversation summary."""
    from .consent import current_consent_detail

    customer = customer_store.require_customer(store, customer_id)
    history = consent_store.consent_history(store, customer_id)
    return {
        "customer": customer,
        "consent": current_consent_detail(config, history),
        "conversation": customer_store.conversation_summary(store, customer_id),
    }
