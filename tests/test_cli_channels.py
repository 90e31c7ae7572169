"""outreach channels check, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli
from tests.servers.fixtures import TWILIO_SID, TWILIO_TOKEN
from tests.servers.fixtures import twilio_server as twilio_server
from tests.servers.twilio import TwilioEmulator


def add_channel(ws: Path, text: str) -> None:
    config = ws / "outreach.toml"
    config.write_text(config.read_text() + "\n" + text)


def twilio_channel(base_url: str = "https://api.twilio.com") -> str:
    return f"""
[channels.texts]
provider = "twilio"
account_sid = "{TWILIO_SID}"
auth_token_env = "TEST_TWILIO_TOKEN"
from = "+3197010000000"
base_url = "{base_url}"
"""


def test_check_on_a_fresh_workspace_is_ok(cli: Cli) -> None:
    result = cli("channels", "check", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["send_test"] is None
    assert {row["channel"] for row in data["channels"]} == {"email", "sms", "whatsapp"}
    assert all(row["provider"] == "outbox" and row["problems"] == [] for row in data["channels"])


def test_missing_secret_variable_exits_4_naming_it(cli: Cli, ws: Path) -> None:
    add_channel(ws, twilio_channel())
    result = cli("channels", "check", env={"TEST_TWILIO_TOKEN": ""})
    assert result.exit_code == 4
    assert "texts (twilio): problems" in result.stdout
    assert "TEST_TWILIO_TOKEN" in result.stdout
    assert "email (outbox): ok" in result.stdout


def test_unknown_and_missing_settings_are_reported(cli: Cli, ws: Path) -> None:
    add_channel(ws, '[channels.mail]\nprovider = "smtp"\nhost = "x"\ncolour = "red"\n')
    result = cli("channels", "check", "--channel", "mail", "--json")
    assert result.exit_code == 4
    [row] = json.loads(result.stdout)["channels"]
    assert any("'colour'" in p for p in row["problems"])
    assert any("from is required" in p for p in row["problems"])


def test_send_test_sends_one_real_message(
    cli: Cli, ws: Path, twilio_server: TwilioEmulator
) -> None:
    add_channel(ws, twilio_channel(twilio_server.url))
    result = cli(
        "channels",
        "check",
        "--channel",
        "texts",
        "--send-test",
        "+31612345678",
        "--json",
        env={"TEST_TWILIO_TOKEN": TWILIO_TOKEN},
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    [request] = twilio_server.requests
    assert request.form()["To"] == "+31612345678"
    assert data["send_test"]["provider_message_id"].startswith("SM")


def test_send_test_failure_exits_3_without_the_token(
    cli: Cli, ws: Path, twilio_server: TwilioEmulator
) -> None:
    add_channel(ws, twilio_channel(twilio_server.url))
    twilio_server.fail("reject")
    result = cli(
        "channels",
        "check",
        "--channel",
        "texts",
        "--send-test",
        "+31612345678",
        env={"TEST_TWILIO_TOKEN": TWILIO_TOKEN},
    )
    assert result.exit_code == 3
    assert "21211" in result.stderr
    assert TWILIO_TOKEN not in result.stdout + result.stderr


def test_send_test_needs_a_channel(cli: Cli) -> None:
    result = cli("channels", "check", "--send-test", "+31612345678")
    assert result.exit_code == 2
    assert "--channel" in result.stderr


def test_unknown_channel_is_a_config_error(cli: Cli) -> None:
    result = cli("channels", "check", "--channel", "pigeon")
    assert result.exit_code == 4
    assert "pigeon" in result.stderr
