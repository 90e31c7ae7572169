"""A damaged or empty database: refused in one line (exit 4) by every command, unchanged.

The damage is what a bad disk or a careless copy does: a page of random bytes written into
the middle of ``outreach.db``. Each command, through a real process, must answer with one
line naming the file and "damaged" and exit 4, and must not have written a byte into it.
``outreach store check`` runs the full integrity check and lists what it found. An empty
(zero-length) database is refused the same way, never silently made into a new workspace.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from .support import customers_csv, make_workspace, outreach_toml, run_cli

OUTBOX = '[channels.sms]\nprovider = "outbox"\n'


def _one_error_line(stderr: str, *words: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def damage(db: Path, seed: int = 20) -> None:
    """A page of random bytes into the middle of the (checkpointed) database file."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    size = db.stat().st_size
    with db.open("r+b") as file:
        file.seek((size // 2) // page * page)
        file.write(random.Random(seed).randbytes(page))
    check = sqlite3.connect(db)
    try:
        assert check.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    except sqlite3.DatabaseError:
        pass
    finally:
        check.close()


def _digest(ws: Path) -> str:
    return hashlib.sha256((ws / "outreach.db").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with customers, a sent campaign and replies, made once."""
    root = tmp_path_factory.mktemp("sound")
    ws = make_workspace(root / "ws", outreach_toml(OUTBOX), customers=3000)
    assert run_cli(ws, "run", "blast").returncode == 0
    replies = root / "replies.jsonl"
    replies.write_text(
        "".join(
            json.dumps(
                {"channel": "sms", "from": f"+3161{i:07d}", "text": f"thanks {i}", "id": f"r{i}"}
            )
            + "\n"
            for i in range(500)
        ),
        encoding="utf-8",
    )
    assert run_cli(ws, "replies", "ingest", str(replies)).returncode == 0
    return ws


@pytest.fixture
def damaged(sound: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(sound, ws)
    damage(ws / "outreach.db")
    return ws


def _inputs(tmp_path: Path) -> dict[str, str]:
    customers = tmp_path / "more.csv"
    customers.write_text(customers_csv(50, start=5000), encoding="utf-8")
    replies = tmp_path / "more.jsonl"
    replies.write_text(
        json.dumps({"channel": "sms", "from": "+31610000001", "text": "STOP", "id": "late-1"})
        + "\n",
        encoding="utf-8",
    )
    return {"CUSTOMERS": str(customers), "REPLIES": str(replies)}


COMMANDS = [
    ("customers", "import", "CUSTOMERS"),
    ("customers", "list"),
    ("status",),
    ("queue",),
    ("run", "blast"),
    ("run",),
    ("report", "blast"),
    ("replies", "ingest", "REPLIES"),
    ("export", "replies"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_refuses_a_damaged_database_in_one_line_and_writes_nothing(
    damaged: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    inputs = _inputs(tmp_path)
    before = _digest(damaged)
    done = run_cli(damaged, *(inputs.get(part, part) for part in command))
    assert done.returncode == 4, done.stderr
    line = _one_error_line(done.stderr, "outreach.db", "damaged", "Backups")
    assert line.startswith("error: ")
    assert _digest(damaged) == before


def test_debug_shows_the_traceback_and_keeps_the_exit_code(damaged: Path) -> None:
    done = run_cli(damaged, "--debug", "status")
    assert done.returncode == 4, done.stderr
    assert "Traceback" in done.stderr and "damaged" in done.stderr


def test_store_check_runs_the_full_integrity_check(sound: Path, damaged: Path) -> None:
    ok = run_cli(sound, "store", "check")
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = run_cli(damaged, "store", "check")
    assert bad.returncode == 4, bad.stderr
    assert bad.stdout.strip(), "the damage found is listed"
    _one_error_line(bad.stderr, "outreach.db", "damaged")


def test_an_empty_database_file_is_refused_not_made_into_a_new_workspace(
    sound: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(sound, ws)
    for name in ("outreach.db-wal", "outreach.db-shm"):
        (ws / name).unlink(missing_ok=True)
    (ws / "outreach.db").write_bytes(b"")
    for command in (("customers", "list"), ("status",), ("run", "blast")):
        done = run_cli(ws, *command)
        assert done.returncode == 4, done.stderr
        _one_error_line(done.stderr, "outreach.db", "empty")
        assert (ws / "outreach.db").stat().st_size == 0


def test_a_missing_database_is_created(sound: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(sound, ws)
    for name in ("outreach.db", "outreach.db-wal", "outreach.db-shm"):
        (ws / name).unlink(missing_ok=True)
    done = run_cli(ws, "customers", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert (ws / "outreach.db").stat().st_size > 0
    assert not list(ws.glob(".outreach.db.*"))
