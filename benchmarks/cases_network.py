"""Benchmarks over loopback: Twilio-like HTTP, the rate limiter, SMTP, and ``serve``.

Each server runs in a process of its own (``benchmarks.servers``) and counts what it
accepts with a machine-wide monotonic clock, so a sending rate is the one the server saw,
first to last request, without the run's planning phase; the end-to-end rate is noted.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from . import data
from .context import (
    LATER,
    SECRET_ENV,
    TWILIO_FROM,
    TWILIO_SID,
    TWILIO_TOKEN,
    Context,
    check,
    count_sent,
    fmt_n,
    join,
    json_out,
    max_rss,
    repeat,
    server_rate,
    sms_twilio,
)
from .harness import (
    Background,
    ChildFailed,
    LoopbackServer,
    Row,
    copy_workspace,
    free_port,
    outreach,
    run_child,
)

# -- providers over loopback -----------------------------------------------------------------


def send_to_server(
    ctx: Context, row: Row, server: LoopbackServer, seed: Path, name: str, n: int
) -> tuple[float, float]:
    """One ``run nps`` against ``server``: (server-side msg/s, end-to-end msg/s)."""
    server.stats()  # reset
    ws = copy_workspace(seed, ctx.path(name))
    child = check(
        run_child(outreach(ws, "run", "nps", "--json"), timeout=ctx.timeout, env=SECRET_ENV)
    )
    result = json_out(child)
    stats = server.stats()
    max_rss(row, child.rss_mb)
    if count_sent(result) != n or stats["count"] != n:
        row.note = join(
            row.note,
            f"sent {count_sent(result)}, server got {stats['count']} "
            f"of {n}; problems: {result.get('problems', [])[:1]}",
        )
    return server_rate(stats), n / child.wall


def bench_twilio_20k(ctx: Context) -> Row:
    n = ctx.sizes["twilio"]
    row = Row(
        "twilio_20k",
        "SMS to a loopback Twilio emulator, concurrency 64",
        f"{fmt_n(n)} messages",
        "msg/s",
        ">= 1,500 msg/s",
    )
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as server:
        seed = ctx.seeded("twilio", n, channels=sms_twilio(server.port), customer_channels=("sms",))
        ends: list[float] = []

        def once(i: int) -> float:
            rate, end_to_end = send_to_server(ctx, row, server, seed, f"twilio-{i}", n)
            ends.append(end_to_end)
            return rate

        repeat(ctx, row, once)
    row.note = join(
        row.note,
        "rate seen by the server (first to last request); end to end "
        f"incl. planning {statistics.median(ends):,.0f} msg/s",
    )
    row.met = (row.median or 0) >= 1_500
    return row


def bench_rate_200(ctx: Context) -> Row:
    n = ctx.sizes["rate"]
    row = Row(
        "rate_200",
        'configured rate = "200/s": measured rate',
        f"{fmt_n(n)} messages",
        "msg/s",
        "200/s ± 5%",
    )
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as server:
        seed = ctx.seeded(
            "rate", n, channels=sms_twilio(server.port, rate="200/s"), customer_channels=("sms",)
        )
        repeat(ctx, row, lambda i: send_to_server(ctx, row, server, seed, f"rate-{i}", n)[0])
    row.note = join(row.note, "rate seen by the server, first to last request")
    row.met = bool(row.values) and all(190 <= v <= 210 for v in row.values)
    return row


def _smtp_channel(port: int) -> dict[str, str]:
    return {
        "email": (
            f'provider = "smtp"\nhost = "127.0.0.1"\nport = {port}\n'
            'security = "none"\nfrom = "Acme <hello@example.com>"\nconcurrency = 8\n'
        )
    }


def smtp_seed(ctx: Context, server: LoopbackServer) -> Path:
    """The smtp row's workspace: its customers, imported once a session."""
    n = ctx.sizes["smtp"]
    return ctx.seeded("smtp", n, channels=_smtp_channel(server.port), customer_channels=("email",))


