"""Benchmarks of the CLI on local work: start-up, import, render, run, report, ingest, export.

The million-row figures form a chain that is built once per session: ``import_1m``'s
workspace is the one ``run_1m`` copies, and ``rerun_1m`` and ``report_1m`` work on what
``run_1m`` left. When a link of the chain fails or overruns its budget, the later rows say
so ("not available: ...") instead of repeating the failed step unmeasured.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .context import (
    LATER,
    Context,
    check,
    count_sent,
    fmt_n,
    join,
    json_out,
    max_rss,
    repeat,
)
from .harness import (
    ChildFailed,
    NotAvailable,
    Row,
    copy_workspace,
    outreach,
    run_child,
)

# -- start-up and import ---------------------------------------------------------------------


def bench_startup(ctx: Context) -> Row:
    row = Row("startup", "CLI start-up: outreach --help", "1 process", "s", "< 0.25 s")
    runs = ctx.sizes["startup"]
    run_child([sys.executable, "-m", "outreach", "--help"], timeout=60).check()  # warm caches
    for _ in range(runs):
        child = run_child([sys.executable, "-m", "outreach", "--help"], timeout=60).check()
        row.values.append(child.wall)
        max_rss(row, child.rss_mb)
    row.note = f"{runs} run(s); includes Python interpreter start-up"
    row.met = row.median is not None and row.median < 0.25
    return row


def _import(ctx: Context, row: Row, n: int, keep_as: str | None) -> float:
    source = ctx.customers_csv(n)
    ws = ctx.new_workspace(f"import-{n}")
    child = check(
        run_child(outreach(ws, "customers", "import", str(source), "--json"), timeout=ctx.timeout)
    )
    result = json_out(child)
    if result.get("imported") != n:
        row.note = join(row.note, f"imported {result.get('imported')} of {n}")
    max_rss(row, child.rss_mb)
    if keep_as:
        ctx.cache[keep_as] = ws
    return n / child.wall


def bench_import_100k(ctx: Context) -> Row:
    n = ctx.sizes["import_100k"]
    row = Row(
        "import_100k",
        "customers import (CSV, phone+email validation)",
        f"{fmt_n(n)} rows",
        "rows/s",
        ">= 15,000 rows/s",
    )
    repeat(ctx, row, lambda i: _import(ctx, row, n, None))
    row.met = (row.median or 0) >= 15_000
    return row


def bench_import_1m(ctx: Context) -> Row:
    n = ctx.sizes["million"]
    row = Row(
        "import_1m",
        "customers import, streamed: peak memory",
        f"{fmt_n(n)} rows",
        "MB RSS",
        "< 200 MB",
    )
    try:
        rate = _import(ctx, row, n, "ws_million")
    except ChildFailed as exc:
        # the rest of the million chain would only repeat this import, unmeasured
        ctx.cache["million_failed"] = f"import_1m failed ({exc})"
        raise
    row.values = [row.rss_mb or 0.0]
    row.note = join(row.note, f"1 run; {rate:,.0f} rows/s")
    row.met = (row.rss_mb or 0) < 200
    return row


def million_customers(ctx: Context) -> Path:
    """A workspace with the 1M-size customers: import_1m's, or made now (not measured)."""
    ws = ctx.cache.get("ws_million")
    if "million_failed" in ctx.cache:
        raise NotAvailable(ctx.cache["million_failed"])
    if ws is None:
        ws = ctx.seeded("million", ctx.sizes["million"])
        ctx.cache["ws_million"] = ws
    return Path(ws)


# -- rendering -------------------------------------------------------------------------------


def render_rate(ctx: Context, row: Row) -> float:
    n = ctx.sizes["render"]
    ws = ctx.cache.get("ws_render") or ctx.new_workspace("render")
    ctx.cache["ws_render"] = ws
    child = check(
        run_child(
            [sys.executable, "-m", "benchmarks.children", "render", str(ws), str(n)],
            timeout=ctx.timeout,
        )
    )
    result = json_out(child)
    max_rss(row, child.rss_mb)
    return float(result["count"] / result["seconds"])


def bench_render_100k(ctx: Context) -> Row:
    n = ctx.sizes["render"]
    row = Row(
        "render_100k",
        "render NPS email (text+HTML), Renderer, one core",
        f"{fmt_n(n)} messages",
        "msg/s",
        ">= 40,000 msg/s",
    )
    repeat(ctx, row, lambda i: render_rate(ctx, row))
    row.note = join(row.note, "times the render loop only (compiled once, pinned to one CPU)")
    row.met = (row.median or 0) >= 40_000
    ctx.cache["render_rates"] = list(row.values)
    return row


