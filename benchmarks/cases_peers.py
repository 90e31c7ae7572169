"""Peers in the same run, same data, same machine: ``mailmerge`` and ``apprise``.

Each row is a ratio, outreach's rate over the peer's, with both rates in the note. A peer
that is not installed gives the row "peer not installed (pip install -e '.[bench]')".

Every row also states a ceiling ratio, measured in the same run: outreach's rate over the
bare library's (httpx POSTs to the same endpoint, aiosmtplib over as many connections,
a plain jinja2.Environment on the same template files), which does nothing else, while
outreach renders, signs and records each message. A row meets its target only if
outreach reaches at least ``CEILING_SHARE`` of that ceiling: a peer ratio alone says
little when the ceiling itself is only 4x the peer (webhooks: no sender built on httpx
can be 10x apprise here).
"""

from __future__ import annotations

import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from .cases_local import render_rate
from .cases_network import send_to_server, smtp_seed
from .context import (
    Context,
    check,
    fmt_n,
    join,
    json_out,
    repeat,
    server_busy,
    server_rate,
)
from .harness import (
    ChildFailed,
    LoopbackServer,
    NotAvailable,
    Row,
    run_child,
)

# -- peers -----------------------------------------------------------------------------------

PEER_MISSING = "peer not installed (pip install -e '.[bench]')"
CEILING_SHARE = 0.8  # outreach's rate over the bare client's, at least
MAILMERGE_TEMPLATE = """\
TO: {{email}}
FROM: Acme <hello@example.com>
SUBJECT: {{name.split(' ')[0]}}, would you recommend Acme?

Hi {{name.split(' ')[0]}},

How likely are you to recommend Acme to a friend or colleague?

Reply to this email with a number from 0 (not at all likely) to 10 (extremely likely).

Thank you,
Acme

--
Don't want these emails? Unsubscribe: https://hooks.example.com/unsubscribe/{{id}}
"""


def _mailmerge() -> str:
    found = shutil.which("mailmerge")
    if not found:
        raise NotAvailable(PEER_MISSING)
    return found


def _mailmerge_files(ctx: Context, n: int, port: int) -> list[str]:
    folder = ctx.path(f"mailmerge-{n}-{port}")
    folder.mkdir(exist_ok=True)
    (folder / "template.txt").write_text(MAILMERGE_TEMPLATE, encoding="utf-8")
    shutil.copyfile(ctx.customers_csv(n, ("email",)), folder / "database.csv")
    (folder / "server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\nratelimit = 0\n",
        encoding="utf-8",
    )
    return [
        "--template",
        str(folder / "template.txt"),
        "--database",
        str(folder / "database.csv"),
        "--config",
        str(folder / "server.conf"),
        "--no-limit",
        "--output-format",
        "raw",
    ]


def _ratio_row(
    row: Row, ours: list[float], theirs: list[float], peer: str, target: float, how: str
) -> Row:
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    row.values = [ours_median / theirs_median]
    low, high = min(ours) / max(theirs), max(ours) / min(theirs)
    row.note = join(
        f"outreach {ours_median:,.0f} msg/s vs {peer} {theirs_median:,.0f} msg/s "
        f"(ratio range {low:.1f}-{high:.1f}x)",
        how,
    )
    row.met = row.values[0] >= target
    return row


def bench_render_vs_mailmerge(ctx: Context) -> Row:
    n = ctx.sizes["mm_render"]
    row = Row(
        "render_vs_mailmerge",
        "render: outreach / mailmerge --dry-run",
        f"{fmt_n(n)} messages (peer)",
        "x faster",
        f">= 10x, >= {CEILING_SHARE} of bare Jinja2",
    )
    command = _mailmerge()
    args = _mailmerge_files(ctx, n, 25)
    rates: list[float] = []

    def once(i: int) -> float:
        child = run_child([command, "--dry-run", *args], timeout=ctx.timeout, keep_stdout=False)
        check(child)
        rates.append(n / child.wall)
        return n / child.wall

    repeat(ctx, Row("mm", ""), once)
    ours = ctx.cache.get("render_rates") or [render_rate(ctx, Row("r", ""))]
    ceiling = _jinja_ceiling(ctx)
    _ratio_row(
        row,
        ours,
        rates,
        "mailmerge",
        10,
        "outreach: render_100k's Renderer loop; mailmerge: whole CLI run",
    )
    share = statistics.median(ours) / ceiling
    row.note = join(
        row.note,
        f"ceiling: the same two files through a bare jinja2.Environment (no sandbox, no "
        f"limits), {ceiling:,.0f} msg/s; outreach at {share:.2f} of it",
    )
    row.met = bool(row.met) and share >= CEILING_SHARE
    return row


