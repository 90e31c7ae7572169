"""The benchmark runner still runs and prints its JSON report (figures are not asserted).

The benchmarks themselves are never run by the suite; this smoke test runs the two
cheapest ones at tiny sizes (``BENCH_TINY=1``) through the real script, so a refactor
that breaks ``benchmarks/run.py`` is caught here rather than on release day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ROW_KEYS = {
    "name",
    "figure",
    "size",
    "runs",
    "median",
    "min",
    "max",
    "unit",
    "peak_rss_mb",
    "target",
    "met",
    "note",
    "status",
}


def test_quick_startup_and_render_print_one_json_row_each() -> None:
    env = {**os.environ, "BENCH_TINY": "1"}
    env.pop("OUTREACH_WORKSPACE", None)
    report = _report("--quick", "--only", "startup", "render_100k", env=env)
    assert report["mode"] == "tiny"
    assert report["machine"]["cpus"] >= 1
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["startup", "render_100k"]
    for row in rows.values():
        assert set(row) == ROW_KEYS
        assert row["status"] == "ok", row["status"]
        assert row["runs"] >= 1
        assert row["min"] <= row["median"] <= row["max"]
        assert row["peak_rss_mb"] > 0
        assert isinstance(row["met"], bool)
    assert rows["startup"]["unit"] == "s" and 0 < rows["startup"]["median"] < 10
    assert rows["render_100k"]["unit"] == "msg/s" and rows["render_100k"]["median"] > 0
    assert rows["render_100k"]["size"] == "200 messages"


def _report(*args: str, env: dict[str, str]) -> dict[str, Any]:
    """``benchmarks/run.py ARGS --json``, which must succeed: its report."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), *args, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _bench(*args: str, env: dict[str, str]) -> dict[str, dict[str, object]]:
    return {row["name"]: row for row in _report(*args, env=env)["rows"]}


def test_the_postgresql_rows_say_in_one_line_that_there_is_no_server() -> None:
    env = {k: v for k, v in os.environ.items() if "POSTGRESQL" not in k}
    env["BENCH_TINY"] = "1"
    rows = _bench("--only", "run_100k_pg", "copy_1m", "serve_replicas", env=env)
    assert len(rows) == 3
    for row in rows.values():
        assert str(row["status"]).startswith(
            "not available: no PostgreSQL server: pass --postgresql"
        )


@pytest.mark.postgresql
def test_the_postgresql_rows_run_and_assert_their_counts_at_tiny_sizes() -> None:
    from tests.postgresql import POSTGRESQL_ENV

    url = os.environ[POSTGRESQL_ENV]
    env = {**os.environ, "BENCH_TINY": "1"}
    env.pop("OUTREACH_WORKSPACE", None)
    rows = _bench("--only", "run_100k_pg", "copy_1m", "--postgresql", url, env=env)
    assert rows["run_100k_pg"]["status"] == "ok", rows["run_100k_pg"]
    assert "0 customers sent twice, 0 lost (asserted)" in str(rows["run_100k_pg"]["note"])
    assert rows["copy_1m"]["status"] == "ok", rows["copy_1m"]
    assert "counts asserted (customers 200, consent 200, deliveries 200)" in str(
        rows["copy_1m"]["note"]
    )


@pytest.mark.postgresql
def test_the_serve_replicas_row_kills_a_replica_and_asserts_none_lost_or_stored_twice() -> None:
    from tests.postgresql import POSTGRESQL_ENV

    env = {**os.environ, "BENCH_TINY": "1"}
    env.pop("OUTREACH_WORKSPACE", None)
    url = os.environ[POSTGRESQL_ENV]
    rows = _bench("--only", "serve_replicas", "--postgresql", url, env=env)
    row = rows["serve_replicas"]
    assert row["status"] == "ok", row
    assert "0 lost, 0 stored twice, each answer acted on once (asserted)" in str(row["note"])
    assert isinstance(row["median"], float) and row["median"] > 0


def test_the_loopback_smtp_server_counts_messages_and_its_own_cpu_time() -> None:
    """What the peer rows' ceiling note rests on: the server's count, span and CPU."""
    import asyncio

    import aiosmtplib

    from benchmarks.context import server_busy, server_rate
    from benchmarks.harness import LoopbackServer

    async def send(port: int, n: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            for i in range(n):
                await client.sendmail(
                    "a@example.com", [f"b{i}@example.com"], b"Subject: x\r\n\r\nhi\r\n"
                )

    with LoopbackServer("smtp") as server:
        server.stats()
        asyncio.run(send(server.port, 200))
        stats = server.stats()
        assert server.last_stats == stats
        assert stats["count"] == 200 and stats["last"] > stats["first"] > 0
        assert stats["cpu"] > 0 and server_rate(stats) > 0
        assert 0 < server_busy(stats) < 2  # one process, so at most about one CPU
        idle = server.stats()  # nothing sent since: nothing counted
        assert idle["count"] == 0 and server_busy(idle) == 0
