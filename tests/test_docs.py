"""The README and the help texts cannot rot: every command is documented and the demo runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
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


# -- the README's tour and the help examples, run as a user types them -------------------

# the tour on a fixed clock (Tuesday 10:30 in the workspace's Amsterdam), so that it tells
# the same story on any day; the commands themselves are the README's, literally
TOUR_NOW = "2026-12-01 10:30"
# run until stopped; tests/test_server.py and tests/reliability/test_many_senders.py cover them
SKIPPED = ("outreach serve", "outreach worker")


def _shell(tmp_path: Path) -> dict[str, str]:
    """An environment in which `outreach` is this checkout's, as `pip install .` makes it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "outreach"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m outreach "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "OUTREACH_WORKSPACE")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OUTREACH_NOW"] = TOUR_NOW
    return env


def _tour() -> list[str]:
    block = README.split("## A tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_readme_tour_works_literally(tmp_path: Path) -> None:
    tour = _tour()
    assert tour[0] == "outreach init acme && cd acme"
    for step in (
        "customers import",
        "templates check",
        "templates render",
        "--dry-run",
        "run nps",
        "queue",
        "replies ingest",
        "conversations list",
        "conversations show",
        "reply",
        "export replies",
        "report nps",
        "status",
    ):
        assert any(step in line for line in tour), step
    script = "\n".join(
        f"{line} || {{ echo 'TOUR FAILED:' {shlex.quote(line)} >&2; exit 1; }}"
        for line in tour
        if not line.startswith(SKIPPED)
    )
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=_shell(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    acme = tmp_path / "acme"
    assert "Anna de Vries [c001]" in result.stdout  # conversations show c001
    assert "Sent to c001 on sms" in result.stderr  # the reply
    assert (acme / "replies.csv").read_text(encoding="utf-8").startswith("received_at,")
    assert list((acme / "outbox").rglob("*.json"))


def _help_examples() -> list[tuple[str, str]]:
    """(command, example) for every `Example:` line and `Examples:` block in --help."""
    found = []
    for path in ALL:
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        epilog = getattr(command, "epilog", None) or ""
        lines = epilog.replace("\b", "").splitlines()
        block = False
        for line in lines:
            text = line.strip()
            if text.startswith("Examples:"):
                block = True
            elif text.startswith("Example") and ":" in text:  # also "Example (cron…):"
                found.append((" ".join(path), text.split(":", 1)[1].strip()))
            elif block and text.startswith("outreach "):
                # "outreach run --due    cron: every occurrence due now": the command only
                found.append((" ".join(path), re.split(r"\s{2,}", text)[0]))
    return found


EXAMPLES = _help_examples()


@pytest.fixture(scope="module")
def sample_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`outreach init` with its samples imported and the nps survey sent, once."""
    folder = tmp_path_factory.mktemp("examples")
    env = _shell(folder)
    script = (
        "outreach init ws && cd ws && outreach customers import customers.csv && "
        "outreach run nps && outreach replies ingest replies.jsonl"
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return folder / "ws"


def test_every_command_has_an_example() -> None:
    with_examples = {command for command, _ in EXAMPLES}
    missing = [" ".join(p) for p in ALL if " ".join(p) not in with_examples]
    assert not missing, f"no Example: in the --help of {missing}"


@pytest.mark.parametrize(("command", "example"), EXAMPLES, ids=[e for _, e in EXAMPLES])
def test_every_help_example_runs(
    sample_workspace: Path, tmp_path: Path, command: str, example: str
) -> None:
    if example.startswith(SKIPPED):
        pytest.skip("runs until stopped")
    if command == "replies sync":
        pytest.skip("needs an IMAP mailbox: tests/mail covers it")
    if command == "store copy":
        pytest.skip("needs a PostgreSQL server: tests/store/test_copy.py covers it")
    workspace = tmp_path / "ws"
    shutil.copytree(sample_workspace, workspace)  # each example on the same fresh data
    result = subprocess.run(
        ["bash", "-c", example],
        cwd=workspace,
        env=_shell(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{example}\n{result.stderr[-2000:]}"
