"""``outreach worker``: a long-running sender, pass after pass until SIGINT or SIGTERM.

Each pass is ``run --due``: recover what dead senders left in flight, plan the due
occurrences (on PostgreSQL skipping those another process is planning, and sending beside
it), send what is due. Then it waits ``poll`` seconds. The worker's lease (its row in
``workers``) lives for the whole process, renewed by the heartbeat thread.

On PostgreSQL any number of workers and runs, on any hosts, share a workspace. On SQLite
(one host, one writer) each pass takes the workspace lock like a ``run``: a pass that
finds a ``run`` holding it is skipped and tried again after ``poll`` seconds.

A signal stops the worker the way it stops a ``run``: no new claims, the sends in flight
finish and are recorded, the rest stays queued; then it exits 0 (stopping is its normal
end). Helper processes are not started: start more workers instead.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import LockedError
from .runner import RunOptions, RunReport, run
from .sending.lease import hold
from .workspace import Workspace


@dataclass
class WorkerReport:
    """What a worker did in its life (the shape of ``worker --json``)."""

    passes: int = 0
    busy_passes: int = 0  # SQLite: a run held the workspace lock
    planned: list[str] = field(default_factory=list)  # "campaign occurrence" it planned
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    recovered_unknown: int = 0
    problems: list[str] = field(default_factory=list)
    signal: int = 0

    def add(self, report: RunReport) -> None:
        self.passes += 1
        for line in report.campaigns:
            if not line.already_planned:
                self.planned.append(f"{line.name} {line.occurrence}")
            self.sent += line.sent
            self.failed += line.failed
            self.skipped += sum(line.skipped.values())
        self.recovered_unknown += report.recovered_unknown
        self.problems.extend(report.problems)
        self.problems.extend(report.broken)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "signal": signal.Signals(self.signal).name if self.signal else None,
        }


def work(
    ws: Workspace,
    poll: float,
    *,
    on_pass: Callable[[RunReport], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> WorkerReport:
    """Pass after pass until a signal (or ``stop``) ends it; what it did."""
    summary = WorkerReport()
    stop = threading.Event()
    with _signals_stop(stop, summary, on_stop), hold(ws, "worker"):
        while not stop.is_set():
            try:
                report = run(ws, RunOptions(due=True, stop_flag=stop, helpers=False))
            except LockedError:
                summary.busy_passes += 1
            else:
                summary.add(report)
                if on_pass is not None:
                    on_pass(report)
            stop.wait(poll)
    return summary


@contextlib.contextmanager
def _signals_stop(
    stop: threading.Event, summary: WorkerReport, on_stop: Callable[[], None] | None
) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` for the whole life of the worker (a run's own
    handlers come and go with each pass)."""

    def on_signal(sig: int, _frame: object) -> None:
        if not stop.is_set() and on_stop is not None:
            on_stop()
        summary.signal = summary.signal or sig
        stop.set()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        # only the main thread can take signals; elsewhere (tests) there is nothing to stop
        with contextlib.suppress(ValueError):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
