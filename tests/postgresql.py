"""PostgreSQL for the tests: a fresh database per test module on the server that
OUTREACH_TEST_POSTGRESQL names (created from template0, dropped after).

Without the variable, every test marked ``postgresql`` is left out and the run ends with
one line saying how to enable them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRESQL_ENV = "OUTREACH_TEST_POSTGRESQL"
POSTGRESQL_OFF = (
    f"PostgreSQL tests off: set {POSTGRESQL_ENV}=postgresql://postgres@127.0.0.1:5432/test "
    "(a server where that user may create databases) to run them"
)


def postgresql_enabled() -> bool:
    return bool(os.environ.get(POSTGRESQL_ENV))


# last: a test that -k or -m leaves out anyway is not counted as off
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if postgresql_enabled():
        return
    off = [item for item in items if item.get_closest_marker("postgresql")]
    if off:
        config.hook.pytest_deselected(items=off)
        items[:] = [item for item in items if not item.get_closest_marker("postgresql")]
        config.stash[_LEFT_OUT] = len(off)


_LEFT_OUT = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # an xdist worker collects (and leaves out) for itself: it tells the controller, which
    # prints the summary
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["postgresql_left_out"] = session.config.stash.get(_LEFT_OUT, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    # every worker collects the whole suite: each left out the same tests
    left_out = getattr(node, "workeroutput", {}).get("postgresql_left_out", 0)
    config: pytest.Config = node.config  # type: ignore[attr-defined]
    config.stash[_LEFT_OUT] = max(config.stash.get(_LEFT_OUT, 0), left_out)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    left_out = terminalreporter.config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(f"{left_out} {POSTGRESQL_OFF}")


def with_database(url: str, database: str) -> str:
    """``url`` naming another database on the same server."""
    head, _, _ = url.partition("?")[0].rpartition("/")
    return f"{head}/{database}"


@pytest.fixture(scope="module")
def postgresql_database() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database for this test module."""
    import psycopg

    url = os.environ[POSTGRESQL_ENV]
    name = f"outreach_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_database(url: str) -> None:
    """Make the module's database as new again: no tables, no migrations."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
