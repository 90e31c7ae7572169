"""Shared fixtures: a fresh workspace made by the real `outreach init`, and the real CLI."""

from __future__ import annotations

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
    """No test sees the developer's workspace or clock, and --now never leaks."""
    monkeypatch.delenv("OUTREACH_WORKSPACE", raising=False)
    monkeypatch.delenv("OUTREACH_NOW", raising=False)
    yield
    clock.set_now(None)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def ws(tmp_path: Path, runner: CliRunner) -> Path:
    """A workspace created by `outreach init`, every channel on the outbox."""
    folder = tmp_path / "ws"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.stderr
    return folder


@pytest.fixture
def cli(ws: Path, runner: CliRunner) -> Cli:
    """Run outreach in the workspace: cli("customers", "list", "--json")."""

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, ["-w", str(ws), *args], input=input, env=env)
        clock.set_now(None)
        return result

    return invoke
