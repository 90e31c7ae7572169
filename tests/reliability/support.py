"""Building blocks of the reliability suite: workspaces on real emulators, real processes.

A workspace here is made by the real ``outreach init`` and then given an ``outreach.toml``
written for the test (channels pointed at loopback emulators by ``base_url``), customers
imported through the real CLI, and a campaign file. ``outreach`` itself always runs as a
separate ``python -m outreach`` process (``spawn``/``run_cli``) so that it can be killed
at any moment while the emulators, threads of the test process, survive and keep count.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from outreach.cli import app
from tests.servers.fixtures import ENV, TWILIO_SID
from tests.servers.http import LoopbackServer

# Tuesday 1 December 2026, 10:30 in Amsterdam: inside every window used here
NOW = "2026-12-01T09:30:00Z"
TERMINAL = {"sent", "failed", "skipped", "unknown"}

BLAST = """kind = "update"
template = "product_update"
channels = ["sms"]

[schedule]
start = "2026-12-01 08:00"
window = "00:00-24:00"
"""


def twilio_channel(
    url: str,
    *,
    name: str = "sms",
    concurrency: int = 8,
    rate: str | None = None,
    timeout: float = 2.0,
) -> str:
    rate_line = f'rate = "{rate}"\n' if rate else ""
    return (
        f"[channels.{name}]\n"
        'provider = "twilio"\n'
        f'account_sid = "{TWILIO_SID}"\n'
        'auth_token_env = "TWILIO_AUTH_TOKEN"\n'
        'from = "+3197010000000"\n'
        f'base_url = "{url}"\n'
        f"concurrency = {concurrency}\n"
        f"timeout = {timeout}\n"
        f"{rate_line}"
    )


def outreach_toml(
    channels: str,
    *,
    public_url: str | None = None,
    business_hours: str = "Mon-Sun 00:00-24:00",
    extra: str = "",
) -> str:
    server = f'public_url = "{public_url}"\n' if public_url else ""
    return (
        "[workspace]\n"
        'database = "outreach.db"\n'
        'timezone = "Europe/Amsterdam"\n'
        'default_region = "NL"\n'
        f'business_hours = "{business_hours}"\n\n'
        "[sending]\n"
        'sender_name = "Acme"\n\n'
        f"{channels}\n"
        f'[server]\n{server}host = "127.0.0.1"\nport = 8787\n{extra}'
    )


def phone(i: int) -> str:
    return f"+3161{i:07d}"


def customers_csv(
    n: int, *, opted_in: str = "sms", start: int = 0, timezones: Iterable[str] | None = None
) -> str:
    zones = list(timezones or ["Europe/Amsterdam"])
    lines = ["id,name,email,phone,preferred_channel,locale,timezone,opted_in"]
    for i in range(start, start + n):
        lines.append(
            f"c{i:05d},Customer {i},c{i}@example.com,{phone(i)},sms,en,"
            f"{zones[i % len(zones)]},{opted_in}"
        )
    return "\n".join(lines) + "\n"


def in_process(
    ws: Path,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Any:
    """The real CLI in this process (fast set-up steps); clock reset afterwards.

    It runs in a worker thread with a deadline, so that a command that never returns
    fails the test with the stack it hangs in instead of stalling the whole suite.
    """
    from outreach import clock

    box: dict[str, Any] = {}

    def invoke() -> None:
        try:
            box["result"] = CliRunner().invoke(
                app, ["-w", str(ws), *args], input=input, env=dict(env) if env else None
            )
        except BaseException as exc:  # reported in the test's thread
            box["error"] = exc

    worker = threading.Thread(target=invoke, daemon=True, name="outreach-cli")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        frame = sys._current_frames().get(worker.ident or 0)
        stack = "".join(traceback.format_stack(frame)) if frame else "?"
        raise AssertionError(f"`outreach {' '.join(args)}` did not return in {timeout} s:\n{stack}")
    clock.set_now(None)
    if "error" in box:
        raise box["error"]
    return box["result"]


def make_workspace(
    folder: Path,
    toml: str,
    *,
    customers: int = 0,
    campaigns: Mapping[str, str] | None = None,
    customers_text: str | None = None,
) -> Path:
    result = CliRunner().invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.stderr
    (folder / "outreach.toml").write_text(toml, encoding="utf-8")
    for name, text in (campaigns or {"blast": BLAST}).items():
        (folder / "campaigns" / f"{name}.toml").write_text(text, encoding="utf-8")
    if customers or customers_text:
        path = folder / "customers.csv"
        path.write_text(customers_text or customers_csv(customers), encoding="utf-8")
        imported = in_process(folder, "customers", "import", str(path), env=ENV)
        assert imported.exit_code == 0, imported.stderr + imported.stdout
    else:
        # open the store once so that the database and its schema exist
        listed = in_process(folder, "customers", "list", "--json")
        assert listed.exit_code == 0, listed.stderr
    return folder


_TEMPLATES: dict[str, Path] = {}


def cloned_workspace(dest: Path, toml: str, campaigns: Mapping[str, str] | None = None) -> Path:
    """``make_workspace`` without customers, copied from one made earlier with the same
    files (hypothesis examples need dozens of fresh workspaces; init is the slow part)."""
    key = toml + repr(sorted((campaigns or {}).items()))
    template = _TEMPLATES.get(key)
    if template is None or not template.exists():
        import tempfile

        template = make_workspace(Path(tempfile.mkdtemp()) / "ws", toml, campaigns=campaigns)
        _TEMPLATES[key] = template
    shutil.copytree(template, dest)
    return dest


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(ENV)
    env.update({"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    env.update(extra or {})
    return env


def spawn(
    ws: Path,
    *args: str,
    now: str | None = NOW,
    env: Mapping[str, str] | None = None,
    prelude: str = "",
) -> subprocess.Popen[str]:
    """``python -m outreach -w WS [--now NOW] ARGS`` as its own process; ``prelude``, a
    statement run before the CLI (``python -c``), may set a module's constant."""
    if prelude:
        cmd = [sys.executable, "-c", f"{prelude}\nfrom outreach.cli import main\nmain()"]
    else:
        cmd = [sys.executable, "-m", "outreach"]
    cmd += ["-w", str(ws)]
    if now:
        cmd += ["--now", now]
    return subprocess.Popen(
        [*cmd, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
    )


def run_cli(
    ws: Path,
    *args: str,
    now: str | None = NOW,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    proc = spawn(ws, *args, now=now, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_until(predicate: Callable[[], bool], timeout: float = 30, step: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


class Stalls:
    """The longest spell this process went unscheduled while the block ran (a loaded
    machine): the loopback emulators are threads of it, so requests that reached one
    meanwhile were stamped together once it ran again, bunched by as much."""

    TICK = 0.005

    def __init__(self) -> None:
        self.longest = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="stalls")

    def _watch(self) -> None:
        while True:
            before = time.monotonic()
            if self._done.wait(self.TICK):
                return
            self.longest = max(self.longest, time.monotonic() - before - self.TICK)

    def __enter__(self) -> Stalls:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def stop(proc: subprocess.Popen[str], sig: int, timeout: float = 30) -> tuple[int, str, str]:
    """Send ``sig`` and collect the process; its exit code as the shell reports it."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    code = proc.returncode
    return (128 + -code if code < 0 else code), out, err


def db(ws: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(ws / "outreach.db", timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def query(ws: Path, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    conn = db(ws)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def statuses(ws: Path) -> Counter[str]:
    return Counter(
        {r[0]: r[1] for r in query(ws, "SELECT status, count(*) FROM deliveries GROUP BY status")}
    )


def sends_per_to(server: LoopbackServer) -> Counter[str]:
    """How many message requests the emulator received per recipient."""
    counts: Counter[str] = Counter()
    for request in list(server.requests):
        if request.method == "POST" and request.path.endswith("/Messages.json"):
            counts[request.form().get("To", "")] += 1
    return counts


def post_count(server: LoopbackServer) -> int:
    return sum(1 for r in list(server.requests) if r.method == "POST")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_json(ws: Path, *args: str, now: str = NOW, ok: Iterable[int] = (0, 3)) -> dict[str, Any]:
    result = run_cli(ws, "run", *args, "--json", now=now)
    assert result.returncode in tuple(ok), result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