def smtp_rates(ctx: Context, row: Row, server: LoopbackServer) -> list[float]:
    n = ctx.sizes["smtp"]
    seed = smtp_seed(ctx, server)
    repeat(ctx, row, lambda i: send_to_server(ctx, row, server, seed, f"smtp-{i}", n)[0])
    return row.values


def bench_smtp(ctx: Context) -> Row:
    n = ctx.sizes["smtp"]
    row = Row(
        "smtp",
        "email over SMTP to loopback aiosmtpd (8 connections)",
        f"{fmt_n(n)} messages",
        "msg/s",
        ">= 500 msg/s",
    )
    with LoopbackServer("smtp") as server:
        smtp_rates(ctx, row, server)
    row.note = join(row.note, "rate seen by the server, first to last message")
    row.met = (row.median or 0) >= 500
    return row


# -- inbound ---------------------------------------------------------------------------------


def twilio_webhooks(
    run: int, port: int, people: list[data.Customer], texts: list[str], n: int
) -> list[bytes]:
    """``n`` signed Twilio inbound messages to ``port``, from ``people`` and with ``texts``
    in turn, their ids unique to this ``run`` (signed before any clock starts)."""
    from .loadgen import signed_requests

    forms = [
        {
            "MessageSid": f"SM{run:04d}{k:028x}",
            "AccountSid": TWILIO_SID,
            "From": people[k % len(people)].phone,
            "To": TWILIO_FROM,
            "Body": texts[k % len(texts)],
            "NumMedia": "0",
            "SmsStatus": "received",
        }
        for k in range(n)
    ]
    return signed_requests("127.0.0.1", port, "/webhooks/sms", TWILIO_TOKEN, forms)


def finish_run(runner: Background | None, timeout: float) -> None:
    """Let the ``run`` sent beside serve end by itself (up to ``timeout``), then stop it."""
    if runner is None:
        return
    deadline = time.monotonic() + timeout
    while runner.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    runner.stop()


def wait_healthy(port: int, serve: Background, timeout: float = 30.0) -> None:
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
    from .loadgen import load

    n = ctx.sizes["serve"]
    customers_n = ctx.sizes["serve_run"]
    row = Row(
        "serve_webhooks",
        "serve: signed Twilio webhooks, 32 connections, run beside",
        f"{fmt_n(n)} webhooks",
        "webhooks/s",
        ">= 800 /s, none lost",
    )
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as twilio:
        seed = ctx.seeded("serve", customers_n, channels=sms_twilio(twilio.port), public_url=public)
        people = list(data.customers(customers_n))
        texts = ["9", "8/10", "Thanks!", "Can someone call me?", "10", "negen"]

        def once(i: int) -> float:
            ws = copy_workspace(seed, ctx.path(f"serve-{i}"))
            requests = twilio_webhooks(i, port, people, texts, n)
            serve = Background(
                outreach(ws, "serve", "--port", str(port), now=LATER), env=SECRET_ENV
            )
            runner: Background | None = None
            try:
                wait_healthy(port, serve)
                runner = Background(outreach(ws, "run", "nps", "--json"), env=SECRET_ENV)
                result = load("127.0.0.1", port, requests, connections=32, timeout=ctx.timeout)
            finally:
                finish_run(runner, ctx.timeout)
                serve.stop(grace=15)
                max_rss(row, serve.rss_mb)
            stored = _count_replies(ws)
            if result.ok != n or stored != n or result.errors:
                row.note = join(
                    row.note,
                    f"answered 2xx {result.ok}/{n}, stored {stored}, "
                    f"statuses {result.statuses}, errors {result.errors[:1]}",
                )
            return result.ok / result.seconds

        repeat(ctx, row, once)
    row.note = join(
        row.note,
        f"serve's peak RSS shown; run nps to {fmt_n(customers_n)} "
        "customers (Twilio emulator) at the same time",
    )
    row.met = (row.median or 0) >= 800 and "stored" not in row.note
    return row


def _count_replies(ws: Path) -> int:
    out = ws / "replies-count.jsonl"
    child = check(
        run_child(
            outreach(ws, "export", "replies", "--format", "jsonl", "-o", str(out), now=LATER),
            timeout=600,
        )
    )
    del child
    with out.open("rb") as f:
        return sum(1 for _ in f)
