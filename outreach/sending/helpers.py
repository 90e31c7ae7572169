"""Helper send processes: local channels (the outbox) sent from more than one core.

Writing a message to the outbox is CPU work (render, encode, create a file), so a large
run in one process leaves the machine's other cores idle. ``outreach run`` starts
``[sending] processes`` - 1 helpers once it has planned ``HELPER_MIN`` local deliveries
(fewer are not worth a helper's start-up). Each helper runs the same send engine on the
local channels only and claims from the same queue, while the run goes on planning and
then sends beside them.

Exactly-once holds as with one process: every claim and every record is a state change
guarded by the old state, in a write transaction, so no delivery is claimed twice.
A helper inherits the workspace lock, so no new run starts before it has ended. It stops
claiming when the run tells it to (the run got SIGINT or SIGTERM), when its standard input
closes (the run died), or on a signal of its own. A helper that dies leaves its claimed
deliveries ``sending`` under its lease; the run finds its pid gone, puts them back in the
queue (local channels are idempotent: a file named by its delivery id) and sends them
itself.

Only channels without a rate limit are shared (a rate, not the CPU, is their limit; it is
shared through the store whichever process sends), and only in runs whose campaigns have
none and no ``--limit`` (each process would allow the whole limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from .. import clock
from ..campaigns.files import list_campaigns, load_campaign
from ..channels import provider_class
from ..deliveries import Delivery, Status
from ..errors import OutreachError
from ..workspace import Workspace
from .engine import send_due_async
from .lease import hold
from .results import SendSummary, Tally

HELPER_MIN = 5000  # planned local deliveries that make helpers worth starting


class Helpers:
    """The helper processes of one run (none started until there is enough work)."""

    def __init__(
        self,
        ws: Workspace,
        campaigns: Sequence[str] | None,
        channels: list[str],
        lock_fd: int | None,
        on_progress: Callable[[int], None] | None,
        run_started: str | None = None,
    ) -> None:
        self.ws = ws
        self.run_started = run_started
        self.campaigns = list(campaigns) if campaigns else None
        self.channels = channels
        self.lock_fd = lock_fd
        self.on_progress = on_progress
        self.planned_local = 0
        self.children: list[_Child] = []

    @classmethod
    def for_run(
        cls,
        ws: Workspace,
        campaigns: Sequence[str],
        limit: int | None,
        lock_fd: int | None,
        on_progress: Callable[[int], None] | None,
        run_started: str | None = None,
    ) -> Helpers | None:
        """Helpers for this run, or None where one process must send everything."""
        config = ws.config
        if config.processes < 2 or limit is not None:
            return None
        channels = [
            name
            for name, ch in config.channels.items()
            if ch.rate is None and provider_class(ch.provider).local
        ]
        if not channels:
            return None
        for name in campaigns or list_campaigns(config):
            try:
                if load_campaign(config, name).rate is not None:
                    return None
            except OutreachError:
                continue  # the run itself reports a campaign it cannot load
        return cls(ws, campaigns, channels, lock_fd, on_progress, run_started)

    # -- the run's side ------------------------------------------------------------------

    def planned(self, rows: Sequence[Delivery]) -> None:
        """A batch of planned deliveries was committed: start helpers once it is worth it."""
        if self.children:
            return
        local = set(self.channels)
        self.planned_local += sum(
            1 for r in rows if r.status == Status.QUEUED and r.channel in local
        )
        if self.planned_local >= HELPER_MIN:
            self._start()

    def planning_finished(self) -> None:
        """Planning is over: helpers may stop when the queue is empty. Starts them now if
        nothing was planned but enough local deliveries are due (a plain ``run``)."""
        if not self.children:
            due = self.ws.store.deliveries.count_due(clock.iso(clock.now()), self.channels)
            if due >= HELPER_MIN:
                self._start()
        for child in self.children:
            child.tell("planned")

    def stop(self, sig: int) -> None:
        """The run was asked to stop (by ``sig``): so are its helpers.

        Told on their input rather than by a signal, which would kill a helper still
        starting up, before its handlers are in place.
        """
        for child in self.children:
            child.tell(f"stop {sig}")

    def finish(self) -> tuple[list[SendSummary], list[str]]:
        """Wait for every helper to end by itself (queue drained, or stopped); their
        summaries, and a problem line for each that died."""
        summaries: list[SendSummary] = []
        problems: list[str] = []
        for child in self.children:
            code = child.wait()
            # what it recorded counts, even when it died before its last word
            summaries.append(child.summary)
            if code != 0 or not child.finished:
                problems.append(
                    f"send helper process {child.proc.pid} ended with exit code {code}"
                    + (f" ({child.last_error})" if child.last_error else "")
                    + "; the deliveries it had claimed were queued again"
                )
        self.children = []
        return summaries, problems

    def close(self) -> None:
        """On the way out, however the run ends: no helper outlives it for long."""
        for child in self.children:
            child.close()
        self.children = []

    def _start(self) -> None:
        job = {
            "root": str(self.ws.root),
            "now": now.isoformat() if (now := clock.fixed()) else None,
            "campaigns": self.campaigns,
            "channels": self.channels,
            "run_started": self.run_started,
        }
        for _ in range(self.ws.config.processes - 1):
            self.children.append(_Child.start(job, self.lock_fd, self.on_progress))


class _Child:
    """One helper process and the thread that reads its reports."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        errors: IO[bytes],
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self.proc = proc
        self.errors = errors
        self.on_progress = on_progress
        self.summary = SendSummary()  # as of its last recorded batch
        self.finished = False  # it sent its final summary
        self.last_error = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @classmethod
    def start(
        cls, job: dict[str, Any], lock_fd: int | None, on_progress: Callable[[int], None] | None
    ) -> _Child:
        # a file, not a pipe: a helper that writes much to stderr must never block on it
        errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by wait or close)
        proc = subprocess.Popen(
            # no lock on PostgreSQL, where runs need none
            [
                sys.executable,
                "-m",
                "outreach.sending.helpers",
                "-" if lock_fd is None else str(lock_fd),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            pass_fds=(lock_fd,) if lock_fd is not None else (),
            # out of the terminal's process group: Ctrl-C reaches the run, which tells its
            # helpers (a signal could kill one still starting up)
            start_new_session=True,
        )
        child = cls(proc, errors, on_progress)
        child.tell(json.dumps(job))
        return child

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # it died: wait() tells
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()

    def wait(self) -> int:
        code = self.proc.wait()
        self.reader.join()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.errors.seek(0)
        lines = self.errors.read().decode("utf-8", "replace").strip().splitlines()
        self.last_error = lines[-1][:300] if lines else ""
        self.errors.close()
        return code

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # end of input: it stops claiming and exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        self.errors.close()

    def _read(self) -> None:
        # reads to the end whatever comes: a helper blocked on a full pipe would never end
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                report = json.loads(line)
                summary = _summary_from_json(report["summary"])
            except (ValueError, TypeError, KeyError):
                continue  # not a report (a library printing): not ours to judge
            self.summary = summary
            if "sent" in report and self.on_progress is not None:
                self.on_progress(int(report["sent"]))
            self.finished = bool(report.get("final"))


def _summary_to_json(summary: SendSummary, *, problems: bool = True) -> dict[str, Any]:
    return {
        "tallies": [
            [campaign, occurrence, t.sent, t.failed, t.skipped]
            for (campaign, occurrence), t in summary.tallies.items()
        ],
        # a long list of problems is sent once, at the end, not with every batch
        "problems": summary.problems if problems else [],
        "interrupted": summary.interrupted,
    }


def _summary_from_json(data: dict[str, Any]) -> SendSummary:
    summary = SendSummary(problems=list(data["problems"]), interrupted=int(data["interrupted"]))
    for campaign, occurrence, sent, failed, skipped in data["tallies"]:
        summary.tallies[(campaign, occurrence)] = Tally(sent, failed, dict(skipped))
    return summary


# -- the helper's side ---------------------------------------------------------------------


def _emit(report: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


async def _help(ws: Workspace, job: dict[str, Any]) -> SendSummary:
    loop = asyncio.get_running_loop()
    stop, planned = asyncio.Event(), asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def listen() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has ended: nothing left to tell
            for line in sys.stdin:
                word, _, arg = line.strip().partition(" ")
                if word == "planned":
                    loop.call_soon_threadsafe(planned.set)
                elif word == "stop":
                    loop.call_soon_threadsafe(on_signal, int(arg))
            # end of input: the run has ended or died, so stop claiming
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=listen, daemon=True).start()
    summary = SendSummary()

    def recorded(n: int) -> None:
        # after each recorded batch: the run's count stays right if this process dies
        _emit({"sent": n, "summary": _summary_to_json(summary, problems=False)})

    await send_due_async(
        ws,
        campaigns=job["campaigns"],
        channels=job["channels"],
        stop=stop,
        planning_done=planned,
        on_progress=recorded,
        summary=summary,
        run_started=job.get("run_started"),
    )
    summary.interrupted = received[0] if received else 0
    return summary


def main() -> int:
    """``python -m outreach.sending.helpers LOCK_FD``: the job comes as one JSON line on stdin."""
    if sys.argv[1] != "-":
        os.set_inheritable(int(sys.argv[1]), False)  # held, never passed further
    job = json.loads(sys.stdin.readline())
    if job["now"]:
        clock.set_now(job["now"])
    ws = Workspace.load(Path(job["root"]))
    try:
        with hold(ws, "helper"):
            summary = asyncio.run(_help(ws, job))
    finally:
        ws.close()
    _emit({"summary": _summary_to_json(summary), "final": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
