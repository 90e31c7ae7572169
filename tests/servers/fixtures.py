"""Fixtures that start each emulator for one test; load with ``pytest_plugins``.

The credentials are fixed fake values so that tests can also assert they never appear in
an error message.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from outreach.channels.base import ProviderContext
from outreach.config import ChannelConfig

from .meta import MetaEmulator
from .smtp import SmtpEmulator
from .sunshine import SunshineEmulator
from .twilio import TwilioEmulator
from .webhook_receiver import WebhookReceiver

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-secret-token-0f9e8d7c6b5a"
META_PHONE_ID = "109876543210987"
META_TOKEN = "EAAG-meta-secret-access-token-42"
META_APP_SECRET = "meta-app-secret-5c4b3a"
META_VERIFY_TOKEN = "meta-verify-token-77"
SUNSHINE_APP = "5963c0d619a30a2e00de36b8"
SUNSHINE_KEY_ID = "app_5963c0d619a30a2e00de36b9"
SUNSHINE_SECRET = "sunshine-key-secret-ZxYwVu"
SUNSHINE_WEBHOOK_SECRET = "sunshine-webhook-secret-QpOn"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"outreach-webhook-signing-key-32b").decode()
SMTP_USER = "mailer@example.com"
SMTP_PASSWORD = "smtp-secret-password-1234"


@pytest.fixture
def twilio_server() -> Iterator[TwilioEmulator]:
    with TwilioEmulator(TWILIO_SID, TWILIO_TOKEN) as server:
        assert isinstance(server, TwilioEmulator)
        yield server


@pytest.fixture
def meta_server() -> Iterator[MetaEmulator]:
    with MetaEmulator(META_PHONE_ID, META_TOKEN) as server:
        assert isinstance(server, MetaEmulator)
        yield server


@pytest.fixture
def sunshine_server() -> Iterator[SunshineEmulator]:
    with SunshineEmulator(SUNSHINE_APP, SUNSHINE_KEY_ID, SUNSHINE_SECRET) as server:
        assert isinstance(server, SunshineEmulator)
        yield server


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        assert isinstance(server, WebhookReceiver)
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpEmulator]:
    server = SmtpEmulator()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpEmulator]:
    server = SmtpEmulator(username=SMTP_USER, password=SMTP_PASSWORD)
    server.start()
    yield server
    server.stop()


ENV = {
    "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
    "WHATSAPP_TOKEN": META_TOKEN,
    "WHATSAPP_APP_SECRET": META_APP_SECRET,
    "WHATSAPP_VERIFY_TOKEN": META_VERIFY_TOKEN,
    "SUNSHINE_KEY_SECRET": SUNSHINE_SECRET,
    "SUNSHINE_WEBHOOK_SECRET": SUNSHINE_WEBHOOK_SECRET,
    "WEBHOOK_SECRET": WEBHOOK_SECRET,
    "SMTP_USERNAME": SMTP_USER,
    "SMTP_PASSWORD": SMTP_PASSWORD,
}
SECRETS = (
    TWILIO_TOKEN,
    META_TOKEN,
    META_APP_SECRET,
    META_VERIFY_TOKEN,
    SUNSHINE_SECRET,
    SUNSHINE_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    SMTP_PASSWORD,
)


def channel_config(
    provider: str,
    settings: dict[str, object],
    *,
    name: str = "test",
    concurrency: int = 4,
    timeout: float = 2.0,
) -> ChannelConfig:
    """A ChannelConfig as outreach.toml would give it."""
    return ChannelConfig(
        name=name,
        provider=provider,
        settings=dict(settings),
        concurrency=concurrency,
        timeout=timeout,
    )


def context(env: dict[str, str] | None = None) -> ProviderContext:
    return ProviderContext(workspace_root=".", env=ENV if env is None else env, sender_name="Acme")


def assert_no_secret(text: str) -> None:
    """Fail if any test secret, or an Authorization header, is in ``text``."""
    for secret in SECRETS:
        assert secret not in text, "a secret leaked into an error message"
    assert "authorization:" not in text.lower()
    assert "Basic " not in text and "Bearer " not in text
