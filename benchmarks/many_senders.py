"""Four sender processes on one PostgreSQL database, SIGKILLed at random and restarted.

One ``outreach run nps`` and three ``outreach worker`` processes send one occurrence of
SMS to the loopback Twilio emulator (a process of its own that counts the messages it gets
per recipient). Every so often one of the four, chosen at random, is SIGKILLed and
started again, twenty times in all (fewer in the quick and tiny modes), at moments spread
over the run's progress: a kill may land while a process starts, plans, claims, sends or
records. When every delivery is decided the workers are stopped with SIGTERM.

The correctness figures are asserted (a failed one fails the row): no customer got two
messages (the emulator's count per recipient), no planned delivery was lost (every one
``sent`` or ``unknown``, one per customer), and ``unknown`` (in flight at a kill) is at
most kills x the channel's concurrency. The speed figure is messages per second, first
process start to the last delivery decided, kills and restarts included.

``python -m benchmarks.many_senders twilio SID TOKEN`` is the emulator: it prints
``PORT n``, then answers ``stats`` with one JSON line (count, distinct, twice).
"""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .context import SECRET_ENV, TWILIO_SID, TWILIO_TOKEN, Context, join, sms_twilio
from .harness import Background, ChildFailed, Row, copy_workspace, outreach, run_child
from .postgresql import fresh_database, rows

SIZES = {"full": 20_000, "quick": 3_000, "tiny": 300}
KILLS = {"full": 20, "quick": 8, "tiny": 3}
WORKERS = 3
CONCURRENCY = 8
SEED = 20261218


class _Emulator(Background):
    """The counting Twilio emulator below, in a process of its own."""

    def __init__(self) -> None:
        super().__init__(
            [sys.executable, "-m", "benchmarks.many_senders", "twilio", TWILIO_SID, TWILIO_TOKEN],
            stdout_pipe=True,
        )
        line = self.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise ChildFailed(f"twilio emulator: unexpected {line!r}")
        self.port = int(line.split()[1])

    def stats(self) -> dict[str, Any]:
        """Messages since the last call: count, distinct recipients, recipients twice."""
        self.command("stats")
        result: dict[str, Any] = json.loads(self.readline())
        return result

    def __enter__(self) -> _Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sender(ws: Path, kind: str) -> Background:
    if kind == "run":
        return Background(outreach(ws, "run", "nps", "--quiet"), env=SECRET_ENV)
    return Background(outreach(ws, "worker", "--poll", "0.2", "--quiet"), env=SECRET_ENV)


def _decided(url: str) -> tuple[int, dict[str, int]]:
    """(campaign deliveries planned, how many in each status)."""
    by_status = {str(s): int(n) for s, n in rows(url, _BY_STATUS)}
    return sum(by_status.values()), by_status


_BY_STATUS = "SELECT status, count(*) FROM deliveries WHERE purpose = 'campaign' GROUP BY status"
_PLANNED = "SELECT count(*) FROM occurrences WHERE campaign = 'nps' AND status = 'planned'"


