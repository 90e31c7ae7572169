"""PostgreSQL for the benchmarks: a fresh database per measured run, dropped after.

The server is the one ``OUTREACH_BENCH_POSTGRESQL`` names (else the test suite's
``OUTREACH_TEST_POSTGRESQL``): a URL whose user may create databases. Without either, a
PostgreSQL benchmark reports "not available" and says which variable to set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .harness import NotAvailable

SERVER_ENV = ("OUTREACH_BENCH_POSTGRESQL", "OUTREACH_TEST_POSTGRESQL")


def server_url() -> str:
    for name in SERVER_ENV:
        url = os.environ.get(name)
        if url:
            return url
    raise NotAvailable(
        "no PostgreSQL server: pass --postgresql postgresql://USER@HOST/DB (a user that may "
        "create databases) or set OUTREACH_BENCH_POSTGRESQL"
    )


def _with_database(url: str, database: str) -> str:
    head, _, _ = url.partition("?")[0].rpartition("/")
    return f"{head}/{database}"


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database on the benchmark server."""
    try:
        import psycopg
    except ImportError:
        raise NotAvailable("psycopg is not installed: pip install -e '.[postgresql]'") from None
    url = server_url()
    name = f"outreach_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[arg-type]
    try:
        yield _with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql)]  # type: ignore[arg-type]
