"""The embedded default provider: every message becomes a file in ``outbox/CHANNEL/``.

Files are named by delivery id and written atomically (temporary file, then rename), so a
resend of the same delivery replaces the file instead of adding a second message: the
outbox is idempotent. Email becomes an RFC 5322 ``.eml``; everything else ``.json``.
Replies are fed back with ``outreach replies ingest``.
"""

from __future__ import annotations

import contextlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from ..config import ChannelConfig
from ..errors import DISK_FULL_ERRNOS, LOCAL_WRITE_ERRNOS, ProviderError
from .base import (
    AddressKind,
    Medium,
    OutboundMessage,
    Provider,
    ProviderContext,
    SendResult,
)
from .mime import mailbox, render_email


class OutboxProvider(Provider):
    name: ClassVar[str] = "outbox"
    idempotent: ClassVar[bool] = True
    local: ClassVar[bool] = True
    settings: ClassVar[frozenset[str]] = frozenset({"path"})

    @classmethod
    def channel_address_kind(cls, channel: ChannelConfig) -> AddressKind:
        # the outbox stands in for any provider: a channel named like mail is email
        return "email" if "mail" in channel.name else "phone"

    @classmethod
    def medium(cls, channel: ChannelConfig) -> Medium | None:
        return "whatsapp" if "whatsapp" in channel.name else None

    def __init__(self, channel: ChannelConfig, context: ProviderContext) -> None:
        super().__init__(channel, context)
        folder = Path(context.workspace_root) / str(channel.settings.get("path", "outbox"))
        self.folder = folder / channel.name
        self._prefix = f"{self.folder}{os.sep}"  # file names are joined per message: keep it cheap
        self.sender_name = context.sender_name
        self._made = False

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.subject is not None:
            data = _email_bytes(message, self.sender_name)
            suffix = ".eml"
        else:
            data = json.dumps(
                {
                    "to": message.to,
                    "body": message.body,
                    "customer_id": message.customer_id,
                    "campaign": message.campaign,
                    "channel": message.channel,
                    "delivery_id": message.delivery_id,
                },
                ensure_ascii=False,  # no indent: that takes json's pure-Python encoder
            ).encode("utf-8")
            suffix = ".json"
        name = f"{message.delivery_id}{suffix}"
        try:
            if not self._made:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._made = True
            _write_atomically(self._prefix + name, data)
        except OSError as exc:
            if exc.errno in LOCAL_WRITE_ERRNOS:
                # the disk, not the message: nothing else can be written there either
                full = exc.errno in DISK_FULL_ERRNOS
                what = "disk full" if full else (exc.strerror or "I/O error").lower()
                raise ProviderError(
                    f"outbox: cannot write in {self.folder}: {what}; free space there (or "
                    "fix the disk) and run again",
                    retryable=True,
                    code="disk_full" if full else "local_write",
                    halts_channel=True,
                ) from None
            raise ProviderError(
                f"outbox: cannot write {name} in {self.folder} ({exc.strerror}); check that "
                "the channel's path is a writable folder",
                retryable=False,
            ) from None
        return SendResult(provider_message_id=f"outbox:{message.delivery_id}")


def _write_atomically(target: str, data: bytes) -> None:
    """Temporary file, then rename: a reader never sees half a message."""
    tmp = target.rpartition(".")[0] + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a full disk must not also fill up with half messages
        raise


def _email_bytes(message: OutboundMessage, sender_name: str) -> bytes:
    return render_email(message, sender=_sender(sender_name), message_id_domain="outreach.local")


@lru_cache(maxsize=16)
def _sender(sender_name: str) -> str:
    return mailbox(sender_name, "outbox@localhost")
