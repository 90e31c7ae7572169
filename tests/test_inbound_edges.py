"""Inbound edges through the real CLI (`replies ingest`): lines that are not payloads of the
named format, WhatsApp number changes, Mexican and Brazilian WhatsApp ids, and events that
must never act as keywords or answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.servers.fixtures import ENV, SUNSHINE_APP, SUNSHINE_KEY_ID, TWILIO_SID

NOW = "2026-12-01T10:00:00Z"  # Tuesday 11:00 in Amsterdam, inside business hours

CHANNELS = f"""
[channels.sms]
provider = "twilio"
account_sid = "{TWILIO_SID}"
auth_token_env = "TWILIO_AUTH_TOKEN"
from = "+3197010000000"
base_url = "http://127.0.0.1:9"

[channels.whatsapp]
provider = "whatsapp-cloud"
phone_number_id = "106540352242922"
access_token_env = "WHATSAPP_TOKEN"
app_secret_env = "WHATSAPP_APP_SECRET"
base_url = "http://127.0.0.1:9"

[channels.messenger]
provider = "sunshine"
app_id = "{SUNSHINE_APP}"
key_id = "{SUNSHINE_KEY_ID}"
key_secret_env = "SUNSHINE_KEY_SECRET"
webhook_secret_env = "SUNSHINE_WEBHOOK_SECRET"
integration_id = "5e4af71a81966cfff3ef6550"
base_url = "http://127.0.0.1:9"

[channels.app]
provider = "webhook"
url = "http://127.0.0.1:9/hooks"
secret_env = "WEBHOOK_SECRET"
"""

CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in
anna,Anna de Vries,anna@example.nl,+31612345601,whatsapp,nl-NL,Europe/Amsterdam,whatsapp;sms
mx1,María López,maria@example.mx,+525512345678,whatsapp,es-MX,America/Mexico_City,whatsapp
mx2,Juan Pérez,juan@example.mx,+52 1 33 1234 5678,whatsapp,es-MX,America/Mexico_City,whatsapp
br1,Ana Souza,ana@example.br,+5511987654321,whatsapp,pt-BR,America/Sao_Paulo,whatsapp
br2,Loja Centro,loja@example.br,+551134567890,whatsapp,pt-BR,America/Sao_Paulo,whatsapp
"""


@pytest.fixture
def prepared(ws: Path, cli: Cli) -> Path:
    toml = (ws / "outreach.toml").read_text(encoding="utf-8")
    start, end = toml.index("[channels.sms]"), toml.index("[server]")
    (ws / "outreach.toml").write_text(
        toml[:start] + CHANNELS.lstrip() + "\n" + toml[end:], encoding="utf-8"
    )
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    result = cli("customers", "import", str(ws / "customers.csv"))
    assert result.exit_code == 0, result.stderr
    return ws


def wa(sender: str, message: dict[str, Any], mid: str) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "Someone"}, "wa_id": sender}],
                            "messages": [
                                {"from": sender, "id": mid, "timestamp": "1796119200", **message}
                            ],
                        },
                    }
                ],
            }
        ],
    }


def ingest(
    ws: Path, cli: Cli, fmt: str, lines: list[str], channel: str | None = None
) -> tuple[int, dict[str, Any]]:
    path = ws / f"in-{fmt}.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    args = ["--now", NOW, "replies", "ingest", str(path), "--format", fmt, "--json"]
    result = cli(*args, *(["--channel", channel] if channel else []), env=ENV)
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout)


def inbound(cli: Cli, customer: str) -> list[dict[str, Any]]:
    shown = json.loads(cli("conversations", "show", customer, "--json").stdout)
    return [m for m in shown["messages"] if m["direction"] == "in"]


NOT_PAYLOADS = [
    '{"channel": "sms", "from": "+31612345601", "text": "9"}',  # normalized, not a payload
    '{"hello": "world"}',
    "just some words",
]
GOOD = {
    "twilio": json.dumps(
        {"From": "+31612345601", "Body": "hallo", "MessageSid": "SMgood", "NumMedia": "0"}
    ),
    "whatsapp-cloud": json.dumps(
        wa("31612345601", {"type": "text", "text": {"body": "hoi"}}, "wamid.good")
    ),
    "sunshine": json.dumps(
        {
            "events": [
                {
                    "id": "e1",
                    "type": "conversation:message",
                    "payload": {
                        "message": {
                            "id": "m1",
                            "author": {"type": "user", "user": {"externalId": "+31612345601"}},
                            "content": {"type": "text", "text": "hey"},
                        }
                    },
                }
            ]
        }
    ),
    "webhook": json.dumps({"from": "anna", "text": "hi", "id": "w1"}),
}
CHANNEL_OF = {
    "twilio": "sms",
    "whatsapp-cloud": "whatsapp",
    "sunshine": "messenger",
    "webhook": "app",
}


@pytest.mark.parametrize("fmt", sorted(GOOD))
def test_every_line_that_is_not_a_payload_of_the_format_is_rejected_with_its_number(
    prepared: Path, cli: Cli, fmt: str
) -> None:
    others = [
        GOOD[f] for f in sorted(GOOD) if f != fmt and not (fmt == "twilio" and f == "webhook")
    ]  # {"from","text"} has no Twilio Body either way
    # a normalized line {"from", "text"} is what the webhook provider takes
    not_payloads = NOT_PAYLOADS[1:] if fmt == "webhook" else NOT_PAYLOADS
    lines = [GOOD[fmt], *not_payloads, *others]
    code, summary = ingest(prepared, cli, fmt, lines, CHANNEL_OF[fmt])
    assert code == 3
    rejected = {r["line"]: r["reason"] for r in summary["rejected"]}
    assert sorted(rejected) == list(range(2, len(lines) + 1)), summary["rejected"]
    assert all(
        f"not a {fmt} payload" in reason or "JSON" in reason for reason in rejected.values()
    ), rejected
    assert summary["stored"] == 1


