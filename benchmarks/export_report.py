"""Figures of issue 7: export 1,000,000 replies to CSV; report on 1,000,000 deliveries.

    python benchmarks/export_report.py [--customers 250000] [--occurrences 4]
                                       [--reply-percent 100] [--keep DIR]

Builds a workspace with ``outreach init``, fills it with SQL (customers x occurrences
deliveries, one reply per delivery, a survey answer for a third of them, revocations),
then runs the real CLI in a subprocess and reports rows/s, peak RSS and wall time.
Targets: export ≥ 100,000 rows/s with peak RSS < 100 MB; report < 2 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T = "2026-11-0{d}T09:00:00Z"


def fill(db: Path, customers: int, occurrences: int, reply_percent: int) -> None:
    conn = sqlite3.connect(db)
    conn.executescript("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
    occ = [T.format(d=d + 1) for d in range(occurrences)]
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO customers (id, name, phone, created_at, updated_at) "
            "SELECT 'c' || i, 'Customer ' || i, '+316' || (10000000 + i), ?, ? FROM n",
            (customers, occ[0], occ[0]),
        )
        conn.execute(
            "INSERT INTO conversations (id, customer_id, created_at, updated_at) "
            "SELECT rowid, id, created_at, created_at FROM customers"
        )
        survey = json.dumps({"question": "How likely?", "type": "nps", "choices": []})
        for k, o in enumerate(occ):
            conn.execute(
                "INSERT INTO occurrences (campaign, occurrence, kind, status, audience, "
                "planned_at, survey) VALUES ('nps', ?, 'survey', 'planned', ?, ?, ?)",
                (o, customers, o, survey),
            )
            # status mix: 70% delivered, 10% read, 10% sent, 4% failed, 3% skipped, 3% deferred
            conn.execute(
                "INSERT INTO deliveries (id, campaign, occurrence, customer_id, channel, "
                "template, status, reason, error, not_before, created_at, updated_at, sent_at) "
                "SELECT 'd' || ? || '-' || c.rowid, 'nps', ?, c.id, 'sms', 'nps', "
                "CASE WHEN c.rowid % 100 < 70 THEN 'delivered' WHEN c.rowid % 100 < 80 THEN 'read' "
                "WHEN c.rowid % 100 < 90 THEN 'sent' WHEN c.rowid % 100 < 94 THEN 'failed' "
                "WHEN c.rowid % 100 < 97 THEN 'skipped' ELSE 'deferred' END, "
                "CASE WHEN c.rowid % 100 BETWEEN 94 AND 96 THEN 'no_consent' END, "
                "CASE WHEN c.rowid % 100 BETWEEN 90 AND 93 THEN '21211: invalid number' END, "
                "?, ?, ?, CASE WHEN c.rowid % 100 < 90 THEN ? END FROM customers c",
                (k, o, o, o, o, o),
            )
            # one reply per customer and occurrence, an hour after the send
            reply_at = o.replace("T09:", "T10:")
            conn.execute(
                "INSERT INTO messages (conversation_id, customer_id, direction, channel, text, at) "
                "SELECT c.rowid, c.id, 'in', 'sms', "
                "CASE WHEN c.rowid % 3 = 0 THEN '' || (c.rowid % 11) "
                "ELSE '=reply, with \"quotes\"' || char(10) || 'and a newline ' || c.rowid END, ? "
                "FROM customers c WHERE c.rowid % 100 < ?",
                (reply_at, reply_percent),
            )
            conn.execute(
                "INSERT INTO survey_responses (message_id, delivery_id, customer_id, campaign, "
                "occurrence, question, type, answer, score, valid, recorded_at) "
                "SELECT m.id, 'd' || ? || '-' || m.conversation_id, m.customer_id, 'nps', ?, "
                "'How likely?', 'nps', m.text, CAST(m.text AS INTEGER), 1, m.at "
                "FROM messages m WHERE m.at = ? AND m.conversation_id % 3 = 0",
                (k, o, reply_at),
            )
        conn.execute(
            "INSERT INTO consent (customer_id, channel, status, source, recorded_at) "
            "SELECT id, 'sms', 'opted_out', 'keyword:STOP', ? FROM customers WHERE rowid % 100 = 1",
            (occ[0].replace("T09:", "T11:"),),
        )
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as a long-lived workspace would be
    conn.close()


def run(args: list[str]) -> tuple[float, int, subprocess.CompletedProcess[bytes]]:
    """Wall time, peak RSS (KB) of the child, and its result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "outreach", *args], capture_output=True)
    took = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr.decode())
    # ru_maxrss of children is the max over all children so far: run the big one last
    return took, max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before), proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--occurrences", type=int, default=4)
    parser.add_argument(
        "--reply-percent",
        type=int,
        default=100,
        help="share of deliveries answered by one inbound message",
    )
    parser.add_argument("--keep", type=Path, help="build (or reuse) the workspace here")
    opts = parser.parse_args()
    folder = opts.keep or Path(tempfile.mkdtemp(prefix="outreach-bench-")) / "ws"
    try:
        if not (folder / "outreach.db").exists():
            subprocess.run(
                [sys.executable, "-m", "outreach", "init", str(folder)],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [sys.executable, "-m", "outreach", "-w", str(folder), "status", "--json"],
                check=True,
                capture_output=True,
            )  # creates the db
            start = time.perf_counter()
            fill(folder / "outreach.db", opts.customers, opts.occurrences, opts.reply_percent)
            print(f"filled in {time.perf_counter() - start:.1f} s")
        total = opts.customers * opts.occurrences * min(opts.reply_percent, 100) // 100
        w = ["-w", str(folder)]
        took, _, proc = run([*w, "report", "nps", "--json"])
        data = json.loads(proc.stdout)
        print(
            f"report nps ({data['planned'] + sum(data['skipped'].values()):,} deliveries): "
            f"{took:.2f} s wall incl. start-up; sent {data['sent']:,}, replied "
            f"{data['replied']:,}, nps {data['nps']}"
        )
        took, _, _ = run([*w, "report", "nps", "--occurrence", T.format(d=1), "--json"])
        print(f"report nps --occurrence (one of {opts.occurrences}): {took:.2f} s")
        took, _, _ = run([*w, "--help"])
        print(f"outreach --help: {took:.2f} s (start-up included above)")
        out = folder / "replies.csv"
        took, rss, _ = run([*w, "export", "replies", "-o", str(out)])
        print(
            f"export replies: {total:,} rows in {took:.2f} s = {total / took:,.0f} rows/s, "
            f"peak RSS {rss / 1024:.0f} MB, {out.stat().st_size / 1e6:.0f} MB of CSV"
        )
    finally:
        if opts.keep is None:
            shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
