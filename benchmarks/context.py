"""What every benchmark shares: sizes per mode, the session's workspaces, row helpers.

Every benchmark works in a fresh workspace made by ``outreach init`` under the session's
temporary folder and drives the real CLI in a child process (``python -m outreach -w WS
--now NOW ...``), measured by ``harness.run_child``. Set-up (creating a workspace, importing
the customers a run needs) is not measured. Prepared workspaces are kept per session and
copied for each measured run, so that three runs of ``run nps`` start from the same state.
``configure`` removes every rate limit (channels and campaigns) and raises concurrency, so
that a figure measures outreach and not its throttle.

Sizes depend on the mode: ``full`` uses the sizes of the issues, ``quick`` smaller ones
(one run each) for a smoke check in under two minutes, ``tiny`` (hidden, for the test
suite) the smallest that still exercises each path. A row's ``size`` always says what was
measured, so a quick figure is never mistaken for a full one.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data
from .harness import (
    Child,
    ChildFailed,
    NotAvailable,
    Row,
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
        "startup": 10,
        "import_100k": 100_000,
        "million": 1_000_000,
        "render": 100_000,
        "run_100k": 100_000,
        "twilio": 20_000,
        "rate": 1_000,
        "smtp": 5_000,
        "serve": 20_000,
        "serve_run": 20_000,
        "ingest": 100_000,
        "export": 1_000_000,
        "export_customers": 100_000,
        "mm_render": 20_000,
        "mm_smtp": 1_000,
        "webhooks": 3_000,
        "imap": 10_000,
    },
    "quick": {
        "startup": 3,
        "import_100k": 10_000,
        "million": 5_000,
        "render": 10_000,
        "run_100k": 2_000,
        "twilio": 2_000,
        "rate": 300,
        "smtp": 500,
        "serve": 2_000,
        "serve_run": 1_000,
        "ingest": 2_000,
        "export": 20_000,
        "export_customers": 2_000,
        "mm_render": 2_000,
        "mm_smtp": 200,
        "webhooks": 300,
        "imap": 1_000,
    },
    "tiny": {
        "startup": 1,
        "import_100k": 200,
        "million": 200,
        "render": 200,
        "run_100k": 100,
        "twilio": 100,
        "rate": 60,
        "smtp": 50,
        "serve": 100,
        "serve_run": 50,
        "ingest": 100,
        "export": 500,
        "export_customers": 100,
        "mm_render": 50,
        "mm_smtp": 20,
        "webhooks": 50,
        "imap": 50,
    },
}
# Seconds a single measured child may take before it is killed, and the time after which a
# benchmark stops repeating (it then reports fewer runs and says why).
CHILD_TIMEOUT = {"full": 300.0, "quick": 60.0, "tiny": 60.0}
REPEAT_BUDGET = {"full": 150.0, "quick": 30.0, "tiny": 30.0}


@dataclass
class Context:
    """One benchmark session: mode, sizes, its temporary folder and shared set-up."""

    mode: str
    root: Path
    log: Callable[[str], None] = lambda message: None
    cache: dict[Any, Any] = field(default_factory=dict)
    # a PostgreSQL server for the rows that need one (a user that may create databases)
    postgresql: str | None = None
    # run at the end of the session, whatever happened (dropping databases made for it)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

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

    def new_workspace(
        self, name: str, channels: dict[str, str] | None = None, public_url: str | None = None
    ) -> Path:
        """``outreach init`` + configuration: no rate limits, channel overrides applied."""
        ws = self.path(name)
        if ws.exists():
            shutil.rmtree(ws)
        run_child([sys.executable, "-m", "outreach", "init", str(ws)], timeout=60).check()
        configure(ws, channels or {}, public_url)
        return ws

    def seeded(
        self,
        key: str,
        n: int,
        *,
        channels: dict[str, str] | None = None,
        customer_channels: tuple[str, ...] = data.CHANNELS,
        public_url: str | None = None,
    ) -> Path:
        """A prepared workspace with ``n`` imported customers (made once per session)."""
        cached = self.cache.get(("seed", key, n))
        if cached is not None:
            if channels:  # another row's server (its port) on the same customers
                configure(Path(cached), channels, None)
            return Path(cached)
        self.log(f"  set-up: importing {n:,} customers for {key}")
        ws = self.new_workspace(f"seed-{key}-{n}", channels, public_url)
        imported = run_child(
            outreach(
                ws, "customers", "import", str(self.customers_csv(n, customer_channels)), "--json"
            ),
            timeout=max(self.timeout, 1800.0),
        )
        check(imported)
        self.cache[("seed", key, n)] = ws
        return ws


def sms_twilio(port: int, *, rate: str | None = None, concurrency: int = 64) -> dict[str, str]:
    """The ``sms`` channel on the Twilio emulator at ``port`` (for ``configure``)."""
    body = (
        f'provider = "twilio"\naccount_sid = "{TWILIO_SID}"\n'
        f'auth_token_env = "BENCH_TWILIO_TOKEN"\nfrom = "{TWILIO_FROM}"\n'
        f'base_url = "http://127.0.0.1:{port}"\nconcurrency = {concurrency}\n'
    )
    if rate:
        body += f'rate = "{rate}"\n'
    return {"sms": body}


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
    """Notes joined with "; ", each said once (repeated runs often say the same thing)."""
    seen: list[str] = []
    for part in parts:
        for piece in part.split("; ") if part else ():
            if piece not in seen:
                seen.append(piece)
    return "; ".join(seen)


def server_rate(stats: dict[str, Any]) -> float:
    """Messages per second as a loopback server saw them, first to last."""
    span = stats["last"] - stats["first"]
    return (stats["count"] - 1) / span if span > 0 and stats["count"] > 1 else 0.0


def server_busy(stats: dict[str, Any]) -> float:
    """The share of a loopback server's time, first to last message, that it spent on the
    CPU: near 1, the server was the limit; well below, it waited for its client."""
    span = stats["last"] - stats["first"]
    return stats.get("cpu", 0.0) / span if span > 0 else 0.0


def max_rss(row: Row, rss: float) -> None:
    row.rss_mb = max(row.rss_mb or 0.0, rss)


def fmt_n(n: int) -> str:
    return f"{n:,}"


def count_sent(result: Any) -> int:
    return int(result.get("sent", 0)) if isinstance(result, dict) else 0
