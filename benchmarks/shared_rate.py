"""A channel's ``rate`` shared by four sender processes: the total the provider sees.

``rate = "200/s"`` on a Twilio channel, the campaign planned once, then four processes
send it side by side to one loopback Twilio emulator (a process of its own, counting on
the machine's monotonic clock), first on PostgreSQL (a fresh database per run on the
server of ``benchmarks/postgresql.py``: ``--postgresql URL``) and then, beside it, on
SQLite. The figure is the rate the server saw, first to last request, which must be
200/s ± 5 % for the four together (a limiter per process would let through 800/s); every
message arrives once and at least three of the four processes send.

Until ``outreach worker`` exists the senders are the library's send pass, run by this
module: ``python -m benchmarks.shared_rate plan|send WORKSPACE`` prints one JSON line (a
sender writes ``.ready-PID`` in the workspace and starts once ``.go`` is there).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .context import (
    SECRET_ENV,
    TWILIO_SID,
    TWILIO_TOKEN,
    Context,
    join,
    repeat,
    sms_twilio,
)
from .harness import (
    Child,
    ChildFailed,
    LoopbackServer,
    NotAvailable,
    Row,
    copy_workspace,
    outreach,
    run_child,
)
from .postgresql import fresh_database, server_url

SIZES = {"full": 2_000, "quick": 600, "tiny": 100}
PROCESSES = 4
RATE = 200


def _postgresql_url() -> str | None:
    try:
        return server_url()
    except NotAvailable:
        return None


def _job(ws: Path, role: str, timeout: float) -> Child:
    return run_child(
        [sys.executable, "-m", "benchmarks.shared_rate", role, str(ws)],
        timeout=timeout,
        env=SECRET_ENV,
    ).check()


def _send_once(ctx: Context, server: LoopbackServer, ws: Path, n: int) -> tuple[float, list[int]]:
    """Plan, then four senders at once: (the server's msg/s, what each process sent)."""
    _job(ws, "plan", ctx.timeout)
    server.stats()  # reset
    children: list[Child | BaseException] = [ChildFailed("did not end")] * PROCESSES

    def sender(i: int) -> None:
        try:
            children[i] = _job(ws, "send", ctx.timeout)
        except BaseException as exc:  # reported below, in the benchmark's thread
            children[i] = exc

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(PROCESSES)]
    for t in threads:
        t.start()
    # every sender starts at once, when all have started up (a small run is over before
    # the last process would have imported outreach)
    deadline = time.monotonic() + ctx.timeout
    while len(list(ws.glob(".ready-*"))) < PROCESSES and time.monotonic() < deadline:
        if not any(t.is_alive() for t in threads):
            break
        time.sleep(0.01)
    (ws / ".go").touch()
    for t in threads:
        t.join()
    stats = server.stats()
    sent: list[int] = []
    for child in children:
        if isinstance(child, BaseException):
            raise child
        sent.append(int(json.loads(child.stdout.strip().splitlines()[-1])["sent"]))
    # the correctness figures: every message once, really sent by several processes
    if sum(sent) != n or stats["count"] != n:
        raise ChildFailed(f"sent {sent} (total {sum(sent)}), server got {stats['count']} of {n}")
    if sum(1 for s in sent if s) < PROCESSES - 1:
        raise ChildFailed(f"the processes did not send side by side: {sent}")
    span = stats["last"] - stats["first"]
    return (n - 1) / span if span > 0 else 0.0, sent


def _postgresql_copy(ctx: Context, seed: Path, name: str, url: str) -> Path:
    ws = copy_workspace(seed, ctx.path(name))
    run_child(outreach(ws, "store", "copy", "--to", url), timeout=ctx.timeout).check()
    toml = ws / "outreach.toml"
    text = re.sub(r'(?m)^database = ".*"', f'database = "{url}"', toml.read_text(encoding="utf-8"))
    toml.write_text(text, encoding="utf-8")
    return ws


def bench_shared_rate(ctx: Context) -> Row:
    n = SIZES[ctx.mode]
    row = Row(
        "rate_200_4p",
        f'rate = "200/s" shared by {PROCESSES} sender processes: total measured rate',
        f"{n:,} messages",
        "msg/s",
        "200/s ± 5%",
    )
    url = _postgresql_url()
    with LoopbackServer("twilio", TWILIO_SID, TWILIO_TOKEN) as server:
        seed = ctx.seeded(
            "rate4",
            n,
            channels=sms_twilio(server.port, rate=f"{RATE}/s", concurrency=8),
            customer_channels=("sms",),
        )

        def on_sqlite(i: int) -> float:
            ws = copy_workspace(seed, ctx.path(f"rate4-sqlite-{i}"))
            return _send_once(ctx, server, ws, n)[0]

        if url is None:
            repeat(ctx, row, on_sqlite)
            row.note = "SQLite; PostgreSQL not measured: set OUTREACH_BENCH_POSTGRESQL"
        else:
            shares: list[list[int]] = []

            def on_postgresql(i: int) -> float:
                with fresh_database() as database:
                    ws = _postgresql_copy(ctx, seed, f"rate4-pg-{i}", database)
                    rate, sent = _send_once(ctx, server, ws, n)
                shares.append(sent)
                return rate

            repeat(ctx, row, on_postgresql)
            beside = on_sqlite(0)
            row.note = join(
                row.note,
                f"PostgreSQL, sent per process {shares[-1]}",
                f"SQLite beside it: {beside:,.1f} msg/s",
            )
    row.note = join(row.note, "rate seen by the server, first to last request")
    row.met = bool(row.values) and all(RATE * 0.95 <= v <= RATE * 1.05 for v in row.values)
    return row


# -- the child processes ------------------------------------------------------------------------


def _child(role: str, root: Path) -> dict[str, Any]:
    import asyncio

    from outreach import clock
    from outreach.workspace import Workspace

    from .data import NOW

    clock.set_now(NOW)
    ws = Workspace.load(root)
    try:
        if role == "plan":
            from outreach.campaigns.files import load_campaign
            from outreach.campaigns.planner import plan_occurrence
            from outreach.campaigns.schedule import latest_occurrence

            campaign = load_campaign(ws.config, "nps")
            occurrence = latest_occurrence(ws.config, campaign, clock.now())
            assert occurrence is not None
            result = plan_occurrence(ws.config, ws.store, campaign, occurrence, clock.now())
            return {"planned": result.planned}
        from outreach.sending.engine import send_due_async

        (root / f".ready-{os.getpid()}").touch()
        while not (root / ".go").exists():
            time.sleep(0.005)
        summary = asyncio.run(send_due_async(ws))
        return {"sent": summary.sent, "problems": summary.problems[:3]}
    finally:
        ws.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("plan", "send"):
        print("usage: python -m benchmarks.shared_rate plan|send WORKSPACE", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child(sys.argv[1], Path(sys.argv[2]))))
