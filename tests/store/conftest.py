"""Each store implementation behind one ``backend`` fixture, for the contract tests.

A backend opens a fresh store, and runs the odd raw statement a contract test needs to
check what the interface refuses (a newer schema, a rewrite of the consent ledger).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from outreach.store import Store, open_store
from tests.postgresql import empty_database


@dataclass
class Backend:
    """One implementation under test."""

    name: str
    database: str
    raw: Callable[[str], Any]  # one statement on a connection of its own

    def open(self) -> Store:
        return open_store(self.database)


def _sqlite_raw(path: Path) -> Callable[[str], Any]:
    def run(sql: str) -> Any:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    return run


def _postgresql_raw(url: str) -> Callable[[str], Any]:
    def run(sql: str) -> Any:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else None

    return run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "outreach.db"
        yield Backend("sqlite", str(path), _sqlite_raw(path))
        return
    url = request.getfixturevalue("postgresql_database")
    yield Backend("postgresql", url, _postgresql_raw(url))
    empty_database(url)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    yield opened
    opened.close()
