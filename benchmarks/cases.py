"""The benchmarks by name: one function per figure of issues 2-7 and 9, each returning a ``Row``.

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

from collections.abc import Callable

from .cases_local import (
    bench_export_1m,
    bench_import_1m,
    bench_import_100k,
    bench_ingest_100k,
    bench_render_100k,
    bench_report_1m,
    bench_rerun_1m,
    bench_run_1m,
    bench_run_100k,
    bench_startup,
)
from .cases_mail import bench_imap_idle, bench_imap_sync_10k
from .cases_network import bench_rate_200, bench_serve_webhooks, bench_smtp, bench_twilio_20k
from .cases_peers import (
    bench_render_vs_mailmerge,
    bench_smtp_vs_mailmerge,
    bench_webhooks_vs_apprise,
)
from .cases_postgresql import bench_copy_1m, bench_run_100k_pg
from .cases_replicas import bench_serve_replicas
from .context import Context
from .harness import ChildFailed, NotAvailable, Row
from .many_senders import bench_many_senders
from .shared_rate import bench_shared_rate

BENCHMARKS: dict[str, Callable[[Context], Row]] = {
    "startup": bench_startup,
    "import_100k": bench_import_100k,
    "import_1m": bench_import_1m,
    "render_100k": bench_render_100k,
    "run_100k": bench_run_100k,
    "run_1m": bench_run_1m,
    "rerun_1m": bench_rerun_1m,
    "report_1m": bench_report_1m,
    "run_100k_pg": bench_run_100k_pg,
    "copy_1m": bench_copy_1m,
    "twilio_20k": bench_twilio_20k,
    "rate_200": bench_rate_200,
    "rate_200_4p": bench_shared_rate,
    "senders_4p_kill": bench_many_senders,
    "smtp": bench_smtp,
    "serve_webhooks": bench_serve_webhooks,
    "serve_replicas": bench_serve_replicas,
    "ingest_100k": bench_ingest_100k,
    "export_1m": bench_export_1m,
    "render_vs_mailmerge": bench_render_vs_mailmerge,
    "smtp_vs_mailmerge": bench_smtp_vs_mailmerge,
    "webhooks_vs_apprise": bench_webhooks_vs_apprise,
    "imap_sync_10k": bench_imap_sync_10k,
    "imap_idle": bench_imap_idle,
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
    "run_100k_pg": ("run nps on PostgreSQL, 2 processes", ">= 5,000 /s"),
    "copy_1m": ("store copy --to URL of 1M customers + 1M deliveries", "< 90 s, < 300 MB"),
    "twilio_20k": ("SMS to a loopback Twilio emulator, concurrency 64", ">= 1,500 msg/s"),
    "rate_200": ('configured rate = "200/s": measured rate', "200/s ± 5%"),
    "rate_200_4p": ('rate = "200/s" shared by 4 sender processes: total', "200/s ± 5%"),
    "senders_4p_kill": (
        "run + 3 workers on PostgreSQL, 20 SIGKILLed and restarted",
        "0 twice, 0 lost, unknown <= kills x concurrency",
    ),
    "smtp": ("email over SMTP to loopback aiosmtpd", ">= 500 msg/s"),
    "serve_webhooks": ("serve: signed Twilio webhooks, 32 connections", ">= 800 /s"),
    "serve_replicas": (
        "serve: 2 replicas on PostgreSQL behind a proxy, one SIGKILLed half-way",
        "0 lost, 0 stored twice",
    ),
    "ingest_100k": ("replies ingest (normalized JSONL)", ">= 10,000 msg/s"),
    "export_1m": ("export replies to CSV, streamed", ">= 100,000 rows/s, < 100 MB"),
    "render_vs_mailmerge": (
        "render: outreach / mailmerge --dry-run",
        ">= 10x, >= 0.8 of bare Jinja2",
    ),
    "smtp_vs_mailmerge": ("SMTP send: outreach / mailmerge", ">= 5x, >= 0.8 of bare aiosmtplib"),
    "webhooks_vs_apprise": ("JSON webhooks: outreach webhook / bare httpx", ">= 0.8 of bare httpx"),
    "imap_sync_10k": ("replies sync: first sync from loopback Dovecot", ">= 1,000 msg/s, < 200 MB"),
    "imap_idle": ("replies sync with nothing new", "< 0.5 s"),
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


__all__ = ["BENCHMARKS", "TARGETS", "Context", "run_benchmark"]
