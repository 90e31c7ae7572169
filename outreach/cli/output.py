"""How commands show things: rich tables for people, JSON for scripts, progress bars.

JSON goes to stdout alone; everything for people that is not the result (progress, notes)
goes to stderr, so ``--json`` output can be piped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


class _LazyConsole:
    """The rich console, made on first use: importing rich costs more than all the rest of
    `outreach --help` (cachegrind: 102 M of 672 M instructions), and --help, --json and
    most one-line errors never draw."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def built(self) -> Console:
        """The console itself (rich's Progress wants the real one)."""
        if self._console is None:
            from .console import WideConsole

            self._console = WideConsole(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.built(), name)


# typed as the console they stand for: commands use them as they would a rich Console
console = cast("Console", _LazyConsole(stderr=False))
err_console = cast("Console", _LazyConsole(stderr=True))


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
    fold: Collection[str] = (),
    times: Collection[str] = (),
    tz: Any = None,
    optional: Sequence[str] = (),
) -> int:
    """A rich table of ``rows``; returns how many rows were shown.

    Ids, times, emails and reasons are never broken over lines (a split id cannot be
    copied): only the free-text columns named in ``fold`` wrap, and when even so the
    table is wider than the terminal, the ``optional`` columns are left out in that order
    (a note says which; --json has them all). The stored UTC times of the columns in
    ``times`` are shown in ``tz``, with the zone.
    """
    from rich.text import Text

    names = dict(zip(columns, headers or columns, strict=True))
    cells: list[dict[str, Text]] = []
    for row in rows:
        line = {}
        for c in columns:
            value = row.get(c)
            if c in times and tz is not None and isinstance(value, str):
                value = local_time(value, tz)
            # Text, not str: a customer's "[/b]" is data, not rich markup (it would raise).
            line[c] = Text("" if value is None else str(value))
        cells.append(line)
    shown = list(columns)
    hidden: list[str] = []
    for column in optional:
        if _fits(shown, names, fold, cells):
            break
        shown.remove(column)
        hidden.append(names[column])
    console.print(_table(title, shown, names, fold, cells))
    if hidden and cells:
        note(f"(not shown at this width: {', '.join(hidden)}; --json has every column)")
    return len(cells)


def _table(
    title: str | None,
    columns: Sequence[str],
    names: Mapping[str, str],
    fold: Collection[str],
    cells: Sequence[Mapping[str, Text]],
) -> Any:
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold", title_justify="left")
    for column in columns:
        if column in fold:
            table.add_column(names[column], overflow="fold")
        else:
            table.add_column(names[column], no_wrap=True)
    for line in cells:
        table.add_row(*(line[c] for c in columns))
    return table


# narrowest a folding column is made before optional columns go
FOLD_MIN = 10


def _fits(
    columns: Sequence[str],
    names: Mapping[str, str],
    fold: Collection[str],
    cells: Sequence[Mapping[str, Text]],
) -> bool:
    """Whether the table fits the console with only its folding columns narrowed."""
    need = 1 + 3 * len(columns)  # the default box: "│ " before each cell, " │" at the end
    for c in columns:
        natural = max([len(names[c]), *(line[c].cell_len for line in cells)])
        need += min(natural, FOLD_MIN) if c in fold else natural
    return need <= console.width


def print_consent(current: Mapping[str, Mapping[str, Any]], title: str, tz: Any) -> None:
    """A customer's current consent, one row per channel."""
    print_table(
        ({"channel": c, **d} for c, d in current.items()),
        ["channel", "status", "source", "recorded_at"],
        headers=["channel", "status", "source", "recorded"],
        title=title,
        fold={"source"},
        times={"recorded_at"},
        tz=tz,
    )


def local_time(value: str | None, tz: Any) -> str:
    """A stored UTC time as ``2026-12-01 10:30 CET`` in ``tz``; blank when there is none."""
    if not value:
        return ""
    from .. import clock
    from ..errors import UsageError

    try:
        moment = clock.parse_time(value)
    except UsageError:  # not a time (a triggered campaign's occurrence label): as it is
        return value
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def plural(count: int, word: str, many: str | None = None) -> str:
    """ "1 duplicate", "2 duplicates", "1 reply", "3 replies" (``many`` when not +s)."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


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
        console=cast("_LazyConsole", err_console).built(),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield _Advance(bar, task)


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        return None

    def set_total(self, total: int | None) -> None:
        return None

    def stop(self) -> None:
        return None


class _Advance:
    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task
        self.stopped = False

    def advance(self, n: int = 1) -> None:
        if not self.stopped:
            self.bar.advance(self.task, n)

    def set_total(self, total: int | None) -> None:
        self.bar.update(self.task, total=total)

    def stop(self) -> None:
        """Stop drawing (a run asked to stop): what follows is not progress."""
        self.stopped = True
        self.bar.stop()