# -- run (plan + render + write outbox) -----------------------------------------------------


def _run_once(ctx: Context, row: Row, seed: Path, name: str, n: int) -> float:
    ws = copy_workspace(seed, ctx.path(name))
    child = check(run_child(outreach(ws, "run", "nps", "--json"), timeout=ctx.timeout, tree=True))
    sent = count_sent(json_out(child))
    if sent != n:
        row.note = join(row.note, f"sent {sent} of {n}")
    else:
        ctx.cache["ws_sent"] = (ws, n)  # a fully sent occurrence, for rerun's fallback
    max_rss(row, child.rss_mb)
    return n / child.wall


def bench_run_100k(ctx: Context) -> Row:
    n = ctx.sizes["run_100k"]
    row = Row(
        "run_100k",
        "run nps: plan + render + write outbox, end to end",
        f"{fmt_n(n)} customers",
        "deliveries/s",
        ">= 10,000 /s",
    )
    seed = ctx.seeded("outbox", n)
    repeat(ctx, row, lambda i: _run_once(ctx, row, seed, f"run-{n}-{i}", n))
    row.met = (row.median or 0) >= 10_000
    ctx.cache["run_100k_rates"] = list(row.values)
    return row


def sqlite_run_rates(ctx: Context) -> list[float]:
    """run_100k's rates of this session, or one run measured now (for a row beside it)."""
    rates = ctx.cache.get("run_100k_rates")
    if rates is None:
        n = ctx.sizes["run_100k"]
        rates = [_run_once(ctx, Row("run_100k", ""), ctx.seeded("outbox", n), f"run-{n}-x", n)]
        ctx.cache["run_100k_rates"] = rates
    return list(rates)


def bench_run_1m(ctx: Context) -> Row:
    n = ctx.sizes["million"]
    row = Row(
        "run_1m", "run nps end to end: peak memory", f"{fmt_n(n)} customers", "MB RSS", "< 300 MB"
    )
    seed = million_customers(ctx)
    ws = copy_workspace(seed, ctx.path(f"run-million-{n}"))
    ctx.cache["ws_million_run"] = ws
    child = run_child(outreach(ws, "run", "nps", "--json"), timeout=ctx.timeout, tree=True)
    row.rss_mb = child.rss_mb
    row.values = [child.rss_mb]
    if child.timed_out:
        row.note = (
            f"did not finish in {child.wall:.0f} s (< {n / child.wall:,.0f} "
            "deliveries/s); peak RSS so far"
        )
        progress = run_child(outreach(ws, "report", "nps", "--json"), timeout=ctx.timeout)
        if progress.returncode == 0:
            got = json_out(progress)
            row.note = join(
                row.note,
                f"when stopped: {got.get('planned', 0):,} planned, {got.get('sent', 0):,} sent",
            )
        row.met = False if child.rss_mb >= 300 else None
        return row
    check(child)
    sent = count_sent(json_out(child))
    ctx.cache["million_run_complete"] = sent == n
    row.note = join(
        "1 run" if ctx.mode == "full" else "",
        f"{n / child.wall:,.0f} deliveries/s ({child.wall:.0f} s)",
        f"sent {sent} of {n}" if sent != n else "",
    )
    row.met = child.rss_mb < 300
    return row


def _million_run(ctx: Context) -> Path:
    ws = ctx.cache.get("ws_million_run")
    if ws is None:
        bench_run_1m(ctx)
        ws = ctx.cache["ws_million_run"]
    if not ctx.cache.get("million_run_complete"):
        raise NotAvailable("run_1m did not complete, so there is no fully sent occurrence")
    return Path(ws)


