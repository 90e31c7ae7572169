"""The benchmarks: one function per figure of issues 2-7 and 9, each returning a ``Row``.

Every benchmark works in a fresh workspace made by ``outreach init`` under the session's
temporary folder and drives the real CLI in a child process (``python -m outreach -w WS
--now NOW ...``), measured by ``harness.run_child``. Set-up (creating a workspace, importing
the customers a run needs) is not measured. Prepared workspaces are kept per session and
copied for each measured run, so that three runs of ``run nps`` start from the same state.

Sizes depend on the mode: ``full`` uses the sizes of the issues, ``quick`` smaller ones
(one run each) for a smoke check in under two minutes, ``tiny`` (hidden, for the test
suite) the smallest that still exercises each path. A row's ``size`` always says what was
measured, so a quick figure is never mistaken for a full one.

A benchmark whose command is missing reports "not available: ..." (the CLI answers "No
such command"); one whose child fails or overruns its time budget reports that, with the
peak memory reached; neither stops the others.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data
from .harness import (
    REPO,
    Background,
    Child,
    ChildFailed,
    LoopbackServer,
    NotAvailable,
    Row,
    copy_workspace,
    free_port,
    outreach,
    run_child,
)

TWILIO_SID = "AC" + "be7c4a11" * 4
TWILIO_TOKEN = "bench-twilio-token-5d1e"
TWILIO_FROM = "+3197010000000"
WEBHOOK_SECRET = "whsec_YmVuY2htYXJrLXdlYmhvb2stc2lnbmluZy1rZXk="
SECRET_ENV = {"BENCH_TWILIO_TOKEN": TWILIO_TOKEN, "BENCH_WEBHOOK_SECRET": WEBHOOK_SECRET}
# Replies and everything after the campaign happen a little later the same afternoon.
LATER = "2026-12-01T16:00:00Z"

SIZES: dict[str, dict[str, int]] = {
    "full": {
        "startup": 10, "import_100k": 100_000, "million": 1_000_000, "render": 100_000,
        "run_100k": 100_000, "twilio": 20_000, "rate": 1_000, "smtp": 5_000,
        "serve": 20_000, "serve_run": 20_000, "ingest": 100_000, "export": 1_000_000,
        "export_customers": 100_000, "mm_render": 5_000, "mm_smtp": 1_000, "webhooks": 3_000,
    },
    "quick": {
        "startup": 3, "import_100k": 10_000, "million": 5_000, "render": 10_000,
        "run_100k": 2_000, "twilio": 2_000, "rate": 300, "smtp": 500,
        "serve": 2_000, "serve_run": 1_000, "ingest": 2_000, "export": 20_000,
        "export_customers": 2_000, "mm_render": 500, "mm_smtp": 200, "webhooks": 300,
    },
    "tiny": {
        "startup": 1, "import_100k": 200, "million": 200, "render": 200,
        "run_100k": 100, "twilio": 100, "rate": 60, "smtp": 50,
        "serve": 100, "serve_run": 50, "ingest": 100, "export": 500,
        "export_customers": 100, "mm_render": 50, "mm_smtp": 20, "webhooks": 50,
    },
}
# Seconds a single measured child may take before it is killed, and the time after which a
# benchmark stops repeating (it then reports fewer runs and says why).
CHILD_TIMEOUT = {"full": 360.0, "quick": 60.0, "tiny": 60.0}
REPEAT_BUDGET = {"full": 240.0, "quick": 30.0, "tiny": 30.0}


@dataclass
class Context:
    """One benchmark session: mode, sizes, its temporary folder and shared set-up."""

    mode: str
    root: Path
    log: Callable[[str], None] = lambda message: None
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        return SIZES[self.mode]

    @property
    def runs(self) -> int:
        return 3 if self.mode == "full" else 1

    @property
    def timeout(self) -> float:
        return CHILD_TIMEOUT[self.mode]

    def path(self, name: str) -> Path:
        return self.root / name

    # -- data and workspaces ----------------------------------------------------------------

    def customers_csv(self, n: int, channels: tuple[str, ...] = data.CHANNELS) -> Path:
        key = f"customers-{n}-{'-'.join(channels)}.csv"
        target = self.path(key)
        if not target.exists():
            data.write_customers_csv(target, n, channels=channels)
        return target

    def replies_jsonl(self, n: int, customer_count: int) -> Path:
        target = self.path(f"replies-{n}-{customer_count}.jsonl")
        if not target.exists():
            data.write_replies_jsonl(target, n, customer_count)
        return target

    def new_workspace(self, name: str, channels: dict[str, str] | None = None,
                      public_url: str | None = None) -> Path:
        """``outreach init`` + configuration: no rate limits, channel overrides applied."""
        ws = self.path(name)
        if ws.exists():
            shutil.rmtree(ws)
        run_child([sys.executable, "-m", "outreach", "init", str(ws)], timeout=60).check()
        configure(ws, channels or {}, public_url)
        return ws

    def seeded(self, key: str, n: int, *, channels: dict[str, str] | None = None,
               customer_channels: tuple[str, ...] = data.CHANNELS,
               public_url: str | None = None) -> Path:
        """A prepared workspace with ``n`` imported customers (made once per session)."""
        cached = self.cache.get(("seed", key, n))
        if cached is not None:
            return Path(cached)
        self.log(f"  set-up: importing {n:,} customers for {key}")
        ws = self.new_workspace(f"seed-{key}-{n}", channels, public_url)
        imported = run_child(
            outreach(ws, "customers", "import", str(self.customers_csv(n, customer_channels)),
                     "--json"),
            timeout=max(self.timeout, 1800.0),
        )
        check(imported)
        self.cache[("seed", key, n)] = ws
        return ws


def configure(ws: Path, channels: dict[str, str], public_url: str | None) -> None:
    """Remove every rate limit, raise concurrency, replace or add channel sections."""
    toml = ws / "outreach.toml"
    text = toml.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^rate = .*\n", "", text)
    text = re.sub(r"(?m)^concurrency = \d+", "concurrency = 64", text)
    for name, body in channels.items():
        section = f"[channels.{name}]\n{body.strip()}\n\n"
        pattern = re.compile(rf"(?ms)^\[channels\.{re.escape(name)}\]\n.*?(?=^\[|\Z)")
        found = pattern.search(text)
        if found:
            text = text[: found.start()] + section + text[found.end() :]
        else:
            text = text.replace("[server]", section + "[server]", 1)
    if public_url:
        text = text.replace("[server]\n", f'[server]\npublic_url = "{public_url}"\n', 1)
    toml.write_text(text, encoding="utf-8")
    for campaign in (ws / "campaigns").glob("*.toml"):
        source = campaign.read_text(encoding="utf-8")
        campaign.write_text(re.sub(r"(?m)^rate = .*\n", "", source), encoding="utf-8")


def check(child: Child) -> Child:
    """``child.check()``, with a missing command turned into "not available"."""
    if child.returncode == 2 and "No such command" in child.stderr:
        raise NotAvailable(child.stderr.strip().splitlines()[-1][:200])
    return child.check()


def json_out(child: Child) -> Any:
    try:
        return json.loads(child.stdout)
    except ValueError as exc:
        raise ChildFailed(f"not JSON on stdout: {child.stdout[:200]!r}") from exc


def repeat(ctx: Context, row: Row, once: Callable[[int], float]) -> None:
    """Call ``once`` up to ``ctx.runs`` times within the repeat budget; values into ``row``."""
    started = time.monotonic()
    for i in range(ctx.runs):
        row.values.append(once(i))
        spent = time.monotonic() - started
        if i + 1 < ctx.runs and spent > REPEAT_BUDGET[ctx.mode]:
            row.note = join(row.note, f"{i + 1} run(s): stopped repeating after {spent:.0f} s")
            break


def join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def max_rss(row: Row, rss: float) -> None:
    row.rss_mb = max(row.rss_mb or 0.0, rss)


def fmt_n(n: int) -> str:
    return f"{n:,}"


def _count_sent(result: Any) -> int:
    return int(result.get("sent", 0)) if isinstance(result, dict) else 0


# -- start-up and import ---------------------------------------------------------------------


def bench_startup(ctx: Context) -> Row:
    row = Row("startup", "CLI start-up: outreach --help", "1 process", "s", "< 0.25 s")
    runs = ctx.sizes["startup"]
    run_child([sys.executable, "-m", "outreach", "--help"], timeout=60).check()  # warm caches
    for _ in range(runs):
        child = run_child([sys.executable, "-m", "outreach", "--help"], timeout=60).check()
        row.values.append(child.wall)
        max_rss(row, child.rss_mb)
    row.note = f"{runs} runs; includes Python interpreter start-up"
    row.met = row.median is not None and row.median < 0.25
    return row


def _import(ctx: Context, row: Row, n: int, keep_as: str | None) -> float:
    source = ctx.customers_csv(n)
    ws = ctx.new_workspace(f"import-{n}")
    child = check(run_child(outreach(ws, "customers", "import", str(source), "--json"),
                            timeout=ctx.timeout))
    result = json_out(child)
    if result.get("imported") != n:
        row.note = join(row.note, f"imported {result.get('imported')} of {n}")
    max_rss(row, child.rss_mb)
    if keep_as:
        ctx.cache[keep_as] = ws
    return n / child.wall


def bench_import_100k(ctx: Context) -> Row:
    n = ctx.sizes["import_100k"]
    row = Row("import_100k", "customers import (CSV, phone+email validation)",
              f"{fmt_n(n)} rows", "rows/s", ">= 15,000 rows/s")
    repeat(ctx, row, lambda i: _import(ctx, row, n, None))
    row.met = (row.median or 0) >= 15_000
    return row


def bench_import_1m(ctx: Context) -> Row:
    n = ctx.sizes["million"]
    row = Row("import_1m", "customers import, streamed: peak memory", f"{fmt_n(n)} rows",
              "MB RSS", "< 200 MB")
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
    child = check(run_child([sys.executable, "-m", "benchmarks.children", "render", str(ws),
                             str(n)], timeout=ctx.timeout))
    result = json_out(child)
    max_rss(row, child.rss_mb)
    return float(result["count"] / result["seconds"])


def bench_render_100k(ctx: Context) -> Row:
    n = ctx.sizes["render"]
    row = Row("render_100k", "render NPS email (text+HTML), Renderer, one core",
              f"{fmt_n(n)} messages", "msg/s", ">= 40,000 msg/s")
    repeat(ctx, row, lambda i: render_rate(ctx, row))
    row.note = join(row.note, "times the render loop only (compiled once, pinned to one CPU)")
    row.met = (row.median or 0) >= 40_000
    ctx.cache["render_rates"] = list(row.values)
    return row


# -- run (plan + render + write outbox) -----------------------------------------------------


def _run_once(ctx: Context, row: Row, seed: Path, name: str, n: int) -> float:
    ws = copy_workspace(seed, ctx.path(name))
    child = check(run_child(outreach(ws, "run", "nps", "--json"), timeout=ctx.timeout))
    sent = _count_sent(json_out(child))
    if sent != n:
        row.note = join(row.note, f"sent {sent} of {n}")
    else:
        ctx.cache["ws_sent"] = (ws, n)  # a fully sent occurrence, for rerun's fallback
    max_rss(row, child.rss_mb)
    return n / child.wall


def bench_run_100k(ctx: Context) -> Row:
    n = ctx.sizes["run_100k"]
    row = Row("run_100k", "run nps: plan + render + write outbox, end to end",
              f"{fmt_n(n)} customers", "deliveries/s", ">= 10,000 /s")
    seed = ctx.seeded("outbox", n)
    repeat(ctx, row, lambda i: _run_once(ctx, row, seed, f"run-{n}-{i}", n))
    row.met = (row.median or 0) >= 10_000
    return row


def bench_run_1m(ctx: Context) -> Row:
    n = ctx.sizes["million"]
    row = Row("run_1m", "run nps end to end: peak memory", f"{fmt_n(n)} customers",
              "MB RSS", "< 300 MB")
    seed = million_customers(ctx)
    ws = copy_workspace(seed, ctx.path(f"run-million-{n}"))
    ctx.cache["ws_million_run"] = ws
    child = run_child(outreach(ws, "run", "nps", "--json"), timeout=ctx.timeout)
    row.rss_mb = child.rss_mb
    row.values = [child.rss_mb]
    if child.timed_out:
        row.note = (f"did not finish in {child.wall:.0f} s (< {n / child.wall:,.0f} "
                    "deliveries/s); peak RSS so far")
        row.met = False if child.rss_mb >= 300 else None
        return row
    check(child)
    sent = _count_sent(json_out(child))
    ctx.cache["million_run_complete"] = sent == n
    row.note = join("1 run" if ctx.mode == "full" else "",
                    f"{n / child.wall:,.0f} deliveries/s ({child.wall:.0f} s)",
                    f"sent {sent} of {n}" if sent != n else "")
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
    row = Row("rerun_1m", "second run of the same occurrence (sends nothing)",
              f"{fmt_n(n)} deliveries", "s", "< 5 s")
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
        sent = _count_sent(json_out(child))
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

    def once(i: int) -> float:
        child = check(run_child(outreach(Path(ws), "report", "nps", "--json", now=LATER),
                                timeout=ctx.timeout))
        planned = json_out(child).get("planned")
        if planned != n:
            row.note = join(row.note, f"report says planned={planned}")
        max_rss(row, child.rss_mb)
        return child.wall

    repeat(ctx, row, once)
    if not ctx.cache.get("million_run_complete"):
        row.note = join(row.note, "on the partly sent run_1m workspace")
    row.met = row.median is not None and row.median < 2
    return row


# -- providers over loopback -----------------------------------------------------------------


def _sms_twilio(port: int, rate: str | None = None, concurrency: int = 64) -> dict[str, str]:
    body = (
        f'provider = "twilio"\naccount_sid = "{TWILIO_SID}"\n'
        f'auth_token_env = "BENCH_TWILIO_TOKEN"\nfrom = "{TWILIO_FROM}"\n'
        f'base_url = "http://127.0.0.1:{port}"\nconcurrency = {concurrency}\n'
    )
    if rate:
        body += f'rate = "{rate}"\n'
    return {"sms": body}


def _send_to_server(ctx: Context, row: Row, server: LoopbackServer, seed: Path, name: str,
                    n: int) -> tuple[float, float]:
    """One ``run nps`` against ``server``: (server-side msg/s, end-to-end msg/s)."""
    server.stats()  # reset
    ws = copy_workspace(seed, ctx.path(name))
    child = check(run_child(outreach(ws, "run", "nps", "--json"), timeout=ctx.timeout,
                            env=SECRET_ENV))
    result = json_out(child)
    stats = server.stats()
    max_rss(row, child.rss_mb)
    if _count_sent(result) != n or stats["count"] != n:
        row.note = join(row.note, f"sent {_count_sent(result)}, server got {stats['count']} "
                        f"of {n}; problems: {result.get('problems', [])[:1]}")
    span = stats["last"] - stats["first"]
    server_rate = (stats["count"] - 1) / span if span > 0 and stats["count"] > 1 else 0.0
    return server_rate, n / child.wall


def bench_twilio_20k(ctx: Context) -> Row:
    n = ctx.sizes["twilio"]
    row = Row("twilio_20k", "SMS to a loopback Twilio emulator, concurrency 64",
              f"{fmt_n(n)} messages", "msg/s", ">= 1,500 msg/s")
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as server:
        seed = ctx.seeded("twilio", n, channels=_sms_twilio(server.port),
                          customer_channels=("sms",))
        ends: list[float] = []

        def once(i: int) -> float:
            rate, end_to_end = _send_to_server(ctx, row, server, seed, f"twilio-{i}", n)
            ends.append(end_to_end)
            return rate

        repeat(ctx, row, once)
    row.note = join(row.note, "rate seen by the server (first to last request); end to end "
                    f"incl. planning {statistics.median(ends):,.0f} msg/s")
    row.met = (row.median or 0) >= 1_500
    return row


def bench_rate_200(ctx: Context) -> Row:
    n = ctx.sizes["rate"]
    row = Row("rate_200", 'configured rate = "200/s": measured rate',
              f"{fmt_n(n)} messages", "msg/s", "200/s ± 5%")
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as server:
        seed = ctx.seeded("rate", n, channels=_sms_twilio(server.port, rate="200/s"),
                          customer_channels=("sms",))
        repeat(ctx, row, lambda i: _send_to_server(ctx, row, server, seed, f"rate-{i}", n)[0])
    row.note = join(row.note, "rate seen by the server, first to last request")
    row.met = bool(row.values) and all(190 <= v <= 210 for v in row.values)
    return row


def _smtp_channel(port: int) -> dict[str, str]:
    return {"email": (f'provider = "smtp"\nhost = "127.0.0.1"\nport = {port}\n'
                      'security = "none"\nfrom = "Acme <hello@example.com>"\nconcurrency = 8\n')}


def smtp_rates(ctx: Context, row: Row, server: LoopbackServer) -> list[float]:
    n = ctx.sizes["smtp"]
    seed = ctx.seeded("smtp", n, channels=_smtp_channel(server.port),
                      customer_channels=("email",))
    repeat(ctx, row, lambda i: _send_to_server(ctx, row, server, seed, f"smtp-{i}", n)[0])
    return row.values


def bench_smtp(ctx: Context) -> Row:
    n = ctx.sizes["smtp"]
    row = Row("smtp", "email over SMTP to loopback aiosmtpd (8 connections)",
              f"{fmt_n(n)} messages", "msg/s", ">= 500 msg/s")
    with LoopbackServer("smtp") as server:
        smtp_rates(ctx, row, server)
    ctx.cache["smtp_rates"] = list(row.values)
    row.note = join(row.note, "rate seen by the server, first to last message")
    row.met = (row.median or 0) >= 500
    return row


# -- inbound ---------------------------------------------------------------------------------


def _wait_healthy(port: int, serve: Background, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.proc.poll() is not None:
            err = serve.proc.stderr.read()[-400:] if serve.proc.stderr else ""
            raise ChildFailed(f"outreach serve exited: {err.strip()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise ChildFailed("outreach serve did not answer /healthz in time")


def bench_serve_webhooks(ctx: Context) -> Row:
    from .loadgen import load, signed_requests

    n = ctx.sizes["serve"]
    customers_n = ctx.sizes["serve_run"]
    row = Row("serve_webhooks", "serve: signed Twilio webhooks, 32 connections, run beside",
              f"{fmt_n(n)} webhooks", "webhooks/s", ">= 800 /s, none lost")
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as twilio:
        seed = ctx.seeded("serve", customers_n, channels=_sms_twilio(twilio.port),
                          public_url=public)
        people = list(data.customers(customers_n))
        texts = ["9", "8/10", "Thanks!", "Can someone call me?", "10", "negen"]

        def once(i: int) -> float:
            ws = copy_workspace(seed, ctx.path(f"serve-{i}"))
            forms = [
                {"MessageSid": f"SM{i:04d}{k:028x}", "AccountSid": TWILIO_SID,
                 "From": people[k % len(people)].phone, "To": TWILIO_FROM,
                 "Body": texts[k % len(texts)], "NumMedia": "0", "SmsStatus": "received"}
                for k in range(n)
            ]
            requests = signed_requests("127.0.0.1", port, "/webhooks/sms", TWILIO_TOKEN, forms)
            serve = Background(outreach(ws, "serve", "--port", str(port), now=LATER),
                               env=SECRET_ENV)
            runner: Background | None = None
            try:
                _wait_healthy(port, serve)
                runner = Background(outreach(ws, "run", "nps", "--json"), env=SECRET_ENV)
                result = load("127.0.0.1", port, requests, connections=32,
                              timeout=ctx.timeout)
            finally:
                if runner is not None:
                    deadline = time.monotonic() + ctx.timeout
                    while runner.proc.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.1)
                    runner.stop()
                serve.stop(grace=15)
                max_rss(row, serve.rss_mb)
            stored = _count_replies(ws)
            if result.ok != n or stored != n or result.errors:
                row.note = join(row.note, f"answered 2xx {result.ok}/{n}, stored {stored}, "
                                f"statuses {result.statuses}, errors {result.errors[:1]}")
            return result.ok / result.seconds

        repeat(ctx, row, once)
    row.note = join(row.note, f"serve's peak RSS shown; run nps to {fmt_n(customers_n)} "
                    "customers (Twilio emulator) at the same time")
    row.met = (row.median or 0) >= 800 and "stored" not in row.note
    return row


def _count_replies(ws: Path) -> int:
    out = ws / "replies-count.jsonl"
    child = check(run_child(outreach(ws, "export", "replies", "--format", "jsonl", "-o", str(out),
                                     now=LATER), timeout=600))
    del child
    with out.open("rb") as f:
        return sum(1 for _ in f)


def bench_ingest_100k(ctx: Context) -> Row:
    n = ctx.sizes["ingest"]
    customers_n = ctx.sizes["export_customers"]
    row = Row("ingest_100k", "replies ingest (normalized JSONL)", f"{fmt_n(n)} messages",
              "msg/s", ">= 10,000 msg/s")
    seed = ctx.seeded("inbound", customers_n)
    source = ctx.replies_jsonl(n, customers_n)

    def once(i: int) -> float:
        ws = copy_workspace(seed, ctx.path(f"ingest-{i}"))
        child = check(run_child(outreach(ws, "replies", "ingest", str(source), "--json",
                                         now=LATER), timeout=ctx.timeout))
        result = json_out(child)
        if result.get("stored") != n:
            row.note = join(row.note, f"stored {result.get('stored')} of {n}")
        max_rss(row, child.rss_mb)
        return n / child.wall

    repeat(ctx, row, once)
    row.note = join(row.note, f"from {fmt_n(customers_n)} customers, no survey open: "
                    "answers become conversation messages")
    row.met = (row.median or 0) >= 10_000
    return row


def bench_export_1m(ctx: Context) -> Row:
    n = ctx.sizes["export"]
    customers_n = ctx.sizes["export_customers"]
    row = Row("export_1m", "export replies to CSV, streamed", f"{fmt_n(n)} replies", "rows/s",
              ">= 100,000 rows/s, < 100 MB")
    ws = copy_workspace(ctx.seeded("inbound", customers_n), ctx.path("export"))
    ctx.log(f"  set-up: storing {n:,} inbound messages")
    seeded = json_out(check(run_child(
        [sys.executable, "-m", "benchmarks.children", "seed-replies", str(ws), str(n),
         str(customers_n)], timeout=max(ctx.timeout, 1800.0))))
    rows = int(seeded["count"])

    def once(i: int) -> float:
        out = ctx.path(f"export-{i}.csv")
        child = check(run_child(outreach(ws, "export", "replies", "--format", "csv", "-o",
                                         str(out), now=LATER), timeout=ctx.timeout))
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


# -- peers -----------------------------------------------------------------------------------

PEER_MISSING = "peer not installed (pip install -e '.[bench]')"
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
    return ["--template", str(folder / "template.txt"), "--database",
            str(folder / "database.csv"), "--config", str(folder / "server.conf"),
            "--no-limit", "--output-format", "raw"]


def _ratio_row(row: Row, ours: list[float], theirs: list[float], peer: str, target: float,
               how: str) -> Row:
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    row.values = [ours_median / theirs_median]
    low, high = min(ours) / max(theirs), max(ours) / min(theirs)
    row.note = join(f"outreach {ours_median:,.0f} msg/s vs {peer} {theirs_median:,.0f} msg/s "
                    f"(ratio range {low:.1f}-{high:.1f}x)", how)
    row.met = row.values[0] >= target
    return row


def bench_render_vs_mailmerge(ctx: Context) -> Row:
    n = ctx.sizes["mm_render"]
    row = Row("render_vs_mailmerge", "render: outreach / mailmerge --dry-run",
              f"{fmt_n(n)} messages (peer)", "x faster", ">= 10x")
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
    return _ratio_row(row, ours, rates, "mailmerge", 10,
                      "outreach: render_100k's Renderer loop; mailmerge: whole CLI run")


def bench_smtp_vs_mailmerge(ctx: Context) -> Row:
    n = ctx.sizes["mm_smtp"]
    row = Row("smtp_vs_mailmerge", "SMTP send: outreach / mailmerge",
              f"{fmt_n(n)} messages (peer)", "x faster", ">= 5x")
    command = _mailmerge()
    with LoopbackServer("smtp") as server:
        args = _mailmerge_files(ctx, n, server.port)
        rates: list[float] = []

        def once(i: int) -> float:
            server.stats()
            child = run_child([command, "--no-dry-run", *args], timeout=ctx.timeout,
                              keep_stdout=False)
            check(child)
            stats = server.stats()
            span = stats["last"] - stats["first"]
            rate = (stats["count"] - 1) / span if span > 0 else 0.0
            rates.append(rate)
            return rate

        repeat(ctx, Row("mm", ""), once)
        ours = ctx.cache.get("smtp_rates")
        if not ours:
            ours = smtp_rates(ctx, Row("smtp", ""), server)
    return _ratio_row(row, ours, rates, "mailmerge", 5,
                      "both as seen by the same aiosmtpd server, first to last message")


def bench_webhooks_vs_apprise(ctx: Context) -> Row:
    n = ctx.sizes["webhooks"]
    row = Row("webhooks_vs_apprise", "JSON webhooks: outreach webhook / apprise json://",
              f"{fmt_n(n)} notifications", "x faster", ">= 10x")
    try:
        import apprise  # noqa: F401
    except ImportError:
        raise NotAvailable(PEER_MISSING) from None
    with LoopbackServer("json") as server:
        channel = {"app": (f'provider = "webhook"\nurl = "http://127.0.0.1:{server.port}'
                           '/hooks/outreach"\nsecret_env = "BENCH_WEBHOOK_SECRET"\n'
                           "concurrency = 64\n")}
        seed = ctx.seeded("webhook", n, channels=channel, customer_channels=("app",))
        for folder in (seed / "templates").iterdir():
            sms = folder / "sms.j2"
            if sms.exists():
                shutil.copyfile(sms, folder / "app.j2")
        ours: list[float] = []

        def outreach_once(i: int) -> float:
            ours.append(_send_to_server(ctx, row, server, seed, f"webhook-{i}", n)[0])
            return ours[-1]

        repeat(ctx, row, outreach_once)
        theirs: list[float] = []

        def apprise_once(i: int) -> float:
            server.stats()
            child = check(run_child([sys.executable, "-m", "benchmarks.children", "apprise",
                                     f"json://127.0.0.1:{server.port}/hooks/apprise", str(n)],
                                    timeout=ctx.timeout))
            if json_out(child).get("ok") != n:
                row.note = join(row.note, f"apprise: {json_out(child).get('ok')} of {n} ok")
            stats = server.stats()
            span = stats["last"] - stats["first"]
            theirs.append((stats["count"] - 1) / span if span > 0 else 0.0)
            return theirs[-1]

        repeat(ctx, Row("apprise", ""), apprise_once)
    note = row.note
    _ratio_row(row, ours, theirs, "apprise", 10,
               "both as seen by the same JSON endpoint; outreach signs each (Standard Webhooks)")
    row.note = join(row.note, note)
    return row


BENCHMARKS: dict[str, Callable[[Context], Row]] = {
    "startup": bench_startup,
    "import_100k": bench_import_100k,
    "import_1m": bench_import_1m,
    "render_100k": bench_render_100k,
    "run_100k": bench_run_100k,
    "run_1m": bench_run_1m,
    "rerun_1m": bench_rerun_1m,
    "report_1m": bench_report_1m,
    "twilio_20k": bench_twilio_20k,
    "rate_200": bench_rate_200,
    "smtp": bench_smtp,
    "serve_webhooks": bench_serve_webhooks,
    "ingest_100k": bench_ingest_100k,
    "export_1m": bench_export_1m,
    "render_vs_mailmerge": bench_render_vs_mailmerge,
    "smtp_vs_mailmerge": bench_smtp_vs_mailmerge,
    "webhooks_vs_apprise": bench_webhooks_vs_apprise,
}


# What a row says when its benchmark could not produce a figure.
TARGETS = {
    "startup": ("CLI start-up: outreach --help", "< 0.25 s"),
    "import_100k": ("customers import (CSV, phone+email validation)", ">= 15,000 rows/s"),
    "import_1m": ("customers import, streamed: peak memory", "< 200 MB"),
    "render_100k": ("render NPS email, Renderer, one core", ">= 40,000 msg/s"),
    "run_100k": ("run nps: plan + render + write outbox", ">= 10,000 /s"),
    "run_1m": ("run nps end to end: peak memory", "< 300 MB"),
    "rerun_1m": ("second run of the same occurrence", "< 5 s"),
    "report_1m": ("report nps --json", "< 2 s"),
    "twilio_20k": ("SMS to a loopback Twilio emulator, concurrency 64", ">= 1,500 msg/s"),
    "rate_200": ('configured rate = "200/s": measured rate', "200/s ± 5%"),
    "smtp": ("email over SMTP to loopback aiosmtpd", ">= 500 msg/s"),
    "serve_webhooks": ("serve: signed Twilio webhooks, 32 connections", ">= 800 /s"),
    "ingest_100k": ("replies ingest (normalized JSONL)", ">= 10,000 msg/s"),
    "export_1m": ("export replies to CSV, streamed", ">= 100,000 rows/s, < 100 MB"),
    "render_vs_mailmerge": ("render: outreach / mailmerge --dry-run", ">= 10x"),
    "smtp_vs_mailmerge": ("SMTP send: outreach / mailmerge", ">= 5x"),
    "webhooks_vs_apprise": ("JSON webhooks: outreach webhook / apprise json://", ">= 10x"),
}


def run_benchmark(ctx: Context, name: str) -> Row:
    """Run one benchmark; a failure becomes the row's status instead of an exception."""
    figure, target = TARGETS[name]
    try:
        return BENCHMARKS[name](ctx)
    except NotAvailable as exc:
        status = f"not available: {exc}"
    except ChildFailed as exc:
        status = f"failed: {exc}"
    except Exception as exc:
        status = f"error: {type(exc).__name__}: {exc}"[:300]
    return Row(name, figure, target=target, status=status)


__all__ = ["BENCHMARKS", "REPO", "Context", "run_benchmark"]
