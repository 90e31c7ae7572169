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
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--only",
            "startup",
            "render_100k",
            "--json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
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
