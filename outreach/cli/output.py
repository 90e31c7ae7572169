"""How commands show things: rich tables for people, JSON for scripts, progress bars.

JSON goes to stdout alone; everything for people that is not the result (progress, notes)
goes to stderr, so ``--json`` output can be piped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        from ..clock import iso

        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, default=_default, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def stream_json_list(rows: Iterable[Any]) -> None:
    """A JSON list on stdout, written row by row so that memory stays flat."""
    out = sys.stdout
    first = True
    out.write("[")
    for row in rows:
        out.write("\n  " if first else ",\n  ")
        out.write(json.dumps(row, default=_default, ensure_ascii=False))
        first = False
    out.write("\n]\n" if not first else "]\n")
    out.flush()


def print_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    headers: Sequence[str] | None = None,
) -> int:
    """A rich table of ``rows``; returns how many rows were shown."""
    table = Table(title=title, show_lines=False, header_style="bold")
    for header in headers or columns:
        table.add_column(header, overflow="fold")
    count = 0
    for row in rows:
        # Text, not str: a customer's "[/b]" is data, not rich markup (it would raise).
        table.add_row(*(Text("" if row.get(c) is None else str(row.get(c))) for c in columns))
        count += 1
    console.print(table)
    return count


def print_consent(current: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """A customer's current consent, one row per channel."""
    print_table(
        ({"channel": c, **d} for c, d in current.items()),
        ["channel", "status", "source", "recorded_at"],
        title=title,
    )


def local_time(value: str | None, tz: Any) -> str:
    """A stored UTC time as ``2026-12-01 10:30 CET`` in ``tz``; blank when there is none."""
    if not value:
        return ""
    from .. import clock

    return clock.parse_time(value).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def note(message: str) -> None:
    """A line for people on stderr (not part of the result)."""
    err_console.print(message, markup=False)


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on a terminal; a no-op advance() elsewhere (cron, pipes)."""
    if not enabled or not err_console.is_terminal:
        yield _NoProgress()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield _Advance(bar, task)


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        return None

    def set_total(self, total: int | None) -> None:
        return None


class _Advance:
    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)

    def set_total(self, total: int | None) -> None:
        self.bar.update(self.task, total=total)
