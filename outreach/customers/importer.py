"""Customer import: read a file, validate and normalise each row, upsert in batches.

The design is a stream, so that a file of a million rows imports in flat memory:

- A reader (``files.py``) turns FILE into records ``(line, element, cells)`` one
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

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import clock
from ..config import Config
from ..errors import UsageError
from ..store import Store
from ..store.interface import ConsentRow
from .files import detect_format, is_blank, read_records
from .normalise import BadCell, Normaliser, show_value

BATCH_SIZE = 2_000
MAX_CELL_BYTES = 64 * 1024
# Errors and duplicate warnings kept for the report; the rest are only counted.
MAX_KEPT = 1_000
KNOWN_COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "preferred_channel",
    "locale",
    "timezone",
    "opted_in",
)
STORED_COLUMNS = KNOWN_COLUMNS[:-1]
# Built-in columns a file may not write, and SQLite's aliases of the row id.
RESERVED_COLUMNS = ("verified", "created_at", "updated_at", "rowid", "oid", "_rowid_")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def suggest_identifier(name: str) -> str:
    """A valid column name close to ``name`` ("first name" → first_name)."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_").lower() or "column"
    return f"_{out}" if out[0].isdigit() else out


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
    norm: Normaliser,
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
        "id": norm.text,
        "name": norm.text,
        "email": norm.email,
        "phone": norm.phone,
        "preferred_channel": norm.channel,
        "locale": norm.locale,
        "timezone": norm.timezone,
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
                f"{label}: column {show_value(name)} clashes with the built-in column {low}; "
                f"rename it, e.g. to file_{low}"
            )
        elif not _IDENTIFIER.fullmatch(name):
            raise UsageError(
                f"{label}: column {show_value(name)} is not a valid column name; rename it to "
                f"{suggest_identifier(name)} (letters, digits and _, not starting with a digit)"
            )
        else:
            target = by_lower.get(low, name)
        if target.lower() in seen:
            raise UsageError(
                f"{label}: column {show_value(name)} appears twice "
                f"(also as {show_value(seen[target.lower()])}); keep one of them"
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
            f"{label}: no id column (columns: {show_value(', '.join(names), 200)[1:-1]}); "
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
                if (
                    len(raw) > MAX_CELL_BYTES // 4
                    and (size := len(raw.encode("utf-8", "surrogateescape"))) > MAX_CELL_BYTES
                ):
                    raise BadCell(
                        f"the value is {_size(size)}; a cell holds at most 64 KiB, "
                        "keep long texts out of the customer file"
                    )
                try:
                    raw.encode("utf-8")
                except UnicodeEncodeError:
                    raise BadCell(
                        f"not UTF-8 (byte {_bad_bytes(raw)}); save the file as UTF-8"
                    ) from None
                if "\x00" in raw:
                    # as at ingest: a NUL ends strings in C libraries, mail and SMS gateways
                    raise BadCell("contains a NUL byte; remove it (is the file really text?)")
                raw = raw.strip()
                if not raw:
                    continue
            value = handler(raw)
        except BadCell as exc:
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
        return [
            (
                "id",
                f"{show_value(key)} contains a line break or control character; "
                'check the quoting of this row (an unclosed " joins the lines after it)',
            )
        ]
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
    norm = Normaliser(config)
    with ExitStack() as stack:
        names, records = read_records(stack, path, fmt, label)
        plan = _plan(names, id_column, store.customers.attribute_columns(), norm, label)
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
        store.customers.begin_import_scratch()

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
                    line,
                    "id",
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
        seen = self.store.customers.import_ids_seen(ids)
        for key, first in seen.items():
            self._duplicate(key, first, self.lines[key])
        fresh = [i for i in ids if i not in seen]
        self.store.customers.remember_import_ids([(i, self.lines[i]) for i in fresh])
        if write:
            self._write(ids, fresh, len(seen))
        else:
            known = self.store.customers.existing_customer_ids(fresh)
            self.result.created += len(fresh) - len(known)
            self.result.updated += len(known)
            self.result.consents += self._consent_rows(ids, "", count_only=True)
        self.rows, self.opted, self.lines = {}, {}, {}

    def _write(self, ids: list[str], fresh: list[str], seen: int) -> None:
        at = clock.iso(clock.now())
        with self.store.write():
            if not self.columns_ready:
                self.store.customers.ensure_columns(self.plan.new_columns)
                self.columns_ready = True
            created, updated = self.store.customers.upsert_customers(
                self.plan.targets, [self.rows[i] for i in ids], at
            )
            self.result.consents += self._consent_rows(ids, at, count_only=False)
        self.result.created += created
        self.result.updated += updated - seen

    def _consent_rows(self, ids: list[str], at: str, *, count_only: bool) -> int:
        by_channel: dict[str, list[str]] = {}
        for key in ids:
            for channel in self.opted[key]:
                by_channel.setdefault(channel, []).append(key)
        rows: list[ConsentRow] = []
        for channel, members in by_channel.items():
            # Any ledger history (a STOP, a grant from the CLI) outranks a file's opted_in.
            history = self.store.consent.customers_with_history(members, channel)
            rows += [
                (key, channel, "opted_in", self.source, f"{self.label}:{self.lines[key]}", at)
                for key in members
                if key not in history
            ]
        if rows and not count_only:
            self.store.consent.append_consent(rows)
        return len(rows)

    def close(self) -> None:
        self.store.customers.end_import_scratch()
