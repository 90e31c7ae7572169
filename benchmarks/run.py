"""Measure every figure of the issues and compare with peers.

``python benchmarks/run.py [--quick] [--only NAME...] [--json] [--markdown FILE]``

Prints a table (figure, size, median, min-max, unit, peak RSS, target, met?) or, with
``--json``, the same rows as one JSON object; ``--markdown FILE`` also writes the table as
Markdown. Progress goes to stderr. Everything runs in a
temporary folder that is removed at the end (``--keep`` keeps it), against loopback
servers only, and every child process has a time limit.

``--quick`` uses small sizes and one run each (under two minutes); the default full run
uses the sizes of the issues and the median of three runs (one for the million-row
figures), under twenty minutes on the project's two-core machine when the targets are met.
``BENCH_TINY=1`` (or the hidden ``--tiny``) shrinks everything further for the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # run as a script: make `benchmarks` and `outreach` importable from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cases import BENCHMARKS, Context, run_benchmark
from benchmarks.harness import Row

DASH = "\u2013"  # the en dash of the "min-max" column


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if unit.startswith("x"):
        return f"{value:.1f}"
    if unit == "of ceiling":
        return f"{value:.2f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _spread(row: Row) -> str:
    if len(row.values) < 2:
        return ""
    return f"{_number(min(row.values), row.unit)}{DASH}{_number(max(row.values), row.unit)}"


def _met(row: Row) -> str:
    if row.status != "ok":
        return "-"
    return {True: "yes", False: "NO", None: "?"}[row.met]


def print_table(rows: list[Row], mode: str, seconds: float, caption: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    runs = "median of 3 runs (1 for the 1M figures)" if mode == "full" else "1 run each"
    table = Table(
        title=f"outreach benchmarks ({mode}: {runs}; {seconds:.0f} s)",
        caption=caption or None,
        show_lines=False,
    )
    for column, justify in (
        ("figure", "left"),
        ("size", "right"),
        ("median", "right"),
        (f"min{DASH}max", "right"),
        ("unit", "left"),
        ("peak RSS MB", "right"),
        ("target", "left"),
        ("met?", "center"),
        ("note", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        if row.status != "ok":
            table.add_row(
                f"{row.name}: {row.figure}",
                row.size,
                "-",
                "-",
                row.unit,
                "-",
                row.target,
                "-",
                row.status,
            )
            continue
        spread = _spread(row)
        met = _met(row)
        style = {"yes": "green", "NO": "red"}.get(met, "yellow")
        table.add_row(
            f"{row.name}: {row.figure}",
            row.size,
            _number(row.median, row.unit),
            spread,
            row.unit,
            _number(row.rss_mb, "MB"),
            row.target,
            f"[{style}]{met}[/{style}]",
            row.note,
        )
    Console(width=max(160, shutil.get_terminal_size().columns)).print(table)


def markdown_table(rows: list[Row], mode: str) -> str:
    """The rows as a Markdown table, for the README."""
    lines = [
        f"| figure | size | median | min{DASH}max | unit | peak RSS MB | target | met? | note |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- | :---: | --- |",
    ]
    for row in rows:
        if row.status != "ok":
            lines.append(
                f"| {row.name}: {row.figure} | {row.size} | - | - | {row.unit} | - | "
                f"{row.target} | - | {row.status} |"
            )
            continue
        spread = _spread(row)
        lines.append(
            f"| {row.name}: {row.figure} | {row.size} | {_number(row.median, row.unit)} | "
            f"{spread} | {row.unit} | {_number(row.rss_mb, 'MB')} | {row.target} | "
            f"{_met(row)} | {row.note} |"
        )
    return "\n".join(lines).replace("|  |", "| |") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Measure outreach's figures (issues 2-7, 9) and compare with peers.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one run each: a smoke check in under 2 minutes",
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=list(BENCHMARKS),
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="FILE",
        help="also write the table as Markdown to FILE (for the README)",
    )
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        default=os.environ.get("OUTREACH_BENCH_POSTGRESQL")
        or os.environ.get("OUTREACH_TEST_POSTGRESQL"),
        help="a PostgreSQL server for the PostgreSQL rows (a user that may create "
        "databases; default: $OUTREACH_BENCH_POSTGRESQL, else $OUTREACH_TEST_POSTGRESQL); "
        "without one they are skipped",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary workspaces and print where they are"
    )
    args = parser.parse_args(argv)
    tiny = args.tiny or os.environ.get("BENCH_TINY") == "1"
    mode = "tiny" if tiny else "quick" if args.quick else "full"
    names = args.only or list(BENCHMARKS)
    root = Path(tempfile.mkdtemp(prefix="outreach-bench-"))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.postgresql:  # the same server for every PostgreSQL row (benchmarks/postgresql.py)
        os.environ["OUTREACH_BENCH_POSTGRESQL"] = args.postgresql
    ctx = Context(mode=mode, root=root, log=log, postgresql=args.postgresql)
    load_before = os.getloadavg()
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for name in names:
            log(f"{name} ...")
            t0 = time.monotonic()
            row = run_benchmark(ctx, name)
            rows.append(row)
            shown = (
                row.status if row.status != "ok" else f"{_number(row.median, row.unit)} {row.unit}"
            )
            log(f"{name}: {shown} ({time.monotonic() - t0:.0f} s)")
    finally:
        for cleanup in reversed(ctx.cleanups):
            try:
                cleanup()
            except Exception as exc:  # one failed drop must not hide the results
                log(f"clean-up: {type(exc).__name__}: {exc}")
        if args.keep:
            log(f"workspaces kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.monotonic() - started
    if args.markdown:
        args.markdown.write_text(markdown_table(rows, mode), encoding="utf-8")
    if args.json:
        report: dict[str, Any] = {
            "mode": mode,
            "runs": 3 if mode == "full" else 1,
            "seconds": round(seconds, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                # other work on the machine skews figures: say how busy it was
                "loadavg_1m_before": round(load_before[0], 2),
                "loadavg_1m_after": round(os.getloadavg()[0], 2),
            },
            "rows": [row.as_json() for row in rows],
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_table(
            rows,
            mode,
            seconds,
            f"{os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; 1-minute load average {load_before[0]:.1f} "
            f"before, {os.getloadavg()[0]:.1f} after",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
