"""RFC 5322 messages from an ``OutboundMessage``, shared by the smtp and outbox providers.

One pure function builds the whole message, so a mail written to the outbox and one sent
over SMTP carry the same headers:

- ``Message-ID`` is ``<delivery-id@domain>`` (the sender's domain): replies quote it in
  ``In-Reply-To``/``References``, a second route to the conversation;
- ``Reply-To`` is the plus-address ``local+TOKEN@domain`` of the reply address when the
  message has a ``reply_token``, so a reply names its conversation;
- ``List-Unsubscribe`` + ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058)
  when the message has an unsubscribe URL;
- ``multipart/alternative`` text + HTML when there is HTML, plain text otherwise.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr

from .. import clock
from ..errors import ConfigError
from .base import OutboundMessage


def address_of(text: str) -> str:
    """The bare ``local@domain`` of ``"Name <local@domain>"`` (or of a bare address)."""
    return parseaddr(text)[1]


def domain_of(address: str) -> str:
    """The domain of an address (``Name <a@example.com>`` → ``example.com``)."""
    bare = address_of(address)
    if "@" not in bare:
        raise ConfigError(f'"{address}" is not an email address; write it like hello@example.com')
    return bare.rsplit("@", 1)[1].lower()


def plus_address(address: str, token: str) -> str:
    """``local+TOKEN@domain`` from ``local@domain`` (display name dropped)."""
    bare = address_of(address)
    if "@" not in bare:
        raise ConfigError(f'"{address}" is not an email address; write it like replies@example.com')
    local, domain = bare.rsplit("@", 1)
    # one token only: a reply address that already carries a tag gets it replaced
    local = local.split("+", 1)[0]
    return f"{local}+{token}@{domain}"


def build_email(
    message: OutboundMessage,
    *,
    sender: str,
    reply_to: str | None = None,
    message_id_domain: str | None = None,
) -> EmailMessage:
    """The RFC 5322 message for ``message``, from ``sender`` (``"Name <addr>"``).

    ``reply_to`` is the reply address (plus-addressed with the message's ``reply_token``);
    without it, a message with a reply token is plus-addressed from the sender's address.
    """
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = _recipient(message)
    mail["Subject"] = message.subject or ""
    mail["Date"] = format_datetime(clock.now())
    domain = message_id_domain or domain_of(sender)
    mail["Message-ID"] = f"<{message.delivery_id}@{domain}>"
    if message.reply_token:
        mail["Reply-To"] = plus_address(reply_to or sender, message.reply_token)
    elif reply_to:
        mail["Reply-To"] = reply_to
    if message.unsubscribe_url:
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail["X-Outreach-Delivery"] = message.delivery_id
    mail.set_content(message.body)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    return mail


def _recipient(message: OutboundMessage) -> str | Address:
    if message.customer_name and not getaddresses([message.to])[0][0]:
        bare = address_of(message.to)
        if "@" in bare:
            local, domain = bare.rsplit("@", 1)
            return Address(display_name=message.customer_name, username=local, domain=domain)
    return message.to