def test_a_line_of_a_valid_payload_that_carries_no_message_is_not_rejected(
    prepared: Path, cli: Cli
) -> None:
    empty = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [{"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}],
            }
        ],
    }
    code, summary = ingest(prepared, cli, "whatsapp-cloud", [json.dumps(empty)], "whatsapp")
    assert (code, summary["rejected"], summary["stored"]) == (0, [], 0)


def test_a_whatsapp_number_change_moves_the_customer_and_keeps_the_conversation(
    prepared: Path, cli: Cli
) -> None:
    change = wa(
        "31612345601",
        {
            "type": "system",
            "system": {
                "body": "Anna changed from 31612345601 to 31687654321",
                "new_wa_id": "31687654321",
                "type": "user_changed_number",
            },
        },
        "wamid.sys1",
    )
    later = wa(
        "31687654321", {"type": "text", "text": {"body": "new phone, same me"}}, "wamid.after"
    )
    code, summary = ingest(
        prepared, cli, "whatsapp-cloud", [json.dumps(change), json.dumps(later)], "whatsapp"
    )
    assert code == 0, summary
    assert summary["new_contacts"] == 0
    customer = json.loads(cli("customers", "show", "anna", "--json").stdout)
    assert customer["customer"]["phone"] == "+31687654321"
    messages = inbound(cli, "anna")
    assert [m["kind"] for m in messages] == ["number_change", "text"]
    assert messages[0]["details"]["old"] == "+31612345601"
    assert messages[0]["details"]["new"] == "+31687654321"
    assert messages[1]["text"] == "new phone, same me"
    assert (
        "number changed from +31612345601 to +31687654321"
        in cli("conversations", "show", "anna").stdout
    )
    # and an SMS from the new number is Anna's too
    sms = json.dumps({"From": "+31687654321", "Body": "and by sms", "MessageSid": "SMx"})
    code, summary = ingest(prepared, cli, "twilio", [sms], "sms")
    assert (code, summary["new_contacts"]) == (0, 0)


@pytest.mark.parametrize(
    ("wa_id", "customer"),
    [
        ("5215512345678", "mx1"),  # WhatsApp keeps Mexico's old mobile 1
        ("5213312345678", "mx2"),  # imported as +52 1 33…: stored as +52 33…, matched
        ("523312345678", "mx2"),  # and as written today
        ("551187654321", "br1"),  # an account from before Brazil's ninth digit
        ("5511987654321", "br1"),  # and the number as stored
        ("551134567890", "br2"),  # a landline is matched as it is
    ],
)
def test_mexican_and_brazilian_whatsapp_ids_match_the_stored_customer(
    prepared: Path, cli: Cli, wa_id: str, customer: str
) -> None:
    line = json.dumps(wa(wa_id, {"type": "text", "text": {"body": "hola"}}, f"wamid.{wa_id}"))
    code, summary = ingest(prepared, cli, "whatsapp-cloud", [line], "whatsapp")
    assert (code, summary["stored"], summary["new_contacts"]) == (0, 1, 0), summary
    assert [m["text"] for m in inbound(cli, customer)] == ["hola"]


def test_a_mexican_mobile_written_with_its_old_1_is_imported_in_todays_form(
    prepared: Path, cli: Cli
) -> None:
    customer = json.loads(cli("customers", "show", "mx2", "--json").stdout)["customer"]
    assert customer["phone"] == "+523312345678"


def test_a_landline_is_not_taken_for_a_mobile_without_its_ninth_digit(
    prepared: Path, cli: Cli
) -> None:
    # +55 11 3456-7890 must not match a customer at +55 11 93456-7890
    line = json.dumps(wa("5511934567890", {"type": "text", "text": {"body": "oi"}}, "wamid.x"))
    code, summary = ingest(prepared, cli, "whatsapp-cloud", [line], "whatsapp")
    assert (code, summary["new_contacts"]) == (0, 1)


def test_a_revoke_reaction_or_edit_never_acts_as_a_keyword(prepared: Path, cli: Cli) -> None:
    lines = [
        json.dumps(
            wa(
                "31612345601",
                {"type": "revoke", "revoke": {"original_message_id": "wamid.old"}},
                "wamid.r1",
            )
        ),
        json.dumps(
            wa(
                "31612345601",
                {
                    "type": "reaction",
                    "reaction": {"message_id": "wamid.old", "emoji": "\U0001f6d1"},
                },
                "wamid.r2",
            )
        ),
        json.dumps(
            wa(
                "31612345601",
                {
                    "type": "edit",
                    "edit": {
                        "original_message_id": "wamid.old",
                        "message": {"type": "text", "text": {"body": "STOP"}},
                    },
                },
                "wamid.r3",
            )
        ),
        json.dumps(wa("31612345601", {"type": "somethingnew", "somethingnew": {}}, "wamid.r4")),
    ]
    code, summary = ingest(prepared, cli, "whatsapp-cloud", lines, "whatsapp")
    assert code == 0, summary
    assert (summary["stored"], summary["events"], summary["keywords"]) == (4, 4, {})
    assert summary["needs_attention"] == 0 and summary["replies"] == 0
    consent = json.loads(cli("consent", "show", "anna", "--json").stdout)
    assert "opted_out" not in json.dumps(consent)
    assert [m["text"] for m in inbound(cli, "anna")] == ["", "", "STOP", ""]
    assert [m["kind"] for m in inbound(cli, "anna")] == [
        "revoke",
        "reaction",
        "edit",
        "unsupported",
    ]
