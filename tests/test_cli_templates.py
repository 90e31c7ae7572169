"""outreach templates check / render through the real CLI, on a workspace made by init."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from typing import Any

from outreach.workspace import Workspace
from tests.conftest import Cli

COLUMNS = ["id", "name", "email", "phone", "preferred_channel", "locale", "timezone"]


def add_customers(ws: Path, rows: list[list[Any]]) -> None:
    workspace = Workspace.load(ws)
    try:
        with workspace.store.write():
            workspace.store.customers.upsert_customers(COLUMNS, rows, "2026-11-25T10:00:00Z")
    finally:
        workspace.close()


def write(ws: Path, name: str, file: str, text: str) -> None:
    folder = ws / "templates" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(text, encoding="utf-8")


def test_check_passes_on_the_example_templates_with_sample_customers(cli: Cli) -> None:
    result = cli("templates", "check", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    by_pair = {(r["template"], r["channel"]): r for r in rows}
    assert len(by_pair) == 30
    nps_sms = by_pair["nps", "sms"]
    assert (nps_sms["encoding"], nps_sms["segments"], nps_sms["errors"]) == ("GSM-7", 1, [])
    assert by_pair["nps", "email"]["max_subject_length"] <= 78
    assert all(not r["errors"] for r in rows)


def test_check_table_names_templates_and_says_samples_were_used(cli: Cli) -> None:
    result = cli("templates", "check", "nps")
    assert result.exit_code == 0, result.stderr
    assert "GSM-7" in result.stdout
    assert "default," in result.stdout
    assert "built-in sample customers" in result.stderr
    assert "csat" not in result.stdout


def test_check_renders_for_real_customers_when_there_are_some(ws: Path, cli: Cli) -> None:
    add_customers(ws, [["C-1", "Zoë Ü", "z@example.com", "+31612345678", "sms", "en", None]])
    write(ws, "hello", "sms.j2", "Hello {{ customer.name }}")
    result = cli("templates", "check", "hello", "--json")
    assert result.exit_code == 0, result.stderr
    (row,) = [r for r in json.loads(result.stdout) if r["channel"] == "sms"]
    assert row["renders"] == 1
    assert (row["encoding"], row["segments"]) == ("UCS-2", 1)  # ë is not GSM-7
    assert "sample" not in result.stderr


def test_check_reports_errors_and_exits_4(ws: Path, cli: Cli) -> None:
    write(ws, "broken", "sms.j2", "Hi\n{{ customer.plann }}")
    write(ws, "broken", "email.j2", "no subject here\n\nbody")
    result = cli("templates", "check", "broken")
    assert result.exit_code == 4
    # on stderr, once each
    assert result.stderr.count("templates/broken/sms.j2:2: unknown variable customer.plann") == 1
    assert result.stderr.count("templates/broken/email.j2:1: missing Subject: header") == 1
    assert "error:" not in result.stdout
    assert result.stderr.splitlines()[-1].startswith("error: 2 template errors")


def test_check_flags_long_whatsapp_bodies_and_subjects(ws: Path, cli: Cli) -> None:
    write(ws, "long", "whatsapp.j2", "{{ 'x' * 5000 }}")
    write(ws, "long", "email.j2", "Subject: {{ 'word ' * 20 }}\n\nbody")
    write(ws, "long", "sms.j2", "{{ 'y' * 400 }}")
    result = cli("templates", "check", "long", "--json")
    assert result.exit_code == 4
    rows = {r["channel"]: r for r in json.loads(result.stdout)}
    assert "WhatsApp allows 4096" in rows["whatsapp"]["errors"][0]
    assert "subject is 99 characters" in rows["email"]["warnings"][0]
    assert not rows["email"]["errors"]
    assert (rows["sms"]["encoding"], rows["sms"]["segments"]) == ("GSM-7", 3)


def test_check_of_an_unknown_template_exits_4(cli: Cli) -> None:
    result = cli("templates", "check", "nope")
    assert result.exit_code == 4
    assert 'no template "nope"' in result.stderr


def test_render_prints_one_message_on_the_preferred_channel(ws: Path, cli: Cli) -> None:
    add_customers(
        ws,
        [
            [
                "C-7",
                "Anna de Vries",
                "anna@example.nl",
                "+31612345678",
                "sms",
                "nl-NL",
                "Europe/Amsterdam",
            ]
        ],
    )
    result = cli("templates", "render", "order_shipped", "--customer", "C-7")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Hallo Anna, je bestelling A-1042 bij Acme is onderweg!")
    assert "templates/order_shipped/sms.nl.j2" in result.stderr
    assert "GSM-7, 1 segment" in result.stderr


def test_render_email_as_json(ws: Path, cli: Cli) -> None:
    add_customers(
        ws, [["C-8", "Alex Morgan", "alex@example.com", None, None, "en-GB", "Europe/London"]]
    )
    result = cli("templates", "render", "nps", "--customer", "C-8", "--channel", "email", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["subject"] == "Alex, would you recommend Acme?"
    assert data["source"] == "templates/nps/email.j2"
    assert data["html"].startswith("<!DOCTYPE html>")
    assert "How likely are you to recommend Acme" in data["body"]
    assert data["customer_id"] == "C-8"


def test_render_errors_are_one_line_with_exit_codes(ws: Path, cli: Cli) -> None:
    missing = cli("templates", "render", "nps", "--customer", "C-404")
    assert missing.exit_code == 2
    assert 'customer "C-404" does not exist' in missing.stderr
    add_customers(ws, [["C-9", "Bo", None, "+31612345679", None, None, None]])
    bad_channel = cli("templates", "render", "nps", "--customer", "C-9", "--channel", "fax")
    assert bad_channel.exit_code == 4
    assert 'channel "fax" is not configured' in bad_channel.stderr
    write(ws, "oops", "sms.j2", "{{ survey.choices[0].__class__ }}")
    oops = cli("templates", "render", "oops", "--customer", "C-9", "--channel", "sms")
    assert oops.exit_code == 4
    assert oops.stderr.count("\n") == 1
    assert "templates/oops/sms.j2:1" in oops.stderr and "(customer C-9)" in oops.stderr


def test_templates_commands_have_help(cli: Cli) -> None:
    for command in ("check", "render"):
        result = cli("templates", command, "--help")
        assert result.exit_code == 0
        assert "--json" in result.stdout


def test_a_line_break_in_data_stays_inside_the_subject_line(ws: Path, cli: Cli) -> None:
    (ws / "people.csv").write_text(
        "id,name,email,preferred_channel,locale,opted_in\n"
        'C1,"Ann\r\nBcc: evil@example.com\n\nInjected body",ann@example.com,email,en,email\n',
        encoding="utf-8",
    )
    assert cli("customers", "import", str(ws / "people.csv")).exit_code == 0
    for file in ("email.j2", "email.html.j2"):
        (ws / "templates" / "nps" / file).unlink()
    write(ws, "nps", "email.j2", "Subject: Hello {{ customer.name }}\n\nHi {{ customer.name }}\n")
    result = cli("--now", "2026-12-01T09:30:00Z", "run", "nps", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sent"] == 1
    [eml] = (ws / "outbox" / "email").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Hello Ann Bcc: evil@example.com Injected body"
    assert message["Bcc"] is None
    # in the text the value is printed as it is
    assert "Hi Ann\nBcc: evil@example.com\n\nInjected body" in message.get_content()


def test_a_template_that_mutates_its_data_is_a_template_error(ws: Path, cli: Cli) -> None:
    add_customers(ws, [["C-1", "Ann", "a@example.com", "+31612345678", "sms", "en", None]])
    write(ws, "mut", "sms.j2", "{{ dict.update(customer, name='MUTATED') }}{{ customer.name }}")
    result = cli("templates", "render", "mut", "--customer", "C-1", "--channel", "sms")
    assert result.exit_code == 4
    assert "MUTATED" not in result.stdout
    assert "templates/mut/sms.j2:1: function value has no attribute 'update'" in result.stderr


def test_a_locale_with_a_bcp47_extension_finds_its_language_template(ws: Path, cli: Cli) -> None:
    (ws / "people.csv").write_text(
        "id,name,phone,locale\nC1,Ann,+31612345678,nl-NL-u-ca-buddhist\n", encoding="utf-8"
    )
    assert cli("customers", "import", str(ws / "people.csv")).exit_code == 0
    write(ws, "hello", "sms.j2", "Hello {{ customer.name }}")
    write(ws, "hello", "sms.nl.j2", "Hallo {{ customer.name }}")
    result = cli("templates", "render", "hello", "--customer", "C1", "--channel", "sms")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Hallo Ann\n"


def test_render_uses_the_campaign_that_sends_the_template(ws: Path, cli: Cli) -> None:
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    result = cli("templates", "render", "nps", "--customer", "c001")  # Dutch, by SMS
    assert result.exit_code == 0, result.stderr
    # the question as campaigns/nps.toml translates it, not a made-up English one
    assert "Hoe waarschijnlijk is het dat je Acme aanbeveelt aan een vriend of collega?" in (
        result.stdout
    )
    assert "(campaign nps)" in result.stderr
    other = cli("templates", "render", "nps", "--customer", "c016", "--campaign", "csat")
    assert other.exit_code == 0, other.stderr
    csat = (ws / "campaigns" / "csat.toml").read_text(encoding="utf-8")
    question = next(line for line in csat.splitlines() if line.startswith("question"))
    assert question.split('"')[1] in other.stdout
    data = json.loads(cli("templates", "render", "nps", "--customer", "c001", "--json").stdout)
    assert data["campaign"] == "nps"
