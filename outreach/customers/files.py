"""Reading customer files: CSV, a JSON array or JSONL, streamed as records.

``importer.py`` validates, normalises and writes; this module only turns FILE into a
header (the column names) and an iterator of ``Record(line, element, cells, problem)``, so
that every reported problem can name its line (and JSON element). It is separate because
reading is about bytes and formats, not about customers:

- Text is opened as UTF-8 with ``utf-8-sig`` (a BOM is dropped), or as UTF-16/32 when a
  byte-order mark says so (``text_encoding``), and with ``surrogateescape``:
  a byte that is not UTF-8 survives as a lone surrogate, so the validator rejects that
  one row with its line instead of the import crashing at an unknown line.
- CSV: the delimiter is sniffed from the first 64 KiB (the header line has the last
  word); a row with extra cells is a bad record, and so is one whose quoted cell is not
  closed within ``MAX_RECORD_LINES`` lines or before the end of the file: it is rejected
  at its first line and the lines after it are read again as rows (``_Lines``).
- JSONL is read line by line; a JSON array element by element with ``raw_decode`` over a
  growing buffer, never the whole file. For JSON the column names come from a first pass
  over every object's keys.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from ..errors import UsageError

SNIFF_BYTES = 64 * 1024
MAX_FIELD_CHARS = 64 * 1024 * 1024
# A record longer than this many lines almost surely comes from an unclosed quote.
MAX_RECORD_LINES = 20
FORMATS = ("csv", "json", "jsonl")


class Record(NamedTuple):
    """One row of the file: where it starts, and its cells or why it cannot be read."""

    line: int
    element: int | None
    cells: Sequence[Any] | None  # aligned with the plan's sources; None: unreadable
    problem: str | None = None


def detect_format(path: Path, given: str | None) -> str:
    """csv, json or jsonl: as given, else from the extension (a .json of objects is jsonl)."""
    if given:
        fmt = given.lower()
        if fmt not in FORMATS:
            raise UsageError(f'--format "{given}" is not a format; use csv, json or jsonl')
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        with path.open("rb") as f:
            raw = f.read(4096)
        encoding = _bom_encoding(raw) or "utf-8-sig"
        head = raw.decode(encoding, errors="replace").lstrip("\ufeff \t\r\n")
        return "jsonl" if head.startswith("{") else "json"
    raise UsageError(
        f"{path.name}: cannot tell the format from the extension; add --format csv, json or jsonl"
    )


# UTF-32 LE's mark starts with UTF-16 LE's: test it first
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _bom_encoding(head: bytes) -> str | None:
    return next((encoding for bom, encoding in _BOMS if head.startswith(bom)), None)


def text_encoding(path: Path, label: str) -> str:
    """How to decode ``path``: UTF-8 (a BOM is dropped), or UTF-16/32 when a BOM says so.

    Excel's "Unicode text" is UTF-16 with a BOM, so it is read. UTF-16 without one
    (every other byte NUL in Latin text) cannot be told apart reliably: refused, with how
    to save the file, instead of reading it as UTF-8 full of NULs.
    """
    with path.open("rb") as f:
        head = f.read(4096)
    encoding = _bom_encoding(head)
    if encoding is not None:
        return encoding
    half = len(head) // 2
    if half >= 4:
        zeros = sorted((head[0::2].count(0), head[1::2].count(0)))
        if zeros[1] > half * 0.4 and zeros[0] < half * 0.05:
            raise UsageError(
                f"{label} is UTF-16 text without a byte-order mark; save it as UTF-8 "
                '(in Excel: "CSV UTF-8") and import it again'
            )
    return "utf-8-sig"


def _open_text(path: Path, newline: str | None, encoding: str) -> TextIO:
    # surrogateescape: a non-UTF-8 byte becomes a lone surrogate that the row check reports,
    # instead of a UnicodeDecodeError that would end the import at an unknown line.
    return io.TextIOWrapper(
        path.open("rb"), encoding=encoding, errors="surrogateescape", newline=newline
    )


def _sniff_delimiter(path: Path, encoding: str) -> str:
    with path.open("rb") as f:
        raw = f.read(SNIFF_BYTES)
    sample = raw.decode(encoding, errors="replace")
    if len(raw) == SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    first = next((line for line in sample.splitlines() if line.strip()), "")
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    if delimiter not in first:
        # The sniffer can be fooled by data; the header line is the better witness.
        delimiter = next((d for d in ",;\t|" if d in first), ",")
    return delimiter


class _RunawayRecord(Exception):
    """Raised through csv.reader when one record has taken more than MAX_RECORD_LINES lines."""


class _Lines:
    """The file's lines for ``csv.reader``, keeping those of the record being read.

    A quoted cell that is never closed would make the reader join every following line
    into one cell. Holding the current record's lines lets the source reject that record
    at its first line and hand the lines after it to the reader again, so the rows that
    follow are read as rows. A record is cut off after MAX_RECORD_LINES lines (memory
    stays bounded), and ``ran_out`` tells that the file ended inside one.
    """

    __slots__ = ("_again", "_next", "line", "ran_out", "taken")

    def __init__(self, text: TextIO) -> None:
        self._next = text.__next__
        self._again: list[str] = []  # reversed: pop() gives the next line
        self.taken: list[str] = []
        self.line = 0  # number of the last line handed out
        self.ran_out = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if len(self.taken) >= MAX_RECORD_LINES:
            raise _RunawayRecord
        if self._again:
            text = self._again.pop()
        else:
            try:
                text = self._next()
            except StopIteration:
                if self.taken:
                    self.ran_out = True
                raise
        self.taken.append(text)
        self.line += 1
        return text

    def begin(self) -> int:
        """Start a record; returns the number of its first line."""
        self.taken.clear()
        self.ran_out = False
        return self.line + 1

    def read_again_after_first(self) -> None:
        """Give back every line of the current record but its first."""
        rest = self.taken[1:]
        self._again.extend(reversed(rest))
        self.line -= len(rest)
        self.taken.clear()


def _csv_source(text: TextIO, delimiter: str, label: str) -> tuple[list[str], Iterator[Record]]:
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    try:
        while header is None:
            start = lines.begin()
            cells = next(reader, None)
            if cells is None:
                break
            if lines.ran_out:
                raise _RunawayRecord
            if any(c.strip() for c in cells):
                header = cells
    except _RunawayRecord:
        raise UsageError(
            f'{label}:{start}: a quoted column name in the header is not closed; close the "'
        ) from None
    except csv.Error as exc:
        raise UsageError(f"{label}:{lines.line}: cannot read the header ({exc})") from None
    if header is None:
        raise UsageError(
            f"{label} has no header row; the first line names the columns, e.g. id,name,email"
        )

    def records() -> Iterator[Record]:
        width = len(header)
        while True:
            start = lines.begin()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except _RunawayRecord:
                lines.read_again_after_first()
                yield Record(
                    start,
                    None,
                    None,
                    f"a quoted cell opened on this line is not closed within {MAX_RECORD_LINES} "
                    'lines; close the " (the lines after it were read as rows of their own)',
                )
                continue
            except csv.Error as exc:
                reason = f"{exc}; check the quoting; import stopped here"
                yield Record(start, None, None, reason)
                return
            if lines.ran_out:
                # A cell that runs to the end of the file is a missing ", not a value.
                lines.read_again_after_first()
                yield Record(
                    start,
                    None,
                    None,
                    'a quoted cell opened on this line is never closed; close the " '
                    "(the lines after it were read as rows of their own)",
                )
                continue
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                yield Record(
                    start,
                    None,
                    None,
                    f"the row has {len(cells)} cells but the header names {width} columns; "
                    f'quote cells that contain "{delimiter}" or remove the extra cells',
                )
                continue
            yield Record(start, None, cells)

    return header, records()


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"not valid JSON ({exc.msg} at column {exc.colno})"


def _jsonl_objects(text: TextIO) -> Iterator[_Parsed]:
    loads = json.loads
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            yield number, None, loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, None, _json_error(exc) + "; write one JSON object per line"


_Parsed = tuple[int, int | None, Any, str | None]  # line, element, value, problem


def _json_array_objects(text: TextIO, label: str) -> Iterator[_Parsed]:
    """Elements of a top-level JSON array, read in chunks (never the whole file)."""
    decoder = json.JSONDecoder()
    chunk = 64 * 1024
    buf, pos, line, counted, eof = "", 0, 1, 0, False

    def more(at_least: int) -> None:
        nonlocal buf, pos, line, counted, eof
        if pos > chunk:  # drop what was consumed, counting its lines first
            line += buf.count("\n", counted, pos)
            buf, counted, pos = buf[pos:], 0, 0
        data = text.read(max(chunk, at_least))
        if not data:
            eof = True
        buf += data

    def skip_ws() -> str:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or eof:
                return buf[pos] if pos < len(buf) else ""
            more(0)

    if skip_ws() != "[":
        raise UsageError(
            f"{label}: a JSON file must hold one array of customer objects; "
            "for one object per line use --format jsonl"
        )
    pos += 1
    index = 0
    while True:
        ch = skip_ws()
        if ch == "]":
            return
        if index:
            if ch != ",":
                line += buf.count("\n", counted, pos)
                counted = pos
                reason = f'expected "," or "]" here; import stopped at element {index}'
                yield line, index, None, reason
                return
            pos += 1
            skip_ws()
        if pos >= len(buf):
            yield line, index, None, "the array is not closed with ]; import stopped here"
            return
        line += buf.count("\n", counted, pos)
        counted = pos
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if eof:
                    yield line, index, None, _json_error(exc) + "; import stopped here"
                    return
                more(len(buf))  # grow geometrically: a 50 MB element is not read 800 times
                continue
            if end >= len(buf) and not eof:  # a number may continue in the next chunk
                more(len(buf))
                continue
            break
        yield line, index, value, None
        pos = end
        index += 1


def _json_source(
    path: Path, fmt: str, label: str, encoding: str
) -> tuple[list[str], Callable[[], Iterator[Record]]]:
    """The keys of every object (first pass), and a factory of aligned records."""

    def objects() -> Iterator[_Parsed]:
        with _open_text(path, None, encoding) as text:
            if fmt == "jsonl":
                yield from _jsonl_objects(text)
            else:
                yield from _json_array_objects(text, label)

    keys: dict[str, None] = {}
    for _line, _element, value, _problem in objects():
        if isinstance(value, dict):
            for key in value:
                if key not in keys:
                    keys[key] = None
    names = list(keys)

    def records() -> Iterator[Record]:
        for line, element, value, problem in objects():
            if problem is not None:
                yield Record(line, element, None, problem)
            elif not isinstance(value, dict):
                yield Record(
                    line, element, None, 'expected a JSON object like {"id": "C1", "name": "Ann"}'
                )
            else:
                yield Record(line, element, [value.get(k) for k in names])

    return names, records


def is_blank(path: Path) -> bool:
    """Whether the file holds nothing but a BOM and whitespace."""
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            if chunk.strip(b"\xef\xbb\xbf \t\r\n"):
                return False
    return True


def read_records(
    stack: ExitStack, path: Path, fmt: str, label: str
) -> tuple[list[str], Iterator[Record]]:
    """The column names of ``path`` and its records; files it opens close with ``stack``."""
    # A 50 MB cell is read, then rejected with a reason; past 64 MiB (an unclosed quote
    # swallowing the file) the reader stops instead of growing without bound.
    csv.field_size_limit(MAX_FIELD_CHARS)
    encoding = text_encoding(path, label)
    if fmt == "csv":
        text = stack.enter_context(_open_text(path, "", encoding))
        return _csv_source(text, _sniff_delimiter(path, encoding), label)
    names, factory = _json_source(path, fmt, label, encoding)
    records = factory()
    if not names:  # no objects with keys: every record (if any) is a bad row
        names = ["id"]
    return names, records
