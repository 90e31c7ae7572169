"""``outreach run``: lock, recover, plan the occurrences asked for, send what is due.

The order matters for exactly-once: the lock first (one run at a time), then this
process's lease, then recovery of deliveries that dead senders left ``sending``, then
planning (idempotent by unique key), then sending (guarded state changes). SIGINT and
SIGTERM stop claiming new deliveries, let the ones in flight finish and be recorded, and
leave everything else queued: no ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import clock
from .campaigns.files import Campaign, load_campaign
from .campaigns.planner import PlanResult, plan_occurrence
from .campaigns.schedule import (
    due_occurrences,
    latest_occurrence,
    next_occurrence,
    trigger_occurrence,
)
from .deliveries import Status
from .errors import UsageError
from .lock import workspace_lock
from .sending.engine import send_due_async
from .sending.helpers import Helpers
from .sending.lease import hold, recover
from .sending.results import SendSummary
from .workspace import Workspace


@dataclass
class CampaignRun:
    """One occurrence's line in the run summary (the shape of `run --json`)."""

    name: str
    occurrence: str
    audience: int = 0
    planned: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    already_planned: bool = False

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunReport:
    campaigns: list[CampaignRun] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # campaign files --due could not load
    recovered_unknown: int = 0
    interrupted: int = 0  # the signal that stopped the run, or 0
    dry_run: bool = False

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.campaigns)

    @property
    def deferred(self) -> int:
        return sum(c.deferred for c in self.campaigns)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.campaigns)

    @property
    def unknown(self) -> int:
        return sum(c.unknown for c in self.campaigns)

    @property
    def template_errors(self) -> int:
        """Messages skipped because their template failed for that customer."""
        return sum(c.skipped.get("template_error", 0) for c in self.campaigns)

    def as_json(self) -> dict[str, Any]:
        return {
            "campaigns": [c.as_json() for c in self.campaigns],
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "unknown": self.unknown,
            "dry_run": self.dry_run,
            "missed": [{"name": n, "occurrence": o} for n, o in self.missed],
            "broken": self.broken,
            "problems": self.problems,
        }


@dataclass
class RunOptions:
    campaigns: list[str] = field(default_factory=list)
    due: bool = False
    dry_run: bool = False
    limit: int | None = None
    retry_unknown: bool = False
    customers_file: Path | None = None
    wait: float = 0
    # set by the caller to stop the run (``outreach worker`` owns the signals then)
    stop_flag: threading.Event | None = None
    helpers: bool = True  # helper processes for the outbox (``[sending] processes``)


