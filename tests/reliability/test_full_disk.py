"""A full (or read-only) disk, for real: a small tmpfs, filled to the last byte.

The outbox on a full disk is a temporary fault of that channel: its deliveries stay
queued, its circuit opens with one line that says what and where, no temporary file is
left, and once space is freed the next run sends each message once. Everything else that
writes (the database, an export, a report, the lock file) answers a full disk with one line
naming the file and "disk full", exit 4 (3 where part was done), and no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from outreach.sending import journal
from tests.servers.twilio import TwilioEmulator

from .conftest import SmallDisk
from .support import (
    child_env,
    customers_csv,
    make_workspace,
    outreach_toml,
    query,
    run_cli,
    sends_per_to,
    statuses,
    twilio_channel,
)

LATER = "2026-12-01T10:30:00Z"


def _one_error_line(stderr: str, *words: str) -> str:
    """The command's stderr is exactly one ``error:`` line holding ``words``."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _outbox_toml(path: Path) -> str:
    return outreach_toml(f'[channels.sms]\nprovider = "outbox"\npath = "{path}"\n')


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_the_outbox_on_a_full_disk_keeps_deliveries_queued_and_sends_them_once_later(
    tmp_path: Path, small_disk: SmallDisk, fault: str
) -> None:
    outbox = small_disk.path / "outbox"
    ws = make_workspace(tmp_path / "ws", _outbox_toml(outbox), customers=300)
    if fault == "full":
        small_disk.fill()
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk.path)], check=True)
    done = run_cli(ws, "run", "blast")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1, done.stderr
    assert "circuit open" in problems[0] and str(outbox) in problems[0], problems[0]
    assert ("disk full" if fault == "full" else "read-only") in problems[0], problems[0]
    assert statuses(ws) == {"queued": 300}
    assert not list(small_disk.path.rglob("*.tmp"))
    # a temporary fault: no run counted against the delivery's retry budget
    assert query(ws, "SELECT max(attempts) FROM deliveries")[0][0] == 0

    if fault == "full":
        small_disk.free()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk.path)], check=True)
    again = run_cli(ws, "run", now=LATER)
    assert again.returncode == 0, again.stderr
    assert statuses(ws) == {"sent": 300}
    assert len(list((outbox / "sms").glob("*.json"))) == 300
    sent = query(
        ws, "SELECT count(*), count(DISTINCT delivery_id) FROM messages WHERE direction = 'out'"
    )[0]
    assert tuple(sent) == (300, 300)


def _ws_on_disk(small_disk: SmallDisk, tmp_path: Path, customers: int = 50) -> Path:
    """A workspace (and database) on the small disk; its outbox on the roomy one."""
    return make_workspace(
        small_disk.path / "ws", _outbox_toml(tmp_path / "outbox"), customers=customers
    )


def test_run_on_a_full_disk_says_disk_full_and_a_later_run_sends_everything_once(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    ws = _ws_on_disk(small_disk, tmp_path, customers=3000)
    assert run_cli(ws, "run").returncode == 0  # the lock file exists from here on
    small_disk.fill(leave=256 * 1024)  # the database opens; planning fills the disk
    done = run_cli(ws, "run", "blast")
    assert done.returncode in (3, 4), done.stderr
    line = _one_error_line(done.stderr, "outreach.db", "disk full")
    assert line.startswith("error: ")
    small_disk.free()
    again = run_cli(ws, "run", "blast", now=LATER)
    assert again.returncode == 0, again.stderr
    assert statuses(ws) == {"sent": 3000}
    assert len(list((tmp_path / "outbox" / "sms").glob("*.json"))) == 3000


def test_recording_sends_on_a_full_disk_says_disk_full(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    ws = _ws_on_disk(small_disk, tmp_path, customers=3000)
    planned = run_cli(ws, "run", "blast", "--limit", "1")
    assert planned.returncode == 0, planned.stderr
    small_disk.fill(leave=128 * 1024)  # the database opens; recording fills the disk
    done = run_cli(ws, "run")
    assert done.returncode in (3, 4), done.stderr
    line = _one_error_line(done.stderr, "outreach.db", "disk full")
    # exit 3 exactly when some sends were recorded before the disk filled, and it says so
    assert (done.returncode == 3) == ("were sent and recorded" in line), line
    small_disk.free()
    assert run_cli(ws, "run", now=LATER).returncode == 0
    assert statuses(ws) == {"sent": 3000}


def test_customers_import_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    ws = _ws_on_disk(small_disk, tmp_path, customers=0)
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(customers_csv(20_000), encoding="utf-8")
    small_disk.fill(leave=1024 * 1024)  # a batch or two fit
    done = run_cli(ws, "customers", "import", str(csv_file))
    assert done.returncode == 3, done.stderr
    line = _one_error_line(done.stderr, "outreach.db", "disk full")
    if done.returncode == 3:
        assert "imported" in line, line  # says how far it got


def test_replies_ingest_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    ws = _ws_on_disk(small_disk, tmp_path, customers=10)
    replies = tmp_path / "replies.jsonl"
    replies.write_text(
        "".join(
            json.dumps(
                {
                    "channel": "sms",
                    "from": f"+3161{i:07d}",
                    "text": f"hello {i} " * 20,
                    "id": f"r{i}",
                }
            )
            + "\n"
            for i in range(20_000)
        ),
        encoding="utf-8",
    )
    small_disk.fill(leave=2 * 1024 * 1024)  # a batch or two fit
    done = run_cli(ws, "replies", "ingest", str(replies))
    assert done.returncode == 3, done.stderr
    line = _one_error_line(done.stderr, "outreach.db", "disk full")
    assert "lines were stored" in line, line


def _roomy_ws(tmp_path: Path) -> Path:
    ws = make_workspace(tmp_path / "ws", _outbox_toml(tmp_path / "outbox"), customers=20)
    rows = "".join(
        json.dumps(
            {
                "channel": "sms",
                "from": f"+3161{i % 20:07d}",
                "text": "a reply that takes some room " * 40,
                "id": f"x{i}",
            }
        )
        + "\n"
        for i in range(4000)
    )
    (tmp_path / "replies.jsonl").write_text(rows, encoding="utf-8")
    assert run_cli(ws, "replies", "ingest", str(tmp_path / "replies.jsonl")).returncode == 0
    return ws


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_export_to_a_file_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk, fmt: str) -> None:
    ws = _roomy_ws(tmp_path)
    target = small_disk.path / f"replies.{fmt}"
    small_disk.fill()
    done = run_cli(ws, "export", "replies", "--format", fmt, "--output", str(target))
    assert done.returncode == 4, done.stderr
    _one_error_line(done.stderr, str(target), "disk full")
    assert sorted(p.name for p in small_disk.path.iterdir()) == [".filler"]


def test_export_to_stdout_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    ws = _roomy_ws(tmp_path)
    small_disk.fill()
    with (small_disk.path / "out.csv").open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "outreach", "-w", str(ws), "export", "replies"],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            timeout=120,
            check=False,
        )
    assert done.returncode == 4, done.stderr
    _one_error_line(done.stderr, "standard output", "disk full")