def _jinja_ceiling(ctx: Context) -> float:
    """Bare Jinja2 on render_100k's messages, pinned to one core as it is (best of the runs)."""
    n = ctx.sizes["render"]
    ws = ctx.cache.get("ws_render") or ctx.new_workspace("render")
    ctx.cache["ws_render"] = ws
    rates = []
    for _ in range(ctx.runs):
        result = json_out(
            check(
                run_child(
                    [sys.executable, "-m", "benchmarks.children", "jinja-ceiling", str(ws), str(n)],
                    timeout=ctx.timeout,
                )
            )
        )
        rates.append(result["count"] / result["seconds"])
    return max(rates)


def bench_smtp_vs_mailmerge(ctx: Context) -> Row:
    n = ctx.sizes["mm_smtp"]
    row = Row(
        "smtp_vs_mailmerge",
        "SMTP send: outreach / mailmerge",
        f"{fmt_n(n)} messages (peer)",
        "x faster",
        f">= 5x, >= {CEILING_SHARE} of bare aiosmtplib",
    )
    command = _mailmerge()
    with LoopbackServer("smtp") as server:
        args = _mailmerge_files(ctx, n, server.port)
        rates: list[float] = []

        def once(i: int) -> float:
            server.stats()
            child = run_child(
                [command, "--no-dry-run", *args], timeout=ctx.timeout, keep_stdout=False
            )
            check(child)
            rate = server_rate(server.stats())
            rates.append(rate)
            return rate

        repeat(ctx, Row("mm", ""), once)
        seed = smtp_seed(ctx, server)
        smtp_n = ctx.sizes["smtp"]
        # the same emails as outreach's (made from the smtp row's workspace): a lighter
        # message would cost the server less and lift the ceiling above any sender of these
        measured = _ceiling_share(
            ctx,
            server,
            lambda i: send_to_server(ctx, row, server, seed, f"smtp-peer-{i}", smtp_n)[0],
            "smtp-ceiling",
            str(server.port),
            smtp_n,
            8,
            str(seed),
        )
    _ratio_row(
        row,
        measured.ours,
        rates,
        "mailmerge",
        5,
        "both as seen by the same aiosmtpd server, first to last message",
    )
    share = statistics.median(measured.shares)
    row.note = join(
        row.note,
        measured.note("bare aiosmtplib sending the same emails over the same 8 connections"),
        "outreach renders and records each; the ceiling is "
        f"{statistics.median(measured.ceilings) / statistics.median(rates):.1f}x mailmerge",
    )
    row.met = bool(row.met) and share >= CEILING_SHARE
    return row


