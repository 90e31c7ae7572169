"""The CLI as a new user types it: global options anywhere, one-line errors, help texts."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from outreach.cli import app
from tests.conftest import Cli


def outreach(*args: str, cwd: Path, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outreach", *args],
        cwd=cwd,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- global options after the command -----------------------------------------------


def test_now_workspace_and_debug_work_after_the_command(ws: Path, runner: CliRunner) -> None:
    before = runner.invoke(
        app, ["-w", str(ws), "--now", "2026-12-01T09:00:00Z", "status", "--json"]
    )
    after = runner.invoke(app, ["status", "--json", "--now", "2026-12-01T09:00:00Z", "-w", str(ws)])
    assert after.exit_code == 0, after.stderr
    assert json.loads(after.stdout)["now"] == json.loads(before.stdout)["now"]
    # the example of `run --help`, literally
    result = runner.invoke(
        app, ["run", "nps", "--dry-run", "--now", "2026-12-01T10:00", "--workspace", str(ws)]
    )
    assert result.exit_code == 0, result.stderr
    assert "No such option" not in result.stderr


def test_debug_after_the_command_shows_the_traceback(ws: Path, runner: CliRunner) -> None:
    plain = runner.invoke(app, ["-w", str(ws), "templates", "render", "nps", "--customer", "x"])
    assert plain.exit_code == 2 and plain.stderr.startswith("error: ")
    debug = runner.invoke(
        app, ["-w", str(ws), "templates", "render", "nps", "--customer", "x", "--debug"]
    )
    # the traceback, and still the exit code of the error (a script relies on it)
    assert debug.exit_code == 2, debug.output
    assert "Traceback" in debug.stderr and "NotFoundError" in debug.stderr


def test_every_command_takes_the_global_options() -> None:
    def leaves(command: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], object]]:
        subs = getattr(command, "commands", None)
        if not subs:
            return [(path, command)]
        return [leaf for name, sub in subs.items() for leaf in leaves(sub, (*path, name))]

    for path, command in leaves(typer.main.get_command(app), ()):
        opts = {o for p in command.params for o in getattr(p, "opts", [])}  # type: ignore[attr-defined]
        assert {"--now", "-w", "--workspace", "--debug"} <= opts, " ".join(path)


def test_a_time_without_a_zone_is_workspace_time(cli: Cli) -> None:
    # the workspace of `outreach init` is in Europe/Amsterdam: 10:00 there is 09:00 UTC
    result = cli("status", "--json", "--now", "2026-12-01T10:00")
    assert json.loads(result.stdout)["now"] == "2026-12-01T09:00:00Z"
    result = cli("status", "--json", env={"OUTREACH_NOW": "2026-07-01 10:00"})
    assert json.loads(result.stdout)["now"] == "2026-07-01T08:00:00Z"
    result = cli("--now", "2026-12-01T10:00:00Z", "status", "--json")
    assert json.loads(result.stdout)["now"] == "2026-12-01T10:00:00Z"


# -- one line instead of a traceback ---------------------------------------------------


def test_ingest_from_a_closed_stdin_is_one_line(ws: Path) -> None:
    # stdin=-1 is not possible with subprocess; close fd 0 in the child instead
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, runpy, sys; os.close(0); sys.stdin = None; "
            "sys.argv = ['outreach', 'replies', 'ingest', '-']; "
            "runpy.run_module('outreach', run_name='__main__')",
        ],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "standard input is closed" in one_line_error(result)


def test_ingest_with_stdin_closed_by_the_shell(ws: Path) -> None:
    result = subprocess.run(
        "exec 0<&-; exec " + " ".join([sys.executable, "-m", "outreach", "replies", "ingest", "-"]),
        shell=True,
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "standard input is closed" in one_line_error(result)


def test_init_where_a_folder_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    line = one_line_error(outreach("init", "afile/sub", cwd=tmp_path))
    assert "afile" in line and "Not a directory" in line
    line = one_line_error(outreach("init", "/proc/x", cwd=tmp_path))
    assert "/proc/x" in line


def test_init_honours_the_workspace_option(tmp_path: Path) -> None:
    result = outreach("-w", "ws", "init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ws" / "outreach.toml").is_file()
    assert not (tmp_path / "outreach.toml").exists()


# -- init's workspace -------------------------------------------------------------------


def test_init_ships_the_samples_the_tour_uses(
    ws: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (ws / "customers.csv").is_file() and (ws / "replies.jsonl").is_file()
    monkeypatch.chdir(ws)
    result = cli("customers", "import", "customers.csv")
    assert result.exit_code == 0, result.stderr


def test_init_writes_no_rate_on_outbox_channels(ws: Path) -> None:
    config = tomllib.loads((ws / "outreach.toml").read_text(encoding="utf-8"))
    for name, channel in config["channels"].items():
        assert channel["provider"] == "outbox"
        assert "rate" not in channel, name
    assert '# rate = "' in (ws / "outreach.toml").read_text(encoding="utf-8")
    for campaign in (ws / "campaigns").glob("*.toml"):
        assert "rate" not in tomllib.loads(campaign.read_text()).get("limits", {}), campaign


def test_a_failed_first_import_leaves_no_database(tmp_path: Path, runner: CliRunner) -> None:
    ws = tmp_path / "ws"  # new, not the `ws` fixture's copy (its database is made already)
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    assert not list(ws.glob("outreach.db*"))
    result = runner.invoke(app, ["-w", str(ws), "customers", "import", str(ws / "nope.csv")])
    assert result.exit_code == 2
    (ws / "empty.csv").write_text("", encoding="utf-8")
    result = runner.invoke(app, ["-w", str(ws), "customers", "import", str(ws / "empty.csv")])
    assert result.exit_code == 2
    assert not list(ws.glob("outreach.db*"))


def test_customers_import_reads_stdin(ws: Path, cli: Cli) -> None:
    csv = "id,name,phone,opted_in\nk1,Kim,+31612345678,sms\n"
    result = cli("customers", "import", "-", input=csv)
    assert result.exit_code == 0, result.stderr
    assert "Imported 1 customer from stdin" in result.stdout
    shown = json.loads(cli("customers", "show", "k1", "--json").stdout)
    assert shown["customer"]["name"] == "Kim"


# -- help ------------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("outreach 0.")


def test_usage_lines_name_no_types(runner: CliRunner) -> None:
    for args in (
        ["run"],
        ["templates", "render"],
        ["templates", "check"],
        ["export", "replies"],
        ["customers", "import"],
        [],
    ):
        out = runner.invoke(app, [*args, "--help"]).stdout
        for leak in ("<int range>", "<list[str]>", "<str>", "{", "<float", "<path>"):
            assert leak not in out, (args, leak)
    assert "--now TIME" in runner.invoke(app, ["--help"]).stdout
    usage = runner.invoke(app, ["templates", "render", "--help"]).stdout.splitlines()[0]
    assert usage.endswith("templates render [OPTIONS] NAME")


def test_help_one_liners_are_not_cut(runner: CliRunner) -> None:
    out = runner.invoke(app, ["--help"]).stdout
    assert "..." not in out.split("Commands:")[1]
    assert "Check and preview message templates" in out


@pytest.mark.parametrize("args", [["status"], ["queue"], ["channels", "check"]])
def test_commands_have_an_example(runner: CliRunner, args: list[str]) -> None:
    assert "Example" in runner.invoke(app, [*args, "--help"]).stdout


def test_a_bad_choice_names_the_allowed_values(cli: Cli) -> None:
    result = cli("export", "replies", "--format", "xml")
    assert result.exit_code == 2
    assert "'xml' is not one of 'csv', 'jsonl', 'json'" in result.stderr
    assert "Value error" not in result.stderr


# -- errors that say what the user wrote ------------------------------------------------


def test_a_channel_without_a_provider_says_so(ws: Path, cli: Cli) -> None:
    path = ws / "outreach.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            '[channels.sms]\nprovider = "outbox"\n', "[channels.sms]\n", 1
        ),
        encoding="utf-8",
    )
    result = cli("status")
    assert result.exit_code == 4
    assert '[channels.sms]: no provider; add provider = "outbox"' in result.stderr
    assert '"None"' not in result.stderr


def test_an_audience_error_shows_the_filter_as_written(ws: Path, cli: Cli) -> None:
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    path = ws / "campaigns" / "nps.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace('where = "1 = 1"', "where = \"plann = 'pro'\""),
        encoding="utf-8",
    )
    result = cli("run", "nps", "--dry-run")
    assert result.exit_code == 4
    assert 'where "plann = \'pro\'": no customer column "plann"' in result.stderr
    assert "verified = 1" not in result.stderr


def test_a_bad_since_names_the_relative_forms(cli: Cli) -> None:
    result = cli("export", "replies", "--since", "7x")
    assert result.exit_code == 2
    assert "7d" in result.stderr and "12h" in result.stderr


@pytest.mark.parametrize("zone", ["EST", "EST5EDT", "Japan", "UTC"])
def test_one_word_iana_zones_are_accepted(ws: Path, cli: Cli, zone: str) -> None:
    (ws / "z.csv").write_text(f"id,timezone\nz1,{zone}\n", encoding="utf-8")
    result = cli("customers", "import", str(ws / "z.csv"))
    assert result.exit_code == 0, result.stderr
    path = ws / "outreach.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            'timezone = "Europe/Amsterdam"', f'timezone = "{zone}"'
        ),
        encoding="utf-8",
    )
    assert cli("status").exit_code == 0


def test_a_word_that_is_no_zone_is_refused(ws: Path, cli: Cli) -> None:
    (ws / "z.csv").write_text("id,timezone\nz1,Amsterdam\nz2,localtime\n", encoding="utf-8")
    result = cli("customers", "import", str(ws / "z.csv"))
    assert result.exit_code == 3
    assert result.stderr.count("is not an IANA time zone") == 2
