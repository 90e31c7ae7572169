"""Measuring children: wall time and the peak resident set of exactly that child.

Each measured command runs as a child process that this process reaps itself with
``os.wait4``: the kernel hands back that child's own ``ru_maxrss``, which
``getrusage(RUSAGE_CHILDREN)`` cannot give (it is a maximum over every child ever reaped,
so one big child hides every later one). Wall time is taken around spawn and reap, so it
includes interpreter start-up: what a user waits for.

A child that overruns its budget is killed (its whole process group) and reported as
timed out, with the peak memory it had reached; nothing here waits forever.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .data import NOW

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Child:
    """What one measured child did."""

    argv: list[str]
    wall: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    def check(self) -> Child:
        """Raise ``ChildFailed`` unless the child exited 0 in time."""
        if self.timed_out:
            raise ChildFailed(
                f"timed out after {self.wall:.0f} s (peak RSS {self.rss_mb:.0f} MB so far): "
                + " ".join(self.argv[2:3] + self.argv[7:10])
            )
        if self.returncode != 0:
            last = (self.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
            raise ChildFailed(f"exit {self.returncode}: {last}")
        return self


class ChildFailed(Exception):
    """A measured command failed or overran; the row says so instead of a figure."""


class NotAvailable(Exception):
    """A benchmark cannot run here (a command or peer missing); the row says why."""


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OUTREACH_WORKSPACE", None)
    env.pop("OUTREACH_NOW", None)
    env.pop("OUTREACH_DATABASE_URL", None)  # a benchmark names its PostgreSQL database
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONHASHSEED", "0")
    if extra:
        env.update(extra)
    return env


def run_child(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: Path | None = None,
    keep_stdout: bool = True,
    tree: bool = False,
) -> Child:
    """Run ``argv`` to completion (or ``timeout``), measuring wall time and its peak RSS;
    with ``tree``, the peak of the memory summed over it and its descendants (a run with
    helper processes), sampled by a thread here (off elsewhere: it costs CPU)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin_file: IO[bytes] | None = stdin.open("rb") if stdin else None
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd or REPO,
                env=_env(env),
                stdin=stdin_file or subprocess.DEVNULL,
                stdout=out if keep_stdout else subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                _kill_group(proc.pid)

            timer = threading.Timer(timeout, kill)
            timer.start()
            sampler = _TreeRss(proc.pid) if tree else None
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
                if sampler:
                    sampler.stop()
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdin_file:
                stdin_file.close()
        out.seek(0)
        err.seek(0)
        return Child(
            argv=list(argv),
            wall=wall,
            # Linux reports KiB; a run with helper processes uses their memory too
            rss_mb=max(usage.ru_maxrss / 1024, sampler.peak_mb if sampler else 0.0),
            returncode=proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace")[-4000:],
            timed_out=timed_out.is_set(),
        )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def outreach(ws: Path, *args: str, now: str = NOW) -> list[str]:
    """The argv of ``python -m outreach`` on workspace ``ws`` at the fixed time ``now``."""
    return [sys.executable, "-m", "outreach", "-w", str(ws), "--now", now, *args]


class _TreeRss:
    """The peak of the summed resident memory of a child and its descendants, sampled.

    ``wait4`` gives the peak of the largest single process; a run that sends from helper
    processes holds memory in each of them at once, so the figure must be their sum.
    Without psutil (the bench extra) the peak stays 0 and the single-process figure stands.
    """

    INTERVAL = 0.05

    def __init__(self, pid: int) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        try:
            import psutil
        except ImportError:
            return
        self._root = psutil.Process(pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._done.wait(self.INTERVAL):
            total = 0
            try:
                for proc in [self._root, *self._root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
            except psutil.Error:
                return
            self.peak_mb = max(self.peak_mb, total / 2**20)

    def stop(self) -> None:
        self._done.set()


class Background:
    """A long-running child (a server) that is always stopped, by its own process group."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd or REPO,
            env=_env(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if stdout_pipe else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.rss_mb = 0.0

    def readline(self, timeout: float = 20.0) -> str:
        """One line of the child's stdout, or ChildFailed when it does not come in time."""
        assert self.proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(
            target=lambda: box.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            self.stop()
            err = self.proc.stderr.read()[-500:] if self.proc.stderr else ""
            raise ChildFailed(f"server did not answer: {err.strip() or 'no output'}")
        return box[0].strip()

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.rss_mb = usage.ru_maxrss / 1024
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.05)
        _kill_group(self.proc.pid)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.rss_mb = usage.ru_maxrss / 1024
        self.proc.returncode = os.waitstatus_to_exitcode(status)


class LoopbackServer(Background):
    """``python -m benchmarks.servers KIND``: its port, and request counts on demand."""

    def __init__(self, *args: str) -> None:
        super().__init__([sys.executable, "-m", "benchmarks.servers", *args], stdout_pipe=True)
        line = self.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise ChildFailed(f"server {args[0]}: unexpected {line!r}")
        self.port = int(line.split()[1])
        self.last_stats: dict[str, Any] = {}

    def stats(self) -> dict[str, Any]:
        """Count, first and last (monotonic) and the server's CPU seconds since the
        previous call, and resets them; also kept as ``last_stats``."""
        import json

        self.command("stats")
        result: dict[str, Any] = json.loads(self.readline())
        self.last_stats = result
        return result

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def copy_workspace(seed: Path, target: Path) -> Path:
    """A fresh copy of a prepared workspace (the database too, WAL checkpointed by close)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(seed, target, ignore=shutil.ignore_patterns("outbox", ".outreach.lock"))
    return target


@dataclass
class Row:
    """One line of the results table."""

    name: str
    figure: str
    size: str = ""
    unit: str = ""
    target: str = ""
    values: list[float] = field(default_factory=list)
    rss_mb: float | None = None
    met: bool | None = None
    note: str = ""
    status: str = "ok"

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figure": self.figure,
            "size": self.size,
            "runs": len(self.values),
            "median": self.median,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "unit": self.unit,
            "peak_rss_mb": round(self.rss_mb, 1) if self.rss_mb is not None else None,
            "target": self.target,
            "met": self.met,
            "note": self.note,
            "status": self.status,
        }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
