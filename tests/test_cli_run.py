"""`outreach run` end to end on the outbox: routing, windows, caps, exactly-once, locks."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from outreach.lock import workspace_lock
from tests.conftest import Cli
from tests.servers.fixtures import ENV, META_PHONE_ID, SUNSHINE_APP, SUNSHINE_KEY_ID
from tests.servers.fixtures import meta_server as meta_server
from tests.servers.fixtures import sunshine_server as sunshine_server
from tests.servers.meta import MetaEmulator
from tests.servers.sunshine import SunshineEmulator

# 1 December 2026, 10:30 in Amsterdam, 04:30 in New York, 20:30 in Sydney
NOW = "2026-12-01T09:30:00Z"

CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in,plan
nl1,Anna de Vries,anna@example.nl,+31612345601,sms,nl-NL,Europe/Amsterdam,sms;email,pro
nl2,Joost Bakker,joost@example.nl,+31612345602,email,nl-NL,Europe/Amsterdam,email,pro
nl3,Daan Mulder,daan@example.nl,+31612345606,sms,nl-NL,Europe/Amsterdam,,pro
nl4,Bram Jansen,,,sms,nl-NL,Europe/Amsterdam,sms,basic
us1,Olivia Johnson,olivia@example.com,+12125550116,sms,en-US,America/New_York,sms,pro
au1,Charlotte White,charlotte@example.com.au,+61491570128,email,en-AU,Australia/Sydney,email,pro
"""


def outbox_files(ws: Path) -> list[Path]:
    return sorted(p for p in (ws / "outbox").rglob("*") if p.suffix in (".json", ".eml"))


def deliveries(ws: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(ws / "outreach.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM deliveries ORDER BY customer_id")]
    conn.close()
    return rows


@pytest.fixture
def imported(ws: Path, cli: Cli) -> Path:
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    result = cli("customers", "import", str(ws / "customers.csv"))
    assert result.exit_code == 0, result.stderr
    return ws


def run_json(cli: Cli, *args: str, now: str = NOW) -> dict[str, Any]:
    result = cli("--now", now, "run", *args, "--json")
    assert result.exit_code in (0, 3), result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_run_sends_in_window_defers_the_rest_and_records_each_skip(
    imported: Path, cli: Cli
) -> None:
    data = run_json(cli, "nps")
    [line] = data["campaigns"]
    assert line["name"] == "nps" and line["occurrence"] == "2026-12-01T09:00:00Z"
    assert line["audience"] == 6
    # nl1 by sms, nl2 by email now; us1 (04:30) and au1 (20:30) wait for their morning
    assert line["sent"] == 2 and line["deferred"] == 2 and line["planned"] == 4
    assert line["skipped"] == {"no_consent": 1, "no_address": 1}
    assert data["sent"] == 2 and data["deferred"] == 2 and data["failed"] == 0
    files = outbox_files(imported)
    assert {f.parent.name for f in files} == {"sms", "email"}
    sms = json.loads((imported / "outbox" / "sms").glob("*.json").__next__().read_text())
    assert sms["to"] == "+31612345601" and sms["customer_id"] == "nl1"
    assert sms["campaign"] == "nps" and "Anna" in sms["body"]
    eml = next((imported / "outbox" / "email").glob("*.eml")).read_text()
    assert "Subject:" in eml and "joost@example.nl" in eml
    us1 = next(d for d in deliveries(imported) if d["customer_id"] == "us1")
    assert us1["status"] == "deferred" and us1["not_before"] == "2026-12-01T14:00:00Z"


def test_rerun_sends_nothing_twice_and_a_later_run_sends_the_deferred(
    imported: Path, cli: Cli
) -> None:
    run_json(cli, "nps")
    first = outbox_files(imported)
    again = run_json(cli, "nps", now="2026-12-01T09:45:00Z")
    assert again["sent"] == 0 and outbox_files(imported) == first
    # 09:10 in New York: us1's window is open, au1's (Sydney 01:10) is not
    later = run_json(cli, "nps", now="2026-12-01T14:10:00Z")
    assert later["sent"] == 1
    assert len(outbox_files(imported)) == len(first) + 1
    statuses = {d["customer_id"]: d["status"] for d in deliveries(imported)}
    assert statuses["us1"] == "sent" and statuses["au1"] == "deferred"