def bench_webhooks_vs_apprise(ctx: Context) -> Row:
    n = ctx.sizes["webhooks"]
    row = Row(
        "webhooks_vs_apprise",
        "JSON webhooks: outreach webhook / bare httpx (ceiling), apprise json:// beside",
        f"{fmt_n(n)} notifications",
        "of ceiling",
        f">= {CEILING_SHARE} of bare httpx",
    )
    try:
        import apprise  # noqa: F401
    except ImportError:
        raise NotAvailable(PEER_MISSING) from None
    with LoopbackServer("json") as server:
        channel = {
            "app": (
                f'provider = "webhook"\nurl = "http://127.0.0.1:{server.port}'
                '/hooks/outreach"\nsecret_env = "BENCH_WEBHOOK_SECRET"\n'
                "concurrency = 64\n"
            )
        }
        seed = ctx.seeded("webhook", n, channels=channel, customer_channels=("app",))
        for folder in (seed / "templates").iterdir():
            sms = folder / "sms.j2"
            if sms.exists():
                shutil.copyfile(sms, folder / "app.j2")
        theirs: list[float] = []

        def apprise_once(i: int) -> float:
            server.stats()
            child = check(
                run_child(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.children",
                        "apprise",
                        f"json://127.0.0.1:{server.port}/hooks/apprise",
                        str(n),
                    ],
                    timeout=ctx.timeout,
                )
            )
            ok = json_out(child).get("ok")
            if ok != n:
                row.note = join(row.note, f"apprise: {ok} of {n} ok")
            theirs.append(server_rate(server.stats()))
            return theirs[-1]

        repeat(ctx, Row("apprise", ""), apprise_once)
        measured = _ceiling_share(
            ctx,
            server,
            lambda i: send_to_server(ctx, row, server, seed, f"webhook-{i}", n)[0],
            "httpx-ceiling",
            f"http://127.0.0.1:{server.port}/hooks/bare",
            n,
            64,
        )
        row.values = list(measured.ours)
    note = row.note
    peer = Row("apprise", "")
    _ratio_row(
        peer,
        measured.ours,
        theirs,
        "apprise",
        0,
        "all as seen by the same JSON endpoint; outreach signs each (Standard Webhooks)",
    )
    share = statistics.median(measured.shares)
    # the figure is the ceiling ratio: "10x apprise" is retired (bare httpx itself is ~4x)
    row.values = [share]
    row.note = join(
        f"outreach {statistics.median(measured.ours):,.0f} msg/s",
        measured.note("bare httpx POSTs to the same endpoint (64 at a time)"),
        f"{peer.values[0]:.1f}x apprise ({statistics.median(theirs):,.0f} msg/s); the ceiling "
        f"is {statistics.median(measured.ceilings) / statistics.median(theirs):.1f}x apprise",
        peer.note.split("; ", 1)[1] if "; " in peer.note else "",
        note,
    )
    row.met = share >= CEILING_SHARE
    return row


@dataclass
class Shares:
    """outreach's rates and the bare client's, run by run, with how busy the server was
    behind each (its CPU share, first to last message)."""

    ours: list[float] = field(default_factory=list)
    ceilings: list[float] = field(default_factory=list)
    busy_ours: list[float] = field(default_factory=list)
    busy_ceilings: list[float] = field(default_factory=list)

    @property
    def shares(self) -> list[float]:
        return [a / b for a, b in zip(self.ours, self.ceilings, strict=True)]

    def note(self, what: str) -> str:
        shares = self.shares
        return (
            f"ceiling: {what}, nothing else, {statistics.median(self.ceilings):,.0f} msg/s "
            f"({min(self.ceilings):,.0f}-{max(self.ceilings):,.0f}); outreach at "
            f"{statistics.median(shares):.2f} of it, run by run "
            f"({min(shares):.2f}-{max(shares):.2f}); the server was on the CPU "
            f"{statistics.median(self.busy_ceilings):.0%} of the time behind the bare client, "
            f"{statistics.median(self.busy_ours):.0%} behind outreach"
        )


def _ceiling_share(
    ctx: Context,
    server: LoopbackServer,
    ours_once: Callable[[int], float],
    job: str,
    target: str,
    n: int,
    concurrency: int,
    *extra: str,
) -> Shares:
    """outreach's rates and the bare client's (``job`` of ``benchmarks.children``), run by
    run: the bare client, then outreach, so that each ratio is of two runs a few seconds
    apart (this machine's speed drifts by half within minutes, and a best ceiling against
    a median of runs measured minutes earlier says more of the drift)."""
    out = Shares()
    for i in range(ctx.runs):
        server.stats()
        child = check(
            run_child(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.children",
                    job,
                    target,
                    str(n),
                    str(concurrency),
                    *extra,
                ],
                timeout=ctx.timeout,
            )
        )
        ok = json_out(child).get("ok")
        if ok != n:
            raise ChildFailed(f"{job}: {ok} of {n} accepted")
        stats = server.stats()
        out.ceilings.append(server_rate(stats))
        out.busy_ceilings.append(server_busy(stats))
        out.ours.append(ours_once(i))  # its last stats are outreach's
        out.busy_ours.append(server_busy(server.last_stats))
    return out
