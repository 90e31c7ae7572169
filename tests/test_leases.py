"""Leases on SQLite: `run` recovers only what dead senders left in flight, never a live
sender's (serve's replies, a helper), and finds a dead one on this host at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outreach.deliveries import DUE_STATES
from outreach.sending.lease import HOST, running
from outreach.store import open_store
from tests.conftest import Cli
from tests.test_cli_run import NOW, deliveries, outbox_files
from tests.test_cli_run import imported as imported

LATER = "2026-12-01T14:10:00Z"  # us1's window (New York) is open


def _claim_us1(ws: Path, pid: int, host: str = HOST) -> str:
    """us1's deferred delivery, claimed by a process registered as ``pid`` on ``host``."""
    store = open_store(ws / "outreach.db")
    try:
        worker = store.workers.register(host, pid, "serve")
        (us1,) = [d for d in deliveries(ws) if d["customer_id"] == "us1"]
        claimed = store.deliveries.claim_due(
            LATER, 1, ids=[str(us1["id"])], from_states=DUE_STATES, worker=worker
        )
        assert len(claimed) == 1
        return str(us1["id"])
    finally:
        store.close()


def _status(ws: Path, delivery_id: str) -> object:
    return next(d["status"] for d in deliveries(ws) if d["id"] == delivery_id)


def test_run_leaves_a_live_senders_delivery_in_flight_and_recovers_a_dead_ones(
    imported: Path, cli: Cli
) -> None:
    assert cli("--now", NOW, "run", "nps", "--json").exit_code == 0
    live = subprocess.Popen(["sleep", "60"])
    try:
        sending = _claim_us1(imported, live.pid)
        files = outbox_files(imported)
        result = cli("--now", LATER, "run", "--json")
        assert result.exit_code == 0, result.stderr
        # in flight in a live process: not resent, not made unknown
        assert _status(imported, sending) == "sending"
        assert outbox_files(imported) == files
        assert json.loads(result.stdout)["problems"] == []
    finally:
        live.kill()
        live.wait()
    assert not running(live.pid)
    # its process has gone from this host: recovered at once, without waiting for the
    # lease (the outbox cannot duplicate, so it is queued again and sent)
    result = cli("--now", LATER, "run", "--json")
    assert result.exit_code == 0, result.stderr
    assert _status(imported, sending) == "sent"
    assert len(outbox_files(imported)) == len(files) + 1


def test_a_sender_on_another_host_is_dead_only_once_its_lease_has_expired(
    imported: Path, cli: Cli
) -> None:
    config = imported / "outreach.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[sending]", "[sending]\nlease = 1", 1),
        encoding="utf-8",
    )
    assert cli("--now", NOW, "run", "nps", "--json").exit_code == 0
    # a pid that runs here proves nothing about a process on another host
    sending = _claim_us1(imported, os.getpid(), host="elsewhere")
    assert cli("--now", LATER, "run", "--json").exit_code == 0
    assert _status(imported, sending) == "sending"
    time.sleep(1.2)  # no heartbeat from it for longer than the lease
    assert cli("--now", LATER, "run", "--json").exit_code == 0
    assert _status(imported, sending) == "sent"


def test_a_lease_that_is_not_a_number_of_seconds_is_one_line(imported: Path, cli: Cli) -> None:
    config = imported / "outreach.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[sending]", '[sending]\nlease = "30s"', 1),
        encoding="utf-8",
    )
    result = cli("run")
    assert result.exit_code == 4
    assert "lease: expected seconds from 1 to 3600" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_worker_on_sqlite_sends_what_is_due_beside_runs_and_stops_with_exit_0(
    imported: Path, cli: Cli
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    cmd = [sys.executable, "-m", "outreach", "-w", str(imported), "--now", NOW]
    worker = subprocess.Popen(
        [*cmd, "worker", "--poll", "0.2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while len(outbox_files(imported)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(outbox_files(imported)) == 2  # nps is due: planned and sent
        # between its passes the workspace lock is free: a run gets it (waiting a little)
        result = cli("--now", NOW, "run", "--wait", "30", "--json")
        assert result.exit_code == 0, result.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    summary = json.loads(out)
    assert summary["signal"] == "SIGTERM" and summary["sent"] == 2
    assert summary["planned"] == ["nps 2026-12-01T09:00:00Z"]
    assert len(outbox_files(imported)) == 2
    store = open_store(imported / "outreach.db")
    try:
        assert store.workers.list_workers() == []  # its lease given back
    finally:
        store.close()


def test_the_heartbeats_own_connection_does_not_read_the_whole_file_again(
    tmp_path: Path,
) -> None:
    from outreach.errors import DamagedStoreError
    from tests.reliability.test_damaged_store import damage

    path = tmp_path / "outreach.db"
    store = open_store(path)
    with store.write():
        store.customers.upsert_customers(
            ["id", "name"], [[f"c{i:05d}", "x" * 200] for i in range(3000)], NOW
        )
    store.close()
    damage(path)
    with pytest.raises(DamagedStoreError):
        open_store(path)  # quick_check reads every page when a command opens it
    # the heartbeat's second connection of a process that checked the file: no full read
    open_store(path, check=False).close()


def _unshare_pid() -> list[str]:
    """The argv prefix that runs a command in a new pid namespace, on this host name; a
    skip where this machine does not allow it (it needs root, or user namespaces)."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        probe = None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs `unshare --pid` (util-linux, as root) to make a pid namespace")
    return prefix


def test_a_container_sharing_the_host_name_does_not_find_this_hosts_live_sender_dead(
    imported: Path, cli: Cli
) -> None:
    unshare = _unshare_pid()
    assert cli("--now", NOW, "run", "nps", "--json").exit_code == 0
    # this process is live, but its pid means nothing inside another pid namespace: a
    # run there (a container with the host's name) must wait for the lease, not find it
    # gone and send the delivery again
    sending = _claim_us1(imported, os.getpid())
    files = outbox_files(imported)
    run = [sys.executable, "-m", "outreach", "-w", str(imported), "--now", LATER, "run"]
    inside = subprocess.run(
        [*unshare, *run, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inside.returncode == 0, inside.stderr
    assert _status(imported, sending) == "sending"
    assert outbox_files(imported) == files
    # and the run inside registered under a host of its own: the host name, and its
    # pid namespace
    named = subprocess.run(
        [*unshare, sys.executable, "-c", "from outreach.sending.lease import HOST; print(HOST)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert named.stdout.strip().startswith(f"{HOST}/pid:")