def test_a_stop_between_planning_and_sending_stops_the_deferred_message(
    imported: Path, cli: Cli
) -> None:
    run_json(cli, "nps")
    result = cli("consent", "revoke", "us1", "--channel", "sms", "--source", "keyword:STOP")
    assert result.exit_code == 0, result.stderr
    run_json(cli, now="2026-12-01T14:10:00Z")
    us1 = next(d for d in deliveries(imported) if d["customer_id"] == "us1")
    assert us1["status"] == "skipped" and us1["reason"] == "opted_out"
    assert not any(
        json.loads(f.read_text()).get("customer_id") == "us1"
        for f in outbox_files(imported)
        if f.suffix == ".json"
    )


def test_dry_run_writes_and_sends_nothing(imported: Path, cli: Cli) -> None:
    data = run_json(cli, "nps", "--dry-run")
    [line] = data["campaigns"]
    assert line["planned"] == 4 and data["dry_run"] is True
    assert outbox_files(imported) == [] and deliveries(imported) == []


def test_a_second_run_exits_5_while_the_workspace_is_locked(imported: Path, cli: Cli) -> None:
    with workspace_lock(imported):
        result = cli("--now", NOW, "run", "nps")
    assert result.exit_code == 5
    assert "another outreach run" in result.stderr and "--wait" in result.stderr
    assert deliveries(imported) == []


def test_frequency_cap_holds_back_a_second_campaign_but_not_a_notification(
    imported: Path, cli: Cli
) -> None:
    (imported / "campaigns" / "second.toml").write_text(
        'kind = "update"\ntemplate = "product_update"\nchannels = ["preferred"]\n'
        '[schedule]\nstart = "2026-12-01 10:00"\n[limits]\nfrequency_cap = "1/7d"\n',
        encoding="utf-8",
    )
    # the workspace cap is 2/7d; a campaign-level cap of 1/7d counts that campaign only
    run_json(cli, "nps")
    second = run_json(cli, "second")
    [line] = second["campaigns"]
    assert line["sent"] == 2
    (imported / "campaigns" / "third.toml").write_text(
        'kind = "update"\ntemplate = "product_update"\nchannels = ["preferred"]\n'
        '[schedule]\nstart = "2026-12-01 10:00"\n',
        encoding="utf-8",
    )
    third = run_json(cli, "third")
    [line] = third["campaigns"]
    assert line["sent"] == 0 and line["skipped"].get("frequency_cap") == 4


def test_a_template_error_skips_that_message_and_the_run_goes_on(imported: Path, cli: Cli) -> None:
    folder = imported / "templates" / "broken"
    folder.mkdir()
    (folder / "sms.j2").write_text("Hi {{ customer.plann }}", encoding="utf-8")
    (folder / "email.j2").write_text("Subject: hi\n\nHello {{ customer.name }}", encoding="utf-8")
    (imported / "campaigns" / "broken.toml").write_text(
        'kind = "update"\ntemplate = "broken"\nchannels = ["preferred"]\n'
        '[schedule]\nstart = "2026-12-01 10:00"\n',
        encoding="utf-8",
    )
    result = cli("--now", NOW, "run", "broken", "--json")
    data = json.loads(result.stdout)
    [line] = data["campaigns"]
    assert line["sent"] == 1  # nl2 by email
    assert line["skipped"].get("template_error") == 1  # nl1 by sms
    nl1 = next(d for d in deliveries(imported) if d["customer_id"] == "nl1")
    assert "customer.plann" in str(nl1["error"]) or "plann" in str(nl1["error"])


def test_triggered_notification_for_a_file_of_customers_runs_once(imported: Path, cli: Cli) -> None:
    orders = imported / "shipped.csv"
    orders.write_text(
        "id,order_id,tracking_url\nnl1,A-1001,https://track.example/A-1001\n", encoding="utf-8"
    )
    first = run_json(cli, "shipped", "--customers", str(orders))
    assert first["sent"] == 1
    body = json.loads(next((imported / "outbox" / "sms").glob("*.json")).read_text())["body"]
    assert "A-1001" in body
    again = run_json(cli, "shipped", "--customers", str(orders))
    assert again["sent"] == 0 and len(outbox_files(imported)) == 1


def test_limit_caps_the_number_of_sends(imported: Path, cli: Cli) -> None:
    data = run_json(cli, "nps", "--limit", "1")
    assert data["sent"] == 1
    rest = run_json(cli, now="2026-12-01T09:40:00Z")
    assert rest["sent"] == 1


def test_audience_where_that_writes_is_refused(imported: Path, cli: Cli) -> None:
    (imported / "campaigns" / "evil.toml").write_text(
        'kind = "update"\ntemplate = "product_update"\n'
        '[audience]\nwhere = "1; DELETE FROM customers"\n[schedule]\nstart = "2026-12-01 10:00"\n',
        encoding="utf-8",
    )
    result = cli("--now", NOW, "run", "evil")
    assert result.exit_code in (2, 4)
    assert "evil" in result.stderr or "where" in result.stderr
    assert len(json.loads(cli("customers", "list", "--json").stdout)) == 6


