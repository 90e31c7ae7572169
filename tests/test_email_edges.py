"""Email at its edges, through the real CLI: display names that need quoting,
internationalised addresses (SMTPUTF8 on a real aiosmtpd, or a clear refusal), and the
outbox's UTF-8 ``.eml`` files."""

from __future__ import annotations

import email
import json
import sqlite3
from collections.abc import Iterator
from email import policy
from email.headerregistry import Address
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.servers.smtp import SmtpEmulator

NOW = "2026-12-01T09:30:00Z"  # 10:30 in Amsterdam

CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in
es1,José García,josé@example.es,,email,es-ES,Europe/Madrid,email
de1,Jürgen Müller,juergen@bücher.example,,email,de-DE,Europe/Berlin,email
nl1,Anna de Vries,anna@example.nl,,email,nl-NL,Europe/Amsterdam,email
"""


@pytest.fixture
def smtputf8_server() -> Iterator[SmtpEmulator]:
    server = SmtpEmulator(smtputf8=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def plain_server() -> Iterator[SmtpEmulator]:
    server = SmtpEmulator()
    server.start()
    yield server
    server.stop()


def use_smtp(ws: Path, server: SmtpEmulator, sender_name: str = "Acme, Inc.") -> None:
    toml = (ws / "outreach.toml").read_text(encoding="utf-8")
    toml = toml.replace('sender_name = "Acme"', f'sender_name = "{sender_name}"')
    toml = toml.replace(
        '[channels.email]\nprovider = "outbox"',
        f'[channels.email]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {server.port}\n'
        'security = "none"\nfrom = "hello@acme.example"',
    )
    (ws / "outreach.toml").write_text(toml, encoding="utf-8")


def add_news(ws: Path, cli: Cli) -> None:
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    result = cli("customers", "import", str(ws / "customers.csv"))
    assert result.exit_code == 0, result.stderr
    (ws / "campaigns" / "news.toml").write_text(
        'kind = "update"\ntemplate = "news"\nchannels = ["email"]\n\n'
        '[schedule]\nstart = "2026-12-01 10:00"\nwindow = "00:00-23:59"\n',
        encoding="utf-8",
    )
    (ws / "templates" / "news").mkdir()
    (ws / "templates" / "news" / "email.j2").write_text(
        "Subject: News for {{ customer.name }}\n\nHallo {{ customer.name }}!\n", encoding="utf-8"
    )


def deliveries(ws: Path) -> dict[str, dict[str, object]]:
    conn = sqlite3.connect(ws / "outreach.db")
    conn.row_factory = sqlite3.Row
    rows = {r["customer_id"]: dict(r) for r in conn.execute("SELECT * FROM deliveries")}
    conn.close()
    return rows


def run(cli: Cli) -> dict[str, object]:
    result = cli("--now", NOW, "run", "news", "--json")
    assert result.exit_code in (0, 3), result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_a_sender_name_with_a_comma_is_quoted_and_every_mail_goes_out(
    ws: Path, cli: Cli, plain_server: SmtpEmulator
) -> None:
    use_smtp(ws, plain_server)
    add_news(ws, cli)
    run(cli)
    assert deliveries(ws)["nl1"]["status"] == "sent", deliveries(ws)["nl1"]
    [received] = [r for r in plain_server.received if r.rcpt_tos == ["anna@example.nl"]]
    sender = received.message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Acme, Inc.", "hello@acme.example")
    assert received.mail_from == "hello@acme.example"


def test_channels_check_renders_one_real_from_header(
    ws: Path, cli: Cli, plain_server: SmtpEmulator
) -> None:
    use_smtp(ws, plain_server)
    result = cli("channels", "check", "--json")
    assert result.exit_code == 0, result.stderr
    row = next(r for r in json.loads(result.stdout)["channels"] if r["channel"] == "email")
    assert row["from"] == '"Acme, Inc." <hello@acme.example>'
    parsed = email.message_from_string(f"From: {row['from']}\n\n", policy=policy.default)
    assert parsed["From"].addresses[0] == Address("Acme, Inc.", "hello", "acme.example")
    text = cli("channels", "check").stdout
    assert 'From: "Acme, Inc." <hello@acme.example>' in text


def test_a_from_setting_with_an_unquoted_comma_is_quoted_and_a_broken_one_is_a_problem(
    ws: Path, cli: Cli, plain_server: SmtpEmulator
) -> None:
    use_smtp(ws, plain_server)
    toml = (ws / "outreach.toml").read_text(encoding="utf-8")
    unquoted = toml.replace('from = "hello@acme.example"', 'from = "Acme, Inc. <hi@acme.example>"')
    (ws / "outreach.toml").write_text(unquoted, encoding="utf-8")
    result = cli("channels", "check", "--json")
    row = next(r for r in json.loads(result.stdout)["channels"] if r["channel"] == "email")
    assert row["from"] == '"Acme, Inc." <hi@acme.example>'
    broken = toml.replace('from = "hello@acme.example"', 'from = "Acme, Inc."')
    (ws / "outreach.toml").write_text(broken, encoding="utf-8")
    result = cli("channels", "check")
    assert result.exit_code == 4
    assert "[channels.email] from:" in result.stdout and "not an email address" in result.stdout


def test_internationalised_addresses_go_out_with_smtputf8_when_the_server_offers_it(
    ws: Path, cli: Cli, smtputf8_server: SmtpEmulator
) -> None:
    use_smtp(ws, smtputf8_server)
    add_news(ws, cli)
    run(cli)
    rows = deliveries(ws)
    assert {c: rows[c]["status"] for c in rows} == {"es1": "sent", "de1": "sent", "nl1": "sent"}
    by_rcpt = {r.rcpt_tos[0]: r for r in smtputf8_server.received}
    assert set(by_rcpt) >= {"josé@example.es", "anna@example.nl"}
    jose = by_rcpt["josé@example.es"].message
    assert jose["To"].addresses[0].addr_spec == "josé@example.es"
    assert jose["To"].addresses[0].display_name == "José García"
    assert "Hallo José García!" in jose.get_content()
    # a domain alone is reachable without SMTPUTF8: IDNA (punycode) on the envelope
    juergen = [r for r in smtputf8_server.received if "juergen@" in r.rcpt_tos[0]]
    assert juergen and juergen[0].rcpt_tos[0] in (
        "juergen@bücher.example",
        "juergen@xn--bcher-kva.example",
    )


def test_without_smtputf8_a_non_ascii_mailbox_fails_with_a_clear_permanent_reason(
    ws: Path, cli: Cli, plain_server: SmtpEmulator
) -> None:
    use_smtp(ws, plain_server)
    add_news(ws, cli)
    run(cli)
    rows = deliveries(ws)
    assert (rows["es1"]["status"], rows["es1"]["reason"]) == ("failed", "address_needs_smtputf8")
    assert "SMTPUTF8" in str(rows["es1"]["error"])
    # the domain-only one goes out as punycode; the ASCII one as ever
    assert rows["de1"]["status"] == "sent"
    assert rows["nl1"]["status"] == "sent"
    recipients = {r.rcpt_tos[0] for r in plain_server.received}
    assert "juergen@xn--bcher-kva.example" in recipients
    assert not any("josé" in r for r in recipients)


def test_the_outbox_writes_internationalised_addresses_as_utf8_eml(ws: Path, cli: Cli) -> None:
    toml = (ws / "outreach.toml").read_text(encoding="utf-8")
    (ws / "outreach.toml").write_text(
        toml.replace('sender_name = "Acme"', 'sender_name = "Acme, Inc."'), encoding="utf-8"
    )
    add_news(ws, cli)
    run(cli)
    rows = deliveries(ws)
    assert {rows[c]["status"] for c in rows} == {"sent"}, rows
    files = {p.name: p.read_bytes() for p in (ws / "outbox" / "email").glob("*.eml")}
    assert len(files) == 3
    # UTF-8 headers (RFC 6532): the email package reads them from text
    jose = email.message_from_string(
        files[f"{rows['es1']['id']}.eml"].decode("utf-8"), policy=policy.default
    )
    assert jose["To"].addresses[0].addr_spec == "josé@example.es"
    assert jose["From"].addresses[0].display_name == "Acme, Inc."
    assert "Hallo José García!" in jose.get_content()
    juergen = email.message_from_bytes(files[f"{rows['de1']['id']}.eml"], policy=policy.default)
    assert juergen["To"].addresses[0].domain in ("bücher.example", "xn--bcher-kva.example")
