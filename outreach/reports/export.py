"""Reply logs and transcripts for spreadsheets and BI tools.

Rows come from one cursor (``store.reports``) and go straight to the writer, batch by
batch, so an export of millions of messages runs in constant memory. With ``--output`` the
rows go to a temporary file beside the target that is renamed over it only once complete:
a failed or interrupted export leaves neither a half file nor the temporary one.

Spreadsheet safety applies to CSV only: a text cell starting with ``=``, ``+``, ``-``,
``@``, tab or CR gets a leading ``'`` so that Excel, LibreOffice and Google Sheets show it
as text instead of running it as a formula (OWASP "CSV injection"). JSON and JSON lines
keep every text exactly as stored, since their readers do not evaluate cells.

Choices that the spec leaves open:
- ``--since`` is inclusive, ``--until`` exclusive (``--since 2026-11-01 --until 2026-12-01``
  is November); a time without a zone is in the workspace time zone; ``7d``/``12h`` mean
  that long before now.
- An inbound message that is not a survey answer is attributed to the campaign of the
  customer's latest campaign delivery sent before it (one indexed lookup per row).
- ``export conversations --campaign C`` keeps the whole transcripts of the customers C was
  planned for (agent replies belong to no campaign, and holes would mislead).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

from .. import clock
from ..config import parse_duration
from ..errors import UsageError
from ..store import CONVERSATION_COLUMNS, REPLY_COLUMNS
from ..workspace import Workspace
from .output import atomic_output
from .report import require_campaign

FORMATS = ("csv", "jsonl", "json")
KINDS = ("replies", "conversations")
Kind = Literal["replies", "conversations"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_RELATIVE = re.compile(r"\s*\d+\s*[smhdw]\s*")


@dataclass(frozen=True)
class ExportFilter:
    """Which messages to export; times are aware UTC datetimes."""

    campaign: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_moment(text: str, tz: ZoneInfo, *, what: str) -> datetime:
    """A date, a time, or a relative value like ``7d`` / ``12h`` (that long before now)."""
    if _RELATIVE.fullmatch(text):
        return clock.now() - parse_duration(text, where=what)
    try:
        return clock.parse_time(text, tz, what=what)
    except UsageError:
        raise UsageError(
            f'{what} "{text}" is not a time; write it like 2026-12-01, "2026-12-01 10:00" '
            "(workspace time), 2026-12-01T10:00:00+01:00, or relative: 7d, 12h, 30m, 2w"
        ) from None


def make_filter(
    ws: Workspace, campaign: str | None, since: str | None, until: str | None
) -> ExportFilter:
    """Parse the command-line filters; --since after --until is a usage error."""
    tz = ws.config.timezone
    start = parse_moment(since, tz, what="--since") if since else None
    end = parse_moment(until, tz, what="--until") if until else None
    if start is not None and end is not None and start > end:
        raise UsageError(
            f"--since {since} ({clock.iso(start)}) is after --until {until} ({clock.iso(end)}); "
            "swap them or widen the range"
        )
    if campaign:
        require_campaign(ws, campaign)
    return ExportFilter(campaign=campaign or None, since=start, until=end)


def columns_of(kind: Kind) -> tuple[str, ...]:
    """The column names of an export, in order."""
    return REPLY_COLUMNS if kind == "replies" else CONVERSATION_COLUMNS


def iter_rows(ws: Workspace, kind: Kind, flt: ExportFilter) -> Iterator[tuple[Any, ...]]:
    """Stream the rows of an export as tuples in ``columns_of(kind)`` order."""
    if kind not in KINDS:
        raise UsageError(f'"{kind}" is not an export; use one of {", ".join(KINDS)}')
    since = clock.iso(flt.since) if flt.since else None
    until = clock.iso(flt.until) if flt.until else None
    reports = ws.store.reports
    fetch = reports.iter_replies if kind == "replies" else reports.iter_conversation_messages
    return fetch(campaign=flt.campaign, since=since, until=until)


def csv_cell(value: Any) -> Any:
    """A cell made safe for spreadsheets: formula-like text gets a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_rows(
    rows: Iterable[Sequence[Any]],
    columns: Sequence[str],
    fmt: str,
    out: IO[str],
    *,
    excel: bool = False,
) -> int:
    """Write ``rows`` to ``out`` as csv, jsonl or json; returns how many rows.

    ``excel``: a CSV starts with a UTF-8 byte order mark, the only way Excel reads UTF-8.
    """
    count = 0
    if fmt == "csv":
        if excel:
            out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(columns)
        starts = _FORMULA_START
        for row in rows:
            # csv_cell, inlined: this runs once per cell, millions of times.
            writer.writerow(
                ["'" + v if isinstance(v, str) and v.startswith(starts) else v for v in row]
            )
            count += 1
    elif fmt == "jsonl":
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        for row in rows:
            out.write(dumps(dict(zip(columns, row, strict=True))))
            out.write("\n")
            count += 1
    elif fmt == "json":
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        out.write("[")
        for row in rows:
            out.write(",\n  " if count else "\n  ")
            out.write(dumps(dict(zip(columns, row, strict=True))))
            count += 1
        out.write("\n]\n" if count else "]\n")
    else:
        raise UsageError(f"--format {fmt}: not a format; use one of {', '.join(FORMATS)}")
    return count


# extensions that say nothing about the format: written as --format (default csv) says
_PLAIN_SUFFIXES = ("", "txt", "log", "out")


def format_for(fmt: str | None, output: Path | None) -> str:
    """The format given, else the output file's suffix (.csv, .jsonl, .json), else csv.

    A suffix naming another format (.xlsx, or .csv with --format json) is refused: the
    file would open as garbage in whatever that suffix starts.
    """
    if fmt and fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: not a format; use one of {', '.join(FORMATS)}")
    suffix = output.suffix.lower().lstrip(".") if output else ""
    if suffix in _PLAIN_SUFFIXES:
        return fmt or "csv"
    if fmt is None and suffix in FORMATS:
        return suffix
    if suffix != fmt:
        written = fmt or "csv"
        raise UsageError(
            f"--output {output}: a .{suffix} file would hold {written}; name it "
            f".{written}{' (spreadsheets open it)' if written == 'csv' else ''}"
            + ("" if fmt else f", or give --format {'|'.join(FORMATS)}")
        )
    return fmt


def export(
    ws: Workspace,
    kind: Kind,
    flt: ExportFilter,
    fmt: str,
    *,
    output: Path | None = None,
    stdout: IO[str] | None = None,
    excel: bool = False,
) -> int:
    """Run one export to ``output`` (atomically) or to ``stdout``; returns the row count."""
    columns = columns_of(kind)
    if excel and fmt != "csv":
        raise UsageError(f"--excel is for CSV (a byte order mark), not {fmt}; drop one of them")
    if output is None:
        if stdout is None:
            raise UsageError("export: nowhere to write; give --output FILE")
        return write_rows(iter_rows(ws, kind, flt), columns, fmt, stdout, excel=excel)
    with atomic_output(output) as out:
        return write_rows(iter_rows(ws, kind, flt), columns, fmt, out, excel=excel)