def bench_rerun_1m(ctx: Context) -> Row:
    n = ctx.sizes["million"]
    row = Row(
        "rerun_1m",
        "second run of the same occurrence (sends nothing)",
        f"{fmt_n(n)} deliveries",
        "s",
        "< 5 s",
    )
    try:
        ws = _million_run(ctx)
    except NotAvailable as exc:
        if "ws_sent" not in ctx.cache:
            raise
        # still worth knowing: the same figure on the largest fully sent occurrence
        ws, smaller = ctx.cache["ws_sent"]
        row.size = f"{fmt_n(smaller)} deliveries"
        row.note = f"{exc}; measured on run_100k's workspace instead"

    def once(i: int) -> float:
        child = check(run_child(outreach(ws, "run", "nps", "--json"), timeout=ctx.timeout))
        sent = count_sent(json_out(child))
        if sent:
            row.note = join(row.note, f"sent {sent} (expected 0)")
        max_rss(row, child.rss_mb)
        return child.wall

    repeat(ctx, row, once)
    row.met = row.median is not None and row.median < 5 and "expected 0" not in row.note
    if "instead" in row.note and row.met:
        row.met = None  # under 5 s at a smaller size says nothing about a million
    return row


def bench_report_1m(ctx: Context) -> Row:
    n = ctx.sizes["million"]
    row = Row("report_1m", "report nps --json", f"{fmt_n(n)} deliveries", "s", "< 2 s")
    ws = ctx.cache.get("ws_million_run")
    if ws is None:
        _million_run(ctx)
        ws = ctx.cache["ws_million_run"]

    planned: list[int] = []

    def once(i: int) -> float:
        child = check(
            run_child(outreach(Path(ws), "report", "nps", "--json", now=LATER), timeout=ctx.timeout)
        )
        planned.append(int(json_out(child).get("planned") or 0))
        max_rss(row, child.rss_mb)
        return child.wall

    repeat(ctx, row, once)
    row.met = row.median is not None and row.median < 2
    if planned and planned[-1] != n:
        # run_1m was stopped before it had planned everyone: a smaller campaign
        row.size = f"{fmt_n(planned[-1])} deliveries"
        row.met = None if row.met else False
    if not ctx.cache.get("million_run_complete"):
        row.note = join(row.note, "on run_1m's workspace, which did not finish")
    return row


def bench_ingest_100k(ctx: Context) -> Row:
    n = ctx.sizes["ingest"]
    customers_n = ctx.sizes["export_customers"]
    row = Row(
        "ingest_100k",
        "replies ingest (normalized JSONL)",
        f"{fmt_n(n)} messages",
        "msg/s",
        ">= 10,000 msg/s",
    )
    seed = ctx.seeded("inbound", customers_n)
    source = ctx.replies_jsonl(n, customers_n)

    def once(i: int) -> float:
        ws = copy_workspace(seed, ctx.path(f"ingest-{i}"))
        child = check(
            run_child(
                outreach(ws, "replies", "ingest", str(source), "--json", now=LATER),
                timeout=ctx.timeout,
            )
        )
        result = json_out(child)
        if result.get("stored") != n:
            row.note = join(row.note, f"stored {result.get('stored')} of {n}")
        max_rss(row, child.rss_mb)
        return n / child.wall

    repeat(ctx, row, once)
    row.note = join(
        row.note,
        f"from {fmt_n(customers_n)} customers, no survey open: "
        "answers become conversation messages",
    )
    row.met = (row.median or 0) >= 10_000
    return row


def bench_export_1m(ctx: Context) -> Row:
    n = ctx.sizes["export"]
    customers_n = ctx.sizes["export_customers"]
    row = Row(
        "export_1m",
        "export replies to CSV, streamed",
        f"{fmt_n(n)} replies",
        "rows/s",
        ">= 100,000 rows/s, < 100 MB",
    )
    ws = copy_workspace(ctx.seeded("inbound", customers_n), ctx.path("export"))
    ctx.log(f"  set-up: storing {n:,} inbound messages")
    seeded = json_out(
        check(
            run_child(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.children",
                    "seed-replies",
                    str(ws),
                    str(n),
                    str(customers_n),
                ],
                timeout=max(ctx.timeout, 1800.0),
            )
        )
    )
    rows = int(seeded["count"])

    def once(i: int) -> float:
        out = ctx.path(f"export-{i}.csv")
        child = check(
            run_child(
                outreach(ws, "export", "replies", "--format", "csv", "-o", str(out), now=LATER),
                timeout=ctx.timeout,
            )
        )
        with out.open("rb") as f:
            lines = sum(1 for _ in f) - 1
        if lines != rows:
            row.note = join(row.note, f"exported {lines} of {rows}")
        out.unlink()
        max_rss(row, child.rss_mb)
        return rows / child.wall

    repeat(ctx, row, once)
    row.size = f"{fmt_n(rows)} replies"
    row.met = (row.median or 0) >= 100_000 and (row.rss_mb or 0) < 100
    return row
