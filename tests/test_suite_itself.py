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


def _pytest_without_a_server(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != POSTGRESQL_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.mark.parametrize("workers", ["0", "2"])
def test_without_a_server_the_postgresql_tests_are_left_out_with_one_line(workers: str) -> None:
    result = _pytest_without_a_server("-n", workers, "tests/test_cli_both_stores.py")
    lines = [line for line in result.stdout.splitlines() if POSTGRESQL_OFF in line]
    assert len(lines) == 1, result.stdout[-2000:]
    count = int(lines[0].split()[0])
    assert count > 0
    assert "failed" not in result.stdout


def test_tests_that_k_leaves_out_anyway_are_not_counted_as_off() -> None:
    # the SQLite half only: no PostgreSQL test would have run, so none is "off"
    result = _pytest_without_a_server("-n", "0", "-k", "sqlite", "tests/test_cli_both_stores.py")
    assert "passed" in result.stdout
    assert POSTGRESQL_OFF not in result.stdout, result.stdout[-2000:]
