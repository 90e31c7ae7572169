"""``serve`` replicas on PostgreSQL behind a load balancer, one of them killed half-way.

Two ``outreach serve`` processes on one PostgreSQL database behind ``benchmarks.proxy`` (a
round-robin TCP proxy), signed Twilio webhooks at 32 connections from
``benchmarks.loadgen`` retrying as providers do (a connection error or a 5xx: the same
request again), ``outreach run nps`` sending beside them, and the first replica SIGKILLed
once half of the webhooks have been answered. A request in flight at the kill may have
been stored without its answer arriving; its retry reaches the other replica, which must
see it as the duplicate it is.

The figure is webhooks answered per second, retries and the kill included; the row fails
unless every webhook was answered 2xx, every message is stored exactly once (0 lost, 0
stored twice), no survey delivery has two valid answers and each valid answer has one
follow-up.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from . import data
from .cases_network import finish_run, twilio_webhooks, wait_healthy
from .context import (
    LATER,
    SECRET_ENV,
    TWILIO_SID,
    TWILIO_TOKEN,
    Context,
    check,
    fmt_n,
    join,
    max_rss,
    repeat,
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
from .postgresql import fresh_database, rows, server_url

TEXTS = ["9", "8/10", "Thanks!", "Can someone call me?", "10", "negen", "STOP"]


def bench_serve_replicas(ctx: Context) -> Row:
    server_url()  # not available without a server: said before any set-up
    n = ctx.sizes["serve"]
    customers_n = ctx.sizes["serve_run"]
    row = Row(
        "serve_replicas",
        "serve: 2 replicas on PostgreSQL behind a round-robin proxy, one SIGKILLed "
        "half-way, run beside",
        f"{fmt_n(n)} webhooks",
        "webhooks/s",
        "0 lost, 0 stored twice",
    )
    proxy_port = free_port()
    public = f"http://127.0.0.1:{proxy_port}"
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as twilio:
        seed = ctx.seeded(
            "replicas", customers_n, channels=sms_twilio(twilio.port), public_url=public
        )
        people = list(data.customers(customers_n))

        def once(i: int) -> float:
            ws = copy_workspace(seed, ctx.path(f"replicas-{i}"))
            requests = twilio_webhooks(i, proxy_port, people, TEXTS, n)
            with fresh_database() as url:
                env = {**SECRET_ENV, "OUTREACH_DATABASE_URL": url}
                copy = outreach(ws, "store", "copy", "--to", url)  # from the seed's SQLite file
                check(run_child(copy, timeout=600, env=SECRET_ENV))
                speed, note = _measure(ctx, row, ws, env, proxy_port, requests)
                _check(url, n, note)
                row.note = join(row.note, note)
                return speed

        repeat(ctx, row, once)
    row.note = join(
        row.note,
        "0 lost, 0 stored twice, each answer acted on once (asserted); "
        f"run nps to {fmt_n(customers_n)} customers (Twilio emulator) at the same time; "
        "serve's peak RSS shown",
    )
    row.met = True  # _check raised otherwise
    return row


def _measure(
    ctx: Context,
    row: Row,
    path: Path,
    env: dict[str, str],
    proxy_port: int,
    requests: list[bytes],
) -> tuple[float, str]:
    """Replicas, proxy, run beside, the load with a SIGKILL half-way: (webhooks/s, note)."""
    from .loadgen import load

    n = len(requests)
    ports = [free_port(), free_port()]
    replicas = [
        Background(outreach(path, "serve", "--port", str(p), now=LATER), env=env) for p in ports
    ]
    proxy: Background | None = None
    runner: Background | None = None
    killed: list[float] = []
    try:
        for port, replica in zip(ports, replicas, strict=True):
            wait_healthy(port, replica, timeout=60)
        proxy = Background(
            [sys.executable, "-m", "benchmarks.proxy", str(proxy_port), *map(str, ports)],
            stdout_pipe=True,
        )
        line = proxy.readline()
        if line != f"PORT {proxy_port}":
            raise ChildFailed(f"proxy: unexpected {line!r}")
        runner = Background(outreach(path, "run", "nps", "--json"), env=env)

        def on_ok(answered: int) -> None:
            if not killed and answered >= n // 2:
                os.killpg(replicas[0].proc.pid, signal.SIGKILL)
                killed.append(time.monotonic())

        result = load(
            "127.0.0.1",
            proxy_port,
            requests,
            connections=32,
            timeout=ctx.timeout,
            retry=True,
            on_ok=on_ok,
        )
    finally:
        finish_run(runner, ctx.timeout)
        for replica in reversed(replicas):
            replica.stop(grace=15)
        max_rss(row, replicas[1].rss_mb)
        if proxy is not None:
            proxy.stop()
    if result.ok != n or result.errors:
        raise ChildFailed(
            f"answered 2xx {result.ok}/{n}, statuses {result.statuses}, errors {result.errors[:1]}"
        )
    if not killed:
        raise ChildFailed("the first replica was never killed")
    note = f"{result.retries} requests sent again (connection errors, 5xx)"
    return n / result.seconds, note


def _check(url: str, n: int, note: str) -> None:
    """0 lost, 0 stored twice, every answer acted on once; ChildFailed (the row's status)
    otherwise, with the figures."""
    ((stored, distinct),) = rows(
        url, "SELECT count(*), count(DISTINCT external_id) FROM messages WHERE direction = 'in'"
    )
    ((answered_twice,),) = rows(
        url,
        "SELECT count(*) FROM (SELECT delivery_id FROM survey_responses WHERE valid = 1 "
        "GROUP BY delivery_id HAVING count(*) > 1) AS twice",
    )
    ((valid,),) = rows(url, "SELECT count(*) FROM survey_responses WHERE valid = 1")
    ((follow_ups,),) = rows(url, "SELECT count(*) FROM deliveries WHERE purpose = 'follow_up'")
    lost, twice = n - distinct, stored - distinct
    print(
        f"serve_replicas: {n:,} webhooks, {distinct:,} stored, lost {lost}, stored twice "
        f"{twice}, {valid:,} valid answers, {follow_ups:,} follow-ups ({note})",
        file=sys.stderr,
    )
    if lost or twice or answered_twice or follow_ups != valid:
        raise ChildFailed(
            f"lost {lost}, stored twice {twice}, surveys answered twice {answered_twice}, "
            f"follow-ups {follow_ups} for {valid} valid answers"
        )
