"""``outreach store copy --to URL``: a SQLite workspace into an empty PostgreSQL database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from outreach.errors import StoreError
from outreach.store import open_store
from outreach.store.postgresql import INCOMPLETE_COPY
from outreach.workspace import Workspace
from tests.conftest import Cli
from tests.postgresql import empty_database
from tests.test_cli_both_stores import CUSTOMERS, LATER, NOW, REPLY

pytestmark = pytest.mark.postgresql


@pytest.fixture
def target(postgresql_database: str) -> str:
    empty_database(postgresql_database)
    return postgresql_database


@pytest.fixture
def busy_workspace(ws: Path, cli: Cli) -> Path:
    """A SQLite workspace with customers, consent, a sent campaign and a reply."""
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    assert cli("--now", NOW, "run", "nps").exit_code == 0
    assert cli("--now", LATER, "replies", "ingest", "-", input=REPLY).exit_code == 0
    return ws


def test_everything_is_copied_and_counted_and_the_copy_works(
    busy_workspace: Path, cli: Cli, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (busy_workspace / "outreach.db").read_bytes()
    result = cli("store", "copy", "--to", target, "--json")
    assert result.exit_code == 0, result.stderr
    copied = json.loads(result.stdout)["copied"]
    db = sqlite3.connect(busy_workspace / "outreach.db")
    expected = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in copied}
    db.close()
    assert copied == expected
    assert copied["customers"] == 3 and copied["survey_responses"] == 1
    assert len(copied) == 11 and min(copied["deliveries"], copied["messages"]) > 1
    assert (busy_workspace / "outreach.db").read_bytes() == before  # only read
    monkeypatch.setenv("OUTREACH_DATABASE_URL", target)
    report = cli("report", "nps", "--json")
    assert report.exit_code == 0, report.stderr
    assert '"replied": 1' in report.stdout
    # new rows get new ids after the copied ones
    assert (
        cli(
            "--now",
            LATER,
            "replies",
            "ingest",
            "-",
            input=REPLY.replace("in-1", "in-2").replace('"9"', '"10"'),
        ).exit_code
        == 0
    )
    workspace = Workspace.load(busy_workspace)
    try:
        transcript = workspace.store.conversations.transcript("nl1")
        assert [m["text"] for m in transcript if m["direction"] == "in"] == ["9", "10"]
        assert workspace.store.customers.attribute_columns() == ["plan"]
    finally:
        workspace.close()


def test_the_copy_prints_each_tables_count_and_how_to_use_it(
    busy_workspace: Path, cli: Cli, target: str
) -> None:
    result = cli("store", "copy", "--to", target)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["customers", "3"]
    # the config key is printed as written, not eaten as console markup
    assert lines[-1].endswith(
        "Point the workspace at it with OUTREACH_DATABASE_URL or [workspace] database."
    )


def test_a_target_that_is_not_empty_is_refused(busy_workspace: Path, cli: Cli, target: str) -> None:
    assert cli("store", "copy", "--to", target).exit_code == 0
    again = cli("store", "copy", "--to", target)
    assert again.exit_code == 2
    assert "is not empty (customers has rows)" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_a_copy_stopped_half_way_is_named_incomplete(
    busy_workspace: Path, cli: Cli, target: str
) -> None:
    import psycopg

    assert cli("store", "copy", "--to", target).exit_code == 0
    with psycopg.connect(target, autocommit=True) as conn:  # as a copy killed before the end
        conn.execute("INSERT INTO meta (key, value) VALUES (%s, 'outreach.db')", (INCOMPLETE_COPY,))
    with pytest.raises(StoreError, match=r"holds an incomplete copy of outreach\.db"):
        open_store(target)
    again = cli("store", "copy", "--to", target)
    assert again.exit_code == 2
    assert "incomplete copy of outreach.db" in again.stderr


def test_copy_needs_a_postgresql_url(busy_workspace: Path, cli: Cli) -> None:
    result = cli("store", "copy", "--to", "other.db")
    assert result.exit_code == 2
    assert "is not a postgresql:// URL" in result.stderr


def _schema(url: str) -> tuple[set[str], set[str]]:
    """Every index and foreign key of a database, as the server defines them."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            )
        }
        foreign = {
            f"{r[0]} {r[1]}"
            for r in conn.execute(
                "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
            )
        }
    return indexes, foreign


def test_the_copy_has_every_index_and_foreign_key_of_a_new_database(
    busy_workspace: Path, cli: Cli, target: str
) -> None:
    open_store(target).close()  # migrated, empty: the schema as outreach makes it
    fresh = _schema(target)
    assert len(fresh[0]) > 20 and len(fresh[1]) > 5
    assert cli("store", "copy", "--to", target).exit_code == 0
    assert _schema(target) == fresh


def test_a_copy_whose_rows_break_a_unique_index_fails_whole(
    busy_workspace: Path, cli: Cli, target: str
) -> None:
    # the indexes are made again after the rows: a duplicate there must still stop it
    db = sqlite3.connect(busy_workspace / "outreach.db")
    db.execute("DROP INDEX deliveries_once")
    names = [r[1] for r in db.execute("PRAGMA table_info(deliveries)")]
    values = ", ".join("'dup' || id" if n == "id" else f'"{n}"' for n in names)
    db.execute(
        f"INSERT INTO deliveries SELECT {values} FROM deliveries WHERE purpose = 'campaign' LIMIT 1"
    )
    db.commit()
    db.close()
    result = cli("store", "copy", "--to", target)
    assert result.exit_code == 4
    assert "does not fit the PostgreSQL schema" in result.stderr
    assert "deliveries_once" in result.stderr and "nothing was copied" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(StoreError, match="incomplete copy"):
        open_store(target)
