"""Channel sections for every provider, secrets by ``*_env``, pointed at given base URLs."""

from __future__ import annotations

from tests.servers.fixtures import META_PHONE_ID, SUNSHINE_APP, SUNSHINE_KEY_ID, TWILIO_SID


def all_channels(*, twilio: str, meta: str, sunshine: str, hook: str, smtp_port: int) -> str:
    """``sms`` (twilio), ``whatsapp`` (whatsapp-cloud), ``chat`` (sunshine), ``hook``
    (webhook, addressed by customer id) and ``email`` (smtp with AUTH)."""
    return f"""[channels.email]
provider = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "Acme <hello@example.com>"
username_env = "SMTP_USERNAME"
password_env = "SMTP_PASSWORD"
concurrency = 2
timeout = 1

[channels.sms]
provider = "twilio"
account_sid = "{TWILIO_SID}"
auth_token_env = "TWILIO_AUTH_TOKEN"
from = "+3197010000000"
base_url = "{twilio}"
concurrency = 2
timeout = 1

[channels.whatsapp]
provider = "whatsapp-cloud"
phone_number_id = "{META_PHONE_ID}"
access_token_env = "WHATSAPP_TOKEN"
app_secret_env = "WHATSAPP_APP_SECRET"
verify_token_env = "WHATSAPP_VERIFY_TOKEN"
base_url = "{meta}"
concurrency = 2
timeout = 1

[channels.chat]
provider = "sunshine"
app_id = "{SUNSHINE_APP}"
key_id = "{SUNSHINE_KEY_ID}"
key_secret_env = "SUNSHINE_KEY_SECRET"
webhook_secret_env = "SUNSHINE_WEBHOOK_SECRET"
integration_id = "5e4af71a81966cfff3ef6550"
base_url = "{sunshine}"
concurrency = 2
timeout = 1

[channels.hook]
provider = "webhook"
url = "{hook}/hooks/outreach"
secret_env = "WEBHOOK_SECRET"
address = "id"
concurrency = 2
timeout = 1
"""
