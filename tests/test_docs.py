"""The README and the help texts cannot rot: every command is documented and the demo runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from outreach.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands() -> Iterator[tuple[str, ...]]:
    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path

    yield from walk(typer.main.get_command(app), ())


ALL = sorted(commands())


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_block = README.split("\n\n")[2]
    assert "pip install . && outreach demo" in first_block
    assert "pip install -e '.[test]' && pytest" in first_block


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) for p in ALL])
def test_every_command_has_help_and_is_in_the_readme(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.stderr
    assert "Usage:" in result.stdout
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help, f"outreach {' '.join(path)} has no help text"
    for param in command.params:
        if param.param_type_name == "option" and getattr(param, "help", None) is None:
            pytest.fail(f"outreach {' '.join(path)} option {param.name} has no help")
    assert f"outreach {path[0]}" in README, f"the README never mentions outreach {path[0]}"
    if len(path) > 1:
        assert path[1] in README


def test_demo_runs_end_to_end_and_again(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    for _ in range(2):  # re-running it is safe
        result = subprocess.run(
            [sys.executable, "-m", "outreach", "demo", str(folder)],
            capture_output=True,
            text=True,
            timeout=180,
            # a pipe, as a user's: readline (loaded under pytest) exports COLUMNS=80 to
            # children unless they are given the environment explicitly
            env=dict(os.environ),
        )
        assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "NPS" in out and "Try next" in out
    assert "…" not in out  # headings and tables are never cut, in a pipe too
    assert "4. Replies come in during the day" in out and "and one duplicate" in out
    # the story is on the demo's clock: so is what it suggests next
    assert all("--now" in line for line in out.splitlines() if " reply c0" in line)
    assert "10! Love the new app" in out  # the cross-channel answer in the conversation
    report = subprocess.run(
        [sys.executable, "-m", "outreach", "-w", str(folder), "report", "nps", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    data = json.loads(report.stdout)
    assert data["sent"] > 0 and data["deferred"] > 0 and data["skipped"]["no_consent"] > 0
    assert data["opted_out"] == 1 and data["nps"] is not None
    assert list((folder / "outbox" / "sms").glob("*.json"))
    assert list((folder / "outbox" / "email").glob("*.eml"))


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(app, ["demo", str(tmp_path)])
    assert result.exit_code == 2
    assert (tmp_path / "precious.txt").exists()