def test_report_html_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    ws = make_workspace(tmp_path / "ws", _outbox_toml(tmp_path / "outbox"), customers=20)
    assert run_cli(ws, "run", "blast").returncode == 0
    target = small_disk.path / "report.html"
    small_disk.fill()
    done = run_cli(ws, "report", "blast", "--html", str(target))
    assert done.returncode == 4, done.stderr
    _one_error_line(done.stderr, str(target), "disk full")
    assert not target.exists()


def test_the_lock_file_on_a_full_disk_is_never_left_empty(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    ws = _ws_on_disk(small_disk, tmp_path, customers=5)
    lock = ws / ".outreach.lock"
    assert not lock.exists()
    small_disk.fill()
    done = run_cli(ws, "run", "blast")
    assert done.returncode == 4, done.stderr
    _one_error_line(done.stderr, ".outreach.lock", "disk full")
    assert not lock.exists() or lock.read_text().strip().isdigit()
    small_disk.free()
    assert run_cli(ws, "run", "blast").returncode == 0
    assert lock.read_text().strip().isdigit()
    assert statuses(ws) == {"sent": 5}


@pytest.mark.parametrize("command", [("status",), ("customers", "list"), ("run",)])
def test_any_command_on_a_completely_full_disk_says_disk_full(
    tmp_path: Path, small_disk: SmallDisk, command: tuple[str, ...]
) -> None:
    ws = _ws_on_disk(small_disk, tmp_path, customers=5)
    assert run_cli(ws, "run").returncode == 0
    small_disk.fill()
    done = run_cli(ws, *command)
    assert done.returncode == 4, done.stderr
    _one_error_line(done.stderr, "disk full")


def test_with_helper_processes_the_open_circuit_is_still_one_line(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    outbox = small_disk.path / "outbox"
    toml = _outbox_toml(outbox).replace("[sending]\n", "[sending]\nprocesses = 2\n")
    ws = make_workspace(tmp_path / "ws", toml, customers=7000)
    small_disk.fill()
    done = run_cli(ws, "run", "blast")
    assert done.returncode == 0, done.stderr
    circuit = [line for line in done.stderr.splitlines() if "circuit open" in line]
    assert len(circuit) == 1, done.stderr
    assert statuses(ws) == {"queued": 7000}
    assert not list(small_disk.path.rglob("*.tmp"))


def test_a_send_journal_on_a_full_disk_is_given_up_and_the_run_sends_everything_once(
    tmp_path: Path, small_disk: SmallDisk, twilio_server: TwilioEmulator
) -> None:
    """The workspace folder fills while the database (elsewhere) has room: the send
    journal fails, is deleted (a crash now would leave every claimed delivery unknown,
    never one requeued on a journal's missing word), and the run sends on."""
    customers = 1500
    toml = outreach_toml(twilio_channel(twilio_server.url, concurrency=8)).replace(
        'database = "outreach.db"', f'database = "{tmp_path / "outreach.db"}"'
    )
    ws = make_workspace(small_disk.path / "ws", toml, customers=customers)
    small_disk.fill(leave=48 * 1024)  # the journal opens, then fills the disk
    done = run_cli(ws, "run", "blast", "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "send journal" in done.stderr and "disk full" in done.stderr, done.stderr
    assert json.loads(done.stdout)["sent"] == customers
    received = sends_per_to(twilio_server)
    assert len(received) == customers and max(received.values()) == 1
    assert not list((ws / journal.DIRECTORY).iterdir())
