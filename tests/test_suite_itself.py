"""The suite's own promise to a newcomer: on a machine without a PostgreSQL server the
PostgreSQL half is left out, and the run ends with one line saying how to turn it on,
whether the tests ran in one process or in xdist's workers (which collect for themselves)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgresql import POSTGRESQL_ENV, POSTGRESQL_OFF

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("workers", ["0", "2"])
def test_without_a_server_the_postgresql_tests_are_left_out_with_one_line(workers: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != POSTGRESQL_ENV}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            workers,
            "-p",
            "no:cacheprovider",
            "tests/test_cli_both_stores.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if POSTGRESQL_OFF in line]
    assert len(lines) == 1, result.stdout[-2000:]
    count = int(lines[0].split()[0])
    assert count > 0
    assert "failed" not in result.stdout
