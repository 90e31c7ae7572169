"""The webhook provider tells the receiver who the message is for: `outreach run` to a
real loopback receiver, verified with the Standard Webhooks reference library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import Cli
from tests.servers.fixtures import WEBHOOK_SECRET
from tests.servers.fixtures import webhook_receiver as webhook_receiver
from tests.servers.webhook_receiver import WebhookReceiver

CUSTOMERS = """id,name,email,phone,preferred_channel,locale,timezone,opted_in
c2,Anna de Vries,anna@example.nl,+31612345601,app,nl-NL,Europe/Amsterdam,app
"""


def test_the_webhook_payload_names_the_customer_by_every_address_field(
    ws: Path, cli: Cli, webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_WEBHOOK_SECRET", WEBHOOK_SECRET)
    with (ws / "outreach.toml").open("a", encoding="utf-8") as toml:
        toml.write(
            f'\n[channels.app]\nprovider = "webhook"\n'
            f'url = "{webhook_receiver.url}/hooks/outreach"\n'
            'secret_env = "APP_WEBHOOK_SECRET"\n'
        )
    (ws / "campaigns" / "news.toml").write_text(
        'kind = "update"\ntemplate = "news"\nchannels = ["app"]\n\n'
        '[schedule]\nstart = "2026-12-01 10:00"\nwindow = "00:00-23:59"\n',
        encoding="utf-8",
    )
    (ws / "templates" / "news").mkdir()
    (ws / "templates" / "news" / "app.j2").write_text("Hi {{ customer.name }}", encoding="utf-8")
    (ws / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert cli("customers", "import", str(ws / "customers.csv")).exit_code == 0
    result = cli("--now", "2026-12-01T09:30:00Z", "run", "news", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)
    [request] = webhook_receiver.requests
    data = Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)["data"]
    assert data["to"] == "c2"
    assert data["customer"] == {
        "id": "c2",
        "name": "Anna de Vries",
        "email": "anna@example.nl",
        "phone": "+31612345601",
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
    }
