"""Interrupted exports and imports leave no half-written result.

``export replies --output F`` of a few hundred thousand messages is stopped while its
temporary file grows, by SIGINT, SIGTERM and SIGKILL: ``F`` must not appear (a reader
never sees half a file), the temporary file must be gone after a signal the process can
handle, and the next export must write ``F`` whole. ``customers import`` of 10,000 rows
is killed after its first committed batch: only whole batches (2,000 rows, each with its
consent rows) are in the store, and importing again completes it.
"""

from __future__ import annotations

import csv
import signal
import sqlite3
from contextlib import suppress
from pathlib import Path

import pytest

from outreach.customers.importer import BATCH_SIZE

from .support import (
    customers_csv,
    make_workspace,
    outreach_toml,
    query,
    run_cli,
    spawn,
    stop,
    wait_until,
)

OUTBOX = '[channels.sms]\nprovider = "outbox"\nconcurrency = 4\n'
MESSAGES = 150_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose store holds ``MESSAGES`` inbound messages from 1,000 customers."""
    ws = make_workspace(
        tmp_path_factory.mktemp("export") / "ws", outreach_toml(OUTBOX), customers=1000
    )
    conn = sqlite3.connect(ws / "outreach.db")
    with conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM customers ORDER BY id")]
        conn.executemany(
            "INSERT INTO conversations (customer_id, status, created_at, updated_at) "
            "VALUES (?, 'open', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
            [(c,) for c in ids],
        )
        conv = dict(conn.execute("SELECT customer_id, id FROM conversations"))
        conn.executemany(
            "INSERT INTO messages (conversation_id, customer_id, direction, channel, address, "
            "text, external_id, at) VALUES (?, ?, 'in', 'sms', ?, ?, ?, ?)",
            (
                (
                    conv[ids[i % 1000]],
                    ids[i % 1000],
                    f"+3161{i % 1000:07d}",
                    f'reply number {i}, with a comma and "quotes"',
                    f"ext-{i}",
                    f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                )
                for i in range(MESSAGES)
            ),
        )
    conn.close()
    return ws


def _temps(folder: Path, name: str) -> list[Path]:
    return list(folder.glob(f".{name}.*.tmp"))


def _temp_size(folder: Path, name: str) -> int:
    size = 0
    for path in _temps(folder, name):
        # renamed into place between the glob and the stat
        with suppress(FileNotFoundError):
            size = max(size, path.stat().st_size)
    return size


def _interrupt_export(ws: Path, sig: int, name: str) -> tuple[Path, int, str]:
    target = ws / name
    proc = spawn(ws, "export", "replies", "--output", str(target))
    assert wait_until(
        lambda: _temp_size(ws, name) > 50_000 or proc.poll() is not None,
        timeout=60,
    )
    assert proc.poll() is None, "the export finished before it could be interrupted"
    code, _, err = stop(proc, sig)
    return target, code, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_export_leaves_no_file(big: Path, sig: int) -> None:
    name = f"replies-{int(sig)}.csv"
    target, code, err = _interrupt_export(big, sig, name)
    assert code != 0
    assert not target.exists()
    if sig != signal.SIGKILL:
        assert _temps(big, name) == [], "the temporary file was left behind"
        assert "Traceback" not in err
        return
    # SIGKILL cannot be handled: its temporary file (hidden, .NAME.PID.*.tmp) stays until
    # the next export to that file, which sweeps it (its process is gone) and writes the
    # whole file
    assert len(_temps(big, name)) == 1
    result = run_cli(big, "export", "replies", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert _temps(big, name) == []
    with target.open(encoding="utf-8", newline="") as f:
        assert sum(1 for _ in csv.reader(f)) == MESSAGES + 1


def test_an_export_stopped_by_sigterm_leaves_no_temporary_file(big: Path) -> None:
    name = "replies-term.csv"
    target, _, _ = _interrupt_export(big, signal.SIGTERM, name)
    assert not target.exists()
    leftovers = _temps(big, name)
    for leftover in leftovers:
        leftover.unlink()
    assert leftovers == []


def test_an_import_killed_mid_file_keeps_only_whole_batches(tmp_path: Path) -> None:
    rows = 5 * BATCH_SIZE
    ws = make_workspace(tmp_path / "ws", outreach_toml(OUTBOX), customers=0)
    path = tmp_path / "many.csv"
    path.write_text(customers_csv(rows), encoding="utf-8")

    def count() -> int:
        try:
            return int(query(ws, "SELECT count(*) FROM customers")[0][0])
        except sqlite3.OperationalError:
            return 0

    proc = spawn(ws, "customers", "import", str(path))
    assert wait_until(lambda: count() > 0 or proc.poll() is not None, timeout=60)
    stop(proc, signal.SIGKILL)
    n = count()
    assert n > 0 and n % BATCH_SIZE == 0, f"{n} customers: a partial batch was committed"
    consented = query(ws, "SELECT count(DISTINCT customer_id) FROM consent")[0][0]
    assert consented == n, "customers and their consent rows were not committed together"
    result = run_cli(ws, "customers", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert count() == rows
    assert query(ws, "SELECT count(*) FROM consent")[0][0] == rows