def test_queue_lists_deferred_deliveries(imported: Path, cli: Cli) -> None:
    run_json(cli, "nps")
    result = cli("queue", "--json")
    rows = json.loads(result.stdout)
    assert {r["customer_id"] for r in rows} == {"us1", "au1"}
    assert all(r["status"] == "deferred" for r in rows)


def test_an_email_reply_from_another_address_finds_its_conversation(
    imported: Path, cli: Cli
) -> None:
    import email

    run_json(cli, "nps")
    eml = email.message_from_bytes(next((imported / "outbox" / "email").glob("*.eml")).read_bytes())
    reply_to, message_id = str(eml["Reply-To"]), str(eml["Message-ID"])
    assert "+" in reply_to.split("@")[0] and len(reply_to.split("@")[0]) <= 64
    lines = [
        {
            "channel": "email",
            "from": "joost.private@example.org",
            "to": reply_to,
            "text": "8",
            "received_at": "2026-12-01T10:00:00Z",
            "id": "r1",
        },
        {
            "channel": "email",
            "from": "other@example.org",
            "in_reply_to": message_id,
            "text": "and thanks",
            "received_at": "2026-12-01T10:05:00Z",
            "id": "r2",
        },
    ]
    (imported / "in.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    result = cli("--now", "2026-12-01T10:10:00Z", "replies", "ingest", str(imported / "in.jsonl"))
    assert result.exit_code == 0, result.stderr
    shown = json.loads(cli("conversations", "show", "nl2", "--json").stdout)
    texts = [m["text"] for m in shown["messages"]]
    assert "8" in texts and "and thanks" in texts


def add_news_campaign(ws: Path, cli: Cli, channel: str, channel_toml: str, extra: str = "") -> None:
    """Channel ``channel`` in outreach.toml, a campaign ``news`` on it alone (any hour) with
    template ``news/CHANNEL.j2``, and consent there for nl1 and nl2."""
    with (ws / "outreach.toml").open("a", encoding="utf-8") as toml:
        toml.write(f"\n[channels.{channel}]\n{channel_toml}")
    (ws / "campaigns" / "news.toml").write_text(
        f'kind = "update"\ntemplate = "news"\nchannels = ["{channel}"]\n\n'
        f'[schedule]\nstart = "2026-12-01 10:00"\nwindow = "00:00-23:59"\n{extra}',
        encoding="utf-8",
    )
    (ws / "templates" / "news").mkdir()
    (ws / "templates" / "news" / f"{channel}.j2").write_text(
        "Hi {{ customer.name }}, news from Acme.", encoding="utf-8"
    )
    assert cli("consent", "grant", "nl1", "nl2", "--channel", channel).exit_code == 0


def test_a_channel_addressed_by_platform_user_id_sends_to_the_stored_id(
    imported: Path, cli: Cli
) -> None:
    """``address = "user"``: the address is the platform's user id kept in ``addresses``
    (learnt from the customer's first message there), not a customer column."""
    add_news_campaign(imported, cli, "app", 'provider = "outbox"\naddress = "user"\n')
    conn = sqlite3.connect(imported / "outreach.db")
    conn.execute(
        "INSERT INTO addresses (channel, address, customer_id) VALUES ('app', 'app-user-77', 'nl1')"
    )
    conn.commit()
    conn.close()
    [line] = run_json(cli, "news")["campaigns"]
    assert line["sent"] == 1 and line["skipped"] == {"no_address": 5}
    [sent] = (imported / "outbox" / "app").glob("*.json")
    message = json.loads(sent.read_text())
    assert message["to"] == "app-user-77" and message["customer_id"] == "nl1"


def test_sunshine_sends_free_text_inside_the_service_window_and_the_template_outside(
    imported: Path, cli: Cli, sunshine_server: SunshineEmulator
) -> None:
    """A campaign with a ``whatsapp_template`` on a Sunshine channel: the customer who wrote
    there in the last 24 hours gets the rendered text, the other the approved template."""
    add_news_campaign(
        imported,
        cli,
        "chat",
        f'provider = "sunshine"\napp_id = "{SUNSHINE_APP}"\nkey_id = "{SUNSHINE_KEY_ID}"\n'
        f'key_secret_env = "SUNSHINE_KEY_SECRET"\nintegration_id = "5e4af71a81966cfff3ef6550"\n'
        f'base_url = "{sunshine_server.url}"\n',
        '\n[whatsapp_template]\nname = "news"\nlanguage = "en"\nparameters = ["name"]\n',
    )
    conn = sqlite3.connect(imported / "outreach.db")
    conversation = conn.execute(
        "INSERT INTO conversations (customer_id, status, needs_attention, created_at, "
        "updated_at) VALUES ('nl1', 'open', 0, '2026-12-01T08:00:00Z', '2026-12-01T08:00:00Z')"
    ).lastrowid
    conn.execute(
        "INSERT INTO messages (conversation_id, customer_id, direction, channel, text, at) "
        "VALUES (?, 'nl1', 'in', 'chat', 'is there news?', '2026-12-01T08:00:00Z')",
        (conversation,),
    )
    conn.commit()
    conn.close()
    result = cli("--now", NOW, "run", "news", "--json", env=ENV)
    assert result.exit_code == 0, result.stderr
    sent = {
        r.json()["destination"]["destinationId"]: r.json()["message"]
        for r in sunshine_server.requests
    }
    assert sent["+31612345601"] == {"type": "text", "text": "Hi Anna de Vries, news from Acme."}
    assert sent["+31612345602"]["type"] == "template"
    assert sent["+31612345602"]["template"]["name"] == "news"


def test_a_send_the_provider_refuses_as_unsendable_is_recorded_skipped_with_its_code(
    imported: Path, cli: Cli, meta_server: MetaEmulator
) -> None:
    """WhatsApp Cloud outside the service window and no template: the provider's skipping
    ProviderError makes the delivery ``skipped`` with its code as the reason, not failed,
    and nothing is requested; the customer who wrote in the window gets the text."""
    add_news_campaign(
        imported,
        cli,
        "wa",
        f'provider = "whatsapp-cloud"\nphone_number_id = "{META_PHONE_ID}"\n'
        f'access_token_env = "WHATSAPP_TOKEN"\nbase_url = "{meta_server.url}"\n',
    )
    conn = sqlite3.connect(imported / "outreach.db")
    conversation = conn.execute(
        "INSERT INTO conversations (customer_id, status, needs_attention, created_at, "
        "updated_at) VALUES ('nl1', 'open', 0, '2026-12-01T08:00:00Z', '2026-12-01T08:00:00Z')"
    ).lastrowid
    conn.execute(
        "INSERT INTO messages (conversation_id, customer_id, direction, channel, text, at) "
        "VALUES (?, 'nl1', 'in', 'wa', 'is there news?', '2026-12-01T08:00:00Z')",
        (conversation,),
    )
    conn.commit()
    conn.close()
    result = cli("--now", NOW, "run", "news", "--json", env=ENV)
    assert result.exit_code == 0, result.stderr
    assert [r.json()["to"] for r in meta_server.requests] == ["31612345601"]
    conn = sqlite3.connect(imported / "outreach.db")
    rows = dict(
        conn.execute(
            "SELECT customer_id, status || ':' || coalesce(reason, '') FROM deliveries "
            "WHERE campaign = 'news' AND customer_id IN ('nl1', 'nl2')"
        ).fetchall()
    )
    conn.close()
    assert rows == {"nl1": "sent:", "nl2": "skipped:whatsapp_window"}


def test_one_pass_asks_the_survey_question_in_each_customers_language(ws: Path, cli: Cli) -> None:
    import email
    from email import policy

    (ws / "customers.csv").write_text(
        "id,name,email,preferred_channel,locale,timezone,opted_in\n"
        "nl5,Sanne Visser,sanne@example.nl,email,nl-NL,Europe/Amsterdam,email\n"
        "gb1,Amelia Smith,amelia@example.co.uk,email,en-GB,Europe/Amsterdam,email\n"
        "nl6,Lotte de Boer,lotte@example.nl,email,nl-BE,Europe/Amsterdam,email\n",
        encoding="utf-8",
    )
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    assert run_json(cli, "nps")["sent"] == 3
    questions = {}
    for path in (ws / "outbox" / "email").glob("*.eml"):
        mail = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = mail.get_body(("plain",))
        assert text is not None
        questions[mail["To"].addresses[0].addr_spec] = text.get_content()
    assert "Hoe waarschijnlijk" in questions["sanne@example.nl"]
    assert "Hoe waarschijnlijk" in questions["lotte@example.nl"]
    assert "How likely" in questions["amelia@example.co.uk"]
    assert "Hoe waarschijnlijk" not in questions["amelia@example.co.uk"]
