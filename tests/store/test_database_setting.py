"""Choosing the store: ``[workspace] database`` or OUTREACH_DATABASE_URL, and the password
that must never be written in outreach.toml nor shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.errors import ConfigError, StoreError
from outreach.store import open_store
from tests.conftest import Cli
from tests.postgresql import with_database


def set_database(ws: Path, value: str) -> None:
    toml = ws / "outreach.toml"
    lines = toml.read_text(encoding="utf-8").splitlines()
    lines = [f'database = "{value}"' if line.startswith("database =") else line for line in lines]
    toml.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_file_name_is_a_sqlite_file_in_the_workspace(ws: Path) -> None:
    set_database(ws, "data/people.db")
    assert load_config(ws).database == ws / "data/people.db"


def test_a_postgresql_url_is_kept_as_a_url(ws: Path) -> None:
    set_database(ws, "postgresql://outreach@db.example:5432/outreach")
    assert load_config(ws).database == "postgresql://outreach@db.example:5432/outreach"


def test_the_environment_url_wins(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", "postgresql://app:s3cret@db:5432/x")
    assert load_config(ws).database == "postgresql://app:s3cret@db:5432/x"
    monkeypatch.setenv("OUTREACH_DATABASE_URL", "mysql://db/x")
    with pytest.raises(ConfigError, match="OUTREACH_DATABASE_URL is not a postgresql:// URL"):
        load_config(ws)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://outreach:hunter2@db.example/outreach",
        "postgresql://db.example/outreach?user=outreach&password=hunter2",
    ],
)
def test_a_password_in_outreach_toml_is_refused_without_repeating_it(
    cli: Cli, ws: Path, url: str
) -> None:
    set_database(ws, url)
    result = cli("customers", "list")
    assert result.exit_code == 4
    assert "holds a password" in result.stderr and "PGPASSWORD" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_server_that_cannot_be_reached_is_one_line_without_the_password(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg")
    # a port nothing listens on (1 is reserved, and connecting is refused at once)
    monkeypatch.setenv("OUTREACH_DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/x")
    result = cli("customers", "list")
    assert result.exit_code == 4, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith("error: postgresql://app@127.0.0.1:1/x: cannot connect (")
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.postgresql
def test_a_database_of_another_application_is_refused_and_left_alone(
    postgresql_database: str,
) -> None:
    import psycopg

    with psycopg.connect(postgresql_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    try:
        with pytest.raises(StoreError, match="tables of another application"):
            open_store(postgresql_database)
        with psycopg.connect(postgresql_database, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        assert tables == [("invoices",)]
    finally:
        with psycopg.connect(postgresql_database, autocommit=True) as conn:
            conn.execute("DROP TABLE invoices")


@pytest.mark.postgresql
def test_a_missing_database_says_so_in_one_line(postgresql_database: str) -> None:
    missing = with_database(postgresql_database, "outreach_no_such_database")
    from outreach.store.postgresql import display_name

    with pytest.raises(StoreError) as caught:
        open_store(missing)
    message = str(caught.value)
    assert message.startswith(display_name(missing) + ": cannot connect (")
    assert 'database "outreach_no_such_database" does not exist' in message
    assert "\n" not in message