def run(
    ws: Workspace,
    options: RunOptions,
    *,
    on_plan: Callable[[str], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_send_start: Callable[[int], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> RunReport:
    """Plan and send; see the module docstring for the order of things. ``on_stop`` is
    called when a signal asks the run to stop (once it has stopped, ``interrupted``)."""
    if options.customers_file and len(options.campaigns) != 1:
        raise UsageError(
            "--customers needs exactly one campaign: outreach run NAME --customers FILE"
        )
    if not isinstance(ws.config.database, Path):
        # PostgreSQL: any number of runs and workers on any hosts; each occurrence is
        # planned by one of them (store planning_lock), and claims never overlap
        return _run_locked(ws, options, None, on_plan, on_progress, on_send_start, on_stop)
    with workspace_lock(ws.root, options.wait) as lock_fd:
        return _run_locked(ws, options, lock_fd, on_plan, on_progress, on_send_start, on_stop)


def _run_locked(
    ws: Workspace,
    options: RunOptions,
    lock_fd: int | None,
    on_plan: Callable[[str], None] | None,
    on_progress: Callable[[int], None] | None,
    on_send_start: Callable[[int], None] | None,
    on_stop: Callable[[], None] | None,
) -> RunReport:
    config, store = ws.config, ws.store
    now = clock.now()
    at = clock.iso(now)
    report = RunReport(dry_run=options.dry_run)
    work: list[tuple[Campaign, str, list[tuple[str, dict[str, Any]]] | None]] = []
    for name in options.campaigns:
        campaign = load_campaign(config, name)
        if options.customers_file is not None:
            trigger_rows = read_trigger_file(options.customers_file)
            work.append((campaign, trigger_occurrence(options.customers_file), trigger_rows))
            continue
        occurrence = latest_occurrence(config, campaign, now)
        if occurrence is None:
            upcoming = next_occurrence(config, campaign, now)
            report.notes.append(
                f"{name}: nothing due yet; the first occurrence is "
                f"{clock.iso(upcoming) if upcoming else 'not scheduled (no start)'}"
            )
            continue
        work.append((campaign, occurrence, None))
    if options.due:
        broken = report.broken
        for due in due_occurrences(config, store, now, on_broken=lambda e: broken.append(str(e))):
            if due.missed:
                report.missed.append((due.campaign.name, due.occurrence))
                if not options.dry_run:
                    store.deliveries.record_missed(
                        due.campaign.name, due.occurrence, due.campaign.kind, at
                    )
            else:
                work.append((due.campaign, due.occurrence, None))
    if options.dry_run:
        for campaign, occurrence, customers in work:
            result = plan_occurrence(
                config, store, campaign, occurrence, now, customers=customers, dry_run=True
            )
            report.campaigns.append(_line(campaign.name, occurrence, result))
        return report

    with hold(ws, "run"):
        return _run_leased(
            ws, options, lock_fd, work, report, now, on_plan, on_progress, on_send_start, on_stop
        )


def _run_leased(
    ws: Workspace,
    options: RunOptions,
    lock_fd: int | None,
    work: list[tuple[Campaign, str, list[tuple[str, dict[str, Any]]] | None]],
    report: RunReport,
    now: datetime,
    on_plan: Callable[[str], None] | None,
    on_progress: Callable[[int], None] | None,
    on_send_start: Callable[[int], None] | None,
    on_stop: Callable[[], None] | None,
) -> RunReport:
    store = ws.store
    at = clock.iso(now)
    recovered = recover(ws, at)
    report.recovered_unknown = recovered["unknown"]
    if recovered["unknown"]:
        report.problems.append(
            f"{recovered['unknown']} deliveries were in flight when an earlier run died and are "
            "now 'unknown'; see outreach queue, resend with outreach run --retry-unknown"
        )
    if recovered["recorded"]:
        report.notes.append(
            f"{recovered['recorded']} sends of a run that died were recorded from its send journal"
        )
    if options.retry_unknown:
        n = store.deliveries.retry_unknown(at)
        report.notes.append(f"{n} unknown deliveries queued again")
    helpers = (
        Helpers.for_run(ws, options.campaigns, options.limit, lock_fd, on_progress, at)
        if options.helpers
        else None
    )
    lines: dict[tuple[str, str], CampaignRun] = {}
    summaries: list[SendSummary] = []
    try:
        while True:
            elsewhere = _plan(ws, work, now, helpers, on_plan, lines, report)
            summaries += _send_all(
                ws, options, at, helpers, report, on_progress, on_send_start, on_stop, elsewhere
            )
            if helpers:
                helpers.close()
            helpers = None  # they have ended: a second pass is this process's alone
            # an occurrence whose planner died half-way: planned again here, idempotently
            work = [
                w
                for w in work
                if (w[0].name, w[1]) in elsewhere
                and store.deliveries.occurrence_status(w[0].name, w[1]) != "planned"
            ]
            if not work or any(summary.interrupted for summary in summaries):
                break
    finally:
        if helpers:
            helpers.close()
    circuits: set[str] = set()
    for summary in summaries:
        report.interrupted = report.interrupted or summary.interrupted
        for problem in summary.problems:
            # each process has a circuit of its own; the person needs one line a channel
            channel, opened, _ = problem.partition(": circuit open")
            if opened:
                if channel in circuits:
                    continue
                circuits.add(channel)
            report.problems.append(problem)
        _add_tallies(lines, summary)
    for campaign_name, occurrence, by_status in store.deliveries.summarize(list(lines)):
        line = lines[(campaign_name, occurrence)]
        line.deferred = by_status.get(Status.DEFERRED, 0)
        line.unknown = by_status.get(Status.UNKNOWN, 0)
    report.campaigns = list(lines.values())
    return report


def _plan(
    ws: Workspace,
    work: list[tuple[Campaign, str, list[tuple[str, dict[str, Any]]] | None]],
    now: datetime,
    helpers: Helpers | None,
    on_plan: Callable[[str], None] | None,
    lines: dict[tuple[str, str], CampaignRun],
    report: RunReport,
) -> list[tuple[str, str]]:
    """Plan each occurrence into ``lines``; helpers start sending as soon as enough is
    planned. The occurrences another process is planning (PostgreSQL) are left to it:
    they are returned, and this process sends them beside it."""
    elsewhere: list[tuple[str, str]] = []
    for campaign, occurrence, customers in work:
        key = (campaign.name, occurrence)
        with ws.store.deliveries.planning_lock(
            campaign.name, occurrence, caps=campaign.counts_for_cap
        ) as ours:
            if not ours:
                elsewhere.append(key)
                report.notes.append(
                    f"{campaign.name} {occurrence}: another process is planning it; "
                    "this one sends beside it"
                )
                continue
            if on_plan:
                on_plan(f"{campaign.name} {occurrence}")
            result = plan_occurrence(
                ws.config,
                ws.store,
                campaign,
                occurrence,
                now,
                customers=customers,
                on_batch=helpers.planned if helpers else None,
            )
        line = _line(campaign.name, occurrence, result)
        if key in lines:  # sent from before this process planned it (its planner died)
            line.sent, line.failed = lines[key].sent, lines[key].failed
            line.skipped = {**lines[key].skipped, **line.skipped}
        lines[key] = line
    if helpers:
        helpers.planning_finished()
    return elsewhere


def _send_all(
    ws: Workspace,
    options: RunOptions,
    started: str,
    helpers: Helpers | None,
    report: RunReport,
    on_progress: Callable[[int], None] | None,
    on_send_start: Callable[[int], None] | None,
    on_stop: Callable[[], None] | None,
    elsewhere: list[tuple[str, str]],
) -> list[SendSummary]:
    """Send what is due from this process and its helpers; their summaries. While
    another process plans an occurrence in ``elsewhere``, an empty queue is waited on."""
    if on_send_start:
        on_send_start(_due_count(ws, options))
    own = asyncio.run(_send(ws, options, started, on_progress, helpers, on_stop, elsewhere))
    if not helpers or not helpers.children:
        return [own]
    count = len(helpers.children)
    with _stopping_helpers_on_signal(helpers, on_stop) as received:
        theirs, problems = helpers.finish()
    if received:
        own.interrupted = own.interrupted or received[0]
    sent = sum(summary.sent for summary in theirs)
    report.notes.append(
        f"{count} helper process{'es' if count > 1 else ''} sent {sent} of the campaign messages"
    )
    summaries = [own, *theirs]
    if problems:
        own.problems.extend(problems)
        # a helper died with deliveries claimed: back to the queue, sent by this process
        recover(ws, clock.iso(clock.now()))
        if not own.interrupted:
            again = _send(ws, options, started, on_progress, None, None, [])
            summaries.append(asyncio.run(again))
    return summaries


def _add_tallies(lines: dict[tuple[str, str], CampaignRun], summary: SendSummary) -> None:
    for (campaign_name, occurrence), tally in summary.tallies.items():
        if campaign_name is None or occurrence is None:
            continue
        # an occurrence this run did not plan: its deliveries were planned by an earlier one
        line = lines.setdefault(
            (campaign_name, occurrence),
            CampaignRun(campaign_name, occurrence, already_planned=True),
        )
        line.sent += tally.sent
        line.failed += tally.failed
        for reason, n in tally.skipped.items():
            line.skipped[reason] = line.skipped.get(reason, 0) + n


def _line(name: str, occurrence: str, result: PlanResult) -> CampaignRun:
    return CampaignRun(
        name=name,
        occurrence=occurrence,
        audience=result.audience,
        planned=result.planned,
        deferred=result.deferred,
        skipped=dict(result.skipped),
        already_planned=result.already_planned,
    )


def _due_count(ws: Workspace, options: RunOptions) -> int:
    total = ws.store.deliveries.count_due(clock.iso(clock.now()))
    return min(total, options.limit) if options.limit else total


async def _send(
    ws: Workspace,
    options: RunOptions,
    started: str,
    on_progress: Callable[[int], None] | None,
    helpers: Helpers | None,
    on_stop: Callable[[], None] | None,
    elsewhere: list[tuple[str, str]],
) -> SendSummary:
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()
    watchers: list[asyncio.Task[None]] = []
    planning_done: asyncio.Event | None = None
    if elsewhere:
        planning_done = asyncio.Event()
        watchers.append(asyncio.create_task(_watch_planning(ws, elsewhere, planning_done)))

    def on_signal(sig: int) -> None:
        if not received and on_stop:
            on_stop()
        received.append(sig)
        stop.set()
        if helpers:
            helpers.stop(sig)

    signals = () if options.stop_flag is not None else (signal.SIGINT, signal.SIGTERM)
    if options.stop_flag is not None:
        watchers.append(asyncio.create_task(_watch_flag(options.stop_flag, stop)))
    for sig in signals:
        # only the main thread can take signals; elsewhere (tests) there is nothing to stop
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        summary = await send_due_async(
            ws,
            campaigns=options.campaigns or None,
            limit=options.limit,
            stop=stop,
            on_progress=on_progress,
            planning_done=planning_done,
            run_started=started,
        )
    finally:
        for task in watchers:
            task.cancel()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    summary.interrupted = received[0] if received else (signal.SIGINT if stop.is_set() else 0)
    return summary


WATCH_SECONDS = 0.2  # between looks at an occurrence another process plans


async def _watch_planning(
    ws: Workspace, elsewhere: list[tuple[str, str]], done: asyncio.Event
) -> None:
    """Set ``done`` once no occurrence of ``elsewhere`` is being planned by another
    process: planned, or its planner has died (the run then plans it itself)."""
    deliveries = ws.store.deliveries
    while any(
        deliveries.occurrence_status(name, occurrence) != "planned"
        and deliveries.planning_elsewhere(name, occurrence)
        for name, occurrence in elsewhere
    ):
        await asyncio.sleep(WATCH_SECONDS)
    done.set()


async def _watch_flag(flag: threading.Event, stop: asyncio.Event) -> None:
    while not flag.is_set():
        await asyncio.sleep(0.05)
    stop.set()


@contextlib.contextmanager
def _stopping_helpers_on_signal(
    helpers: Helpers, on_stop: Callable[[], None] | None
) -> Iterator[list[int]]:
    """While the run waits for its helpers, SIGINT and SIGTERM stop them (instead of
    killing the run before it has recorded their results)."""
    received: list[int] = []

    def on_signal(sig: int, _frame: object) -> None:
        if not received and on_stop:
            on_stop()
        received.append(sig)
        helpers.stop(sig)

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        # only the main thread can take signals; elsewhere (tests) there is nothing to stop
        with contextlib.suppress(ValueError):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def read_trigger_file(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``--customers FILE``: ids (CSV with an ``id`` column, or JSONL) and their event data.

    Every other column becomes ``event.COLUMN`` in the template (an order number, a
    tracking link).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8; save it as UTF-8") from None
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path.name}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(item, dict) or not item.get("id"):
                raise UsageError(f'{path.name}:{n}: expected an object with an "id"')
            rows.append((str(item.pop("id")), item))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise UsageError(f"{path.name}: needs an id column (the customer ids to notify)")
        for record in reader:
            cid = (record.pop("id") or "").strip()
            if not cid:
                raise UsageError(f"{path.name}:{reader.line_num}: id is empty")
            rows.append((cid, {k: v for k, v in record.items() if k}))
    if not rows:
        raise UsageError(f"{path.name}: no customers in the file")
    return rows
