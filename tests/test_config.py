"""outreach.toml validation: every mistake is one line naming the file and key, exit 4.

Each case edits the `outreach init` workspace's outreach.toml and runs a real command
(`customers list`), because that is where a user meets these errors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from outreach.config import Cap, Rate, Window, load_config
from outreach.errors import ConfigError
from tests.conftest import Cli


def edit(ws: Path, old: str, new: str) -> None:
    path = ws / "outreach.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text, f"the example outreach.toml no longer has {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'timezone = "Europe/Amsterdam"',
            'timezone = "Europe/Amsterdam',
            r"^error: outreach\.toml: line \d+, column \d+: .+; fix the TOML syntax$",
        ),
        (
            '[channels.sms]\nprovider = "outbox"',
            '[channels.sms]\nprovider = "carrier-pigeon"',
            r'^error: outreach\.toml \[channels\.sms\] provider: "carrier-pigeon" is not a '
            r"provider; use one of outbox, smtp, twilio, whatsapp-cloud, sunshine, webhook$",
        ),
        (
            'window = "09:00-20:00"',
            'window = "25:00-08:00"',
            r'^error: outreach\.toml \[sending\] window: "25:00" is not a time of day; '
            r"write it like 09:00$",
        ),
        (
            'window = "09:00-20:00"',
            'window = "9 to 5"',
            r'^error: outreach\.toml \[sending\] window: "9 to 5" is not a window',
        ),
        (
            "concurrency = 4",
            'rate = "fast"\nconcurrency = 4',
            r'^error: outreach\.toml \[channels\.email\] rate: "fast" is not a rate; '
            r"write it like 20/s or 600/m$",
        ),
        (
            'frequency_cap = "2/7d"',
            'frequency_cap = "twice a week"',
            r'^error: outreach\.toml \[sending\] frequency_cap: "twice a week" is not a '
            r"frequency cap; write it like 2/7d",
        ),
        (
            'timezone = "Europe/Amsterdam"',
            'timezone = "Europe/Amsterdm"',
            r'^error: outreach\.toml \[workspace\] timezone: "Europe/Amsterdm" is not an IANA '
            r"time zone; write it like Europe/Amsterdam$",
        ),
        (
            'default_region = "NL"',
            'default_region = "Netherlands"',
            r"^error: outreach\.toml \[workspace\] default_region: .+ country code",
        ),
        (
            "[sending]",
            '[sending]\nprocesses = "two"',
            r"^error: outreach\.toml \[sending\] processes: expected a whole number from 1 to "
            r"64, got 'two'$",
        ),
        (
            "[sending]",
            "[sending]\nwindw = 1",
            r"^error: outreach\.toml \[sending\]: unknown key 'windw'; known keys are",
        ),
    ],
)
def test_bad_configuration_is_one_line_exit_4(
    cli: Cli, ws: Path, old: str, new: str, expected: str
) -> None:
    edit(ws, old, new)
    result = cli("customers", "list")
    assert result.exit_code == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert result.stdout == ""


def test_toml_syntax_error_names_line_and_column(ws: Path) -> None:
    path = ws / "outreach.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("sender_name"))
    lines[number - 1] = "sender_name = = 'Acme'"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"outreach\.toml: line {number}, column 15: "):
        load_config(ws)


def test_non_utf8_configuration_names_the_line(ws: Path) -> None:
    path = ws / "outreach.toml"
    path.write_bytes(path.read_bytes() + b"\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"line \d+: not UTF-8"):
        load_config(ws)


def test_missing_workspace_is_exit_4(runner: object, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from outreach.cli import app

    assert isinstance(runner, CliRunner)
    result = runner.invoke(app, ["-w", str(tmp_path), "customers", "list"])
    assert result.exit_code == 4
    assert "not a workspace" in result.stderr


@pytest.mark.parametrize(
    ("text", "count", "seconds"), [("20/s", 20, 1), ("600/m", 600, 60), ("5000/h", 5000, 3600)]
)
def test_rates_parse(text: str, count: int, seconds: float) -> None:
    rate = Rate.parse(text, where="t")
    assert (rate.count, rate.per_seconds) == (count, seconds)


@pytest.mark.parametrize("text", ["0/s", "1/x", "/s", "-1/s", "1.5/s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a rate"):
        Rate.parse(text, where="t")


@pytest.mark.parametrize("text", ["2/7d", "1/14d", "3/1w"])
def test_caps_parse(text: str) -> None:
    assert Cap.parse(text, where="t").count == int(text.split("/")[0])


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("25:00-08:00", "not a time of day"),
        ("09:60-10:00", "not a time of day"),
        ("09:00-09:00", "is empty"),
        ("09:00", "is not a window"),
    ],
)
def test_bad_windows_are_refused(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        Window.parse(text, where="t")


def test_window_may_wrap_midnight_and_end_at_24() -> None:
    assert str(Window.parse("22:00-06:00", where="t")) == "22:00-06:00"
    assert str(Window.parse("00:00-24:00", where="t")) == "00:00-24:00"
