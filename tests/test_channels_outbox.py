"""The outbox provider's files: whole or absent, one per delivery, a resend replaces it.

(Writing through an unnamed O_TMPFILE linked under its name was tried for speed: on the
ext4 here a run to the outbox took 13-14 s instead of 11-12 s, so files are still written
under a temporary name and renamed.)
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from outreach.channels.base import OutboundMessage, ProviderContext
from outreach.channels.outbox import OutboxProvider
from outreach.config import ChannelConfig


def _provider(root: Path) -> OutboxProvider:
    return OutboxProvider(
        ChannelConfig("sms", "outbox", {}), ProviderContext(str(root), {}, sender_name="Acme")
    )


def _send(provider: OutboxProvider, body: str, delivery_id: str = "01JDXA") -> None:
    message = OutboundMessage(
        delivery_id=delivery_id,
        channel="sms",
        customer_id="c1",
        to="+31612345678",
        body=body,
        campaign="nps",
    )
    asyncio.run(provider.send(message))


def test_a_message_is_one_whole_file_and_a_resend_replaces_it(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    folder = tmp_path / "outbox" / "sms"
    _send(provider, "first")
    _send(provider, "second", delivery_id="01JDXB")
    _send(provider, "first, sent again after a crash")
    asyncio.run(provider.aclose())
    assert sorted(p.name for p in folder.iterdir()) == ["01JDXA.json", "01JDXB.json"]
    again = json.loads((folder / "01JDXA.json").read_text(encoding="utf-8"))
    assert again["body"] == "first, sent again after a crash"
    assert again["delivery_id"] == "01JDXA" and again["customer_id"] == "c1"
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "01JDXB.json").stat().st_mode & 0o777 == 0o644 & ~umask


def test_an_unwritable_outbox_is_a_clear_permanent_failure(tmp_path: Path) -> None:
    (tmp_path / "outbox").write_text("not a folder")
    from outreach.errors import ProviderError

    with pytest.raises(ProviderError, match=r"outbox: cannot write 01JDXA\.json") as caught:
        _send(_provider(tmp_path), "hello")
    assert not caught.value.retryable
