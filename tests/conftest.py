"""Shared fixtures: a fresh workspace made by the real `outreach init`, and the real CLI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from outreach import clock
from outreach.cli import app

Cli = Callable[..., Result]

pytest_plugins = ["tests.servers.fixtures", "tests.postgresql"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's workspace or clock, and --now never leaks; the
    commands a test runs see no terminal size either (readline, loaded under pytest, sets
    COLUMNS and LINES for the processes it starts: the xdist workers inherit them)."""
    for name in ("OUTREACH_WORKSPACE", "OUTREACH_NOW", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    yield
    clock.set_now(None)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def _initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace created by `outreach init`, its database made by a first command."""
    folder = tmp_path_factory.mktemp("initialised") / "ws"
    runner = CliRunner()
    # the developer's settings play no part, as in every test (_isolated_env)
    unset = {name: None for name in os.environ if name.startswith("OUTREACH_")}
    result = runner.invoke(app, ["init", str(folder)], env=unset)
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["-w", str(folder), "customers", "list", "--json"], env=unset)
    assert result.exit_code == 0, result.stderr
    clock.set_now(None)
    return folder


@pytest.fixture
def ws(tmp_path: Path, _initialised: Path) -> Path:
    """A workspace created by `outreach init`, every channel on the outbox.

    A copy of one made once: init and the first command's migrations took a tenth of a
    second of each of hundreds of tests."""
    return Path(shutil.copytree(_initialised, tmp_path / "ws"))


@pytest.fixture
def cli(ws: Path, runner: CliRunner) -> Cli:
    """Run outreach in the workspace: cli("customers", "list", "--json")."""

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, ["-w", str(ws), *args], input=input, env=env)
        clock.set_now(None)
        return result

    return invoke