def _once(ctx: Context, seed: Path, url: str, emulator: _Emulator, n: int) -> dict[str, Any]:
    ws = copy_workspace(seed, ctx.path("many-senders"))
    run_child(outreach(ws, "store", "copy", "--to", url), timeout=ctx.timeout).check()
    toml = ws / "outreach.toml"
    text = re.sub(r'(?m)^database = ".*"', f'database = "{url}"', toml.read_text(encoding="utf-8"))
    toml.write_text(text, encoding="utf-8")
    emulator.stats()  # counts start now
    chance = random.Random(SEED)
    kills = KILLS[ctx.mode]
    # kill moments spread over the run by its progress (so on any machine's speed): two
    # while it starts and plans, the rest before 90 % of the deliveries are decided
    moments = [0.0, 0.0, *sorted(chance.uniform(0.0, 0.9) for _ in range(kills - 2))]
    started = time.monotonic()
    deadline = started + max(ctx.timeout, 600.0)
    kinds = ["run"] + ["worker"] * WORKERS
    procs = [_sender(ws, kind) for kind in kinds]
    killed = 0
    try:
        while True:
            time.sleep(chance.uniform(0.05, 0.5))
            if time.monotonic() > deadline:
                raise ChildFailed(f"not done in {deadline - started:.0f} s: {_decided(url)[1]}")
            for proc, kind in zip(procs, kinds, strict=True):
                if proc.proc.poll() is not None and kind == "worker":
                    err = proc.proc.stderr.read()[-300:] if proc.proc.stderr else ""
                    raise ChildFailed(f"a worker ended by itself: {err.strip()}")
            planned, by_status = _decided(url)
            decided = by_status.get("sent", 0) + by_status.get("unknown", 0)
            if killed < kills and decided >= moments[killed] * n:
                live = [i for i, proc in enumerate(procs) if proc.proc.poll() is None]
                i = chance.choice(live)
                procs[i].proc.kill()
                procs[i].proc.wait()  # reaped: its pid is gone from this host
                procs[i] = _sender(ws, kinds[i])
                killed += 1
                continue
            if killed == kills and rows(url, _PLANNED) == [(1,)] and planned == decided:
                break
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            proc.stop(grace=60)  # SIGTERM: a worker's clean stop
    stopped = [proc.proc.returncode for proc, kind in zip(procs, kinds, strict=True)]
    if any(code != 0 for code, kind in zip(stopped, kinds, strict=True) if kind == "worker"):
        raise ChildFailed(f"workers did not stop cleanly on SIGTERM: exit codes {stopped}")
    planned, by_status = _decided(url)
    server = emulator.stats()
    # the correctness figures
    problems = []
    if server["twice"]:
        problems.append(f"{server['twice']} customers got two messages")
    if planned != n or set(by_status) - {"sent", "unknown"}:
        problems.append(f"planned {planned} of {n}, by status {by_status}")
    per_customer = rows(
        url,
        "SELECT count(*) FROM (SELECT customer_id FROM deliveries WHERE campaign = 'nps' "
        "GROUP BY customer_id HAVING count(*) > 1) twice",
    )
    if per_customer != [(0,)]:
        problems.append(f"customers with two deliveries: {per_customer[0][0]}")
    unknown = by_status.get("unknown", 0)
    if unknown > kills * CONCURRENCY:
        problems.append(f"unknown {unknown} > {kills} kills x concurrency {CONCURRENCY}")
    if server["count"] < by_status.get("sent", 0) or server["count"] > n:
        problems.append(f"the emulator got {server['count']}, sent {by_status.get('sent', 0)}")
    if problems:
        raise ChildFailed("; ".join(problems))
    return {
        "rate": by_status.get("sent", 0) / elapsed,
        "unknown": unknown,
        "kills": killed,
        "elapsed": elapsed,
    }


def bench_many_senders(ctx: Context) -> Row:
    n = SIZES[ctx.mode]
    row = Row(
        "senders_4p_kill",
        f"run + {WORKERS} workers on one PostgreSQL database, SIGKILLed and restarted",
        f"{n:,} SMS, {KILLS[ctx.mode]} kills",
        "msg/s",
        "0 twice, 0 lost, unknown <= kills x concurrency",
    )
    with _Emulator() as emulator, fresh_database() as url:
        seed = ctx.seeded(
            "senders",
            n,
            channels=sms_twilio(emulator.port, concurrency=CONCURRENCY),
            customer_channels=("sms",),
        )
        result = _once(ctx, seed, url, emulator, n)
    row.values.append(result["rate"])
    row.met = True  # _once raised otherwise
    row.note = join(
        f"0 customers twice, 0 lost, {result['unknown']} unknown after {result['kills']} kills "
        f"(bound {result['kills'] * CONCURRENCY})",
        f"{result['elapsed']:.1f} s in all",
    )
    return row


# -- the emulator's process ---------------------------------------------------------------------


def _serve(sid: str, token: str) -> int:
    from tests.servers.http import Recorded, Reply
    from tests.servers.twilio import TwilioEmulator

    lock = threading.Lock()
    per_to: Counter[str] = Counter()

    class CountingTwilio(TwilioEmulator):
        def handle(self, request: Recorded) -> Reply:
            self.requests.clear()  # many messages: keep memory flat
            with lock:
                per_to[request.form().get("To", "")] += 1
            return super().handle(request)

    server = CountingTwilio(sid, token)
    server.start()
    print(f"PORT {server.port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            with lock:
                stats = {
                    "count": sum(per_to.values()),
                    "distinct": len(per_to),
                    "twice": sum(1 for n in per_to.values() if n > 1),
                }
                per_to.clear()
            print(json.dumps(stats), flush=True)
        elif line.strip() == "quit":
            break
    server.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "twilio":
        print("usage: python -m benchmarks.many_senders twilio SID TOKEN", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(_serve(sys.argv[2], sys.argv[3]))
