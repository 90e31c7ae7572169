"""``replies ingest``: read FILE|- (normalized JSONL or provider payloads) into events.

``inbox`` decides what an inbound event does; this module only turns an ingest file
into numbered ``InboundEvent`` values and feeds them to ``inbox.apply_events`` in
batches of ``BATCH_SIZE``, one write transaction each, then sends the queued replies in
bunches outside the transaction. It is separate because parsing a file (line limits, BOM,
UTF-8 and JSON errors, provider payloads built into fake webhook requests) has nothing
to do with the rules of a conversation, and the webhook server never needs it.

Lines are read one at a time (a line over ``MAX_LINE_BYTES`` is skipped without being
held in memory); a bad line is rejected with its number and the rest are kept.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from .. import clock
from ..channels import provider_class
from ..channels.base import InboundEvent, InboundMessage, Provider, WebhookRequest
from ..config import ChannelConfig, Config
from ..errors import DiskFullError, OutreachError, PayloadError, UsageError
from ..store.sqlite import database_error, store_path
from ..workspace import Workspace
from .inbox import InboundSummary, Inbox, RejectedEvent, apply_events, check_text

BATCH_SIZE = 2000  # one write transaction: ~0.1 s of holding the lock
REPLY_BUNCH = 500
REPLY_DELAY_SECONDS = 2.0
MAX_LINE_BYTES = 1024 * 1024


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each line; bytes is None for a line over MAX_LINE_BYTES,
    which is skipped without being held in memory."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line


def _decode_object(raw: bytes, number: int) -> Any:
    if number == 1:
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedEvent(
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "save the file as UTF-8"
        ) from None
    if "\x00" in text:
        raise RejectedEvent("contains a NUL byte")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RejectedEvent(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise RejectedEvent("not JSON (nested too deeply)") from None


def parse_normalized(data: Any, config: Config, default_channel: str | None) -> InboundMessage:
    """A normalized JSONL object ``{"channel","from","text","received_at","id"}`` → message.

    Email lines may also carry ``to`` (the plus-address replied to) and ``in_reply_to`` (the
    Message-ID answered), the two ways an email reply is tied to its conversation.
    """
    if not isinstance(data, dict):
        raise RejectedEvent(f"expected a JSON object, got {_json_type(data)}")
    channel = data.get("channel") or default_channel
    if not isinstance(channel, str) or not channel:
        raise RejectedEvent('"channel" is missing; add it or pass --channel')
    if channel not in config.channels:
        raise RejectedEvent(
            f'channel "{channel}" is not configured (configured: {", ".join(config.channels)})'
        )
    sender = data.get("from")
    if not isinstance(sender, str) or not sender.strip():
        raise RejectedEvent('"from" is missing or not a string')
    text = data.get("text")
    if not isinstance(text, str):
        raise RejectedEvent('"text" is missing or not a string')
    external = data.get("id")
    if isinstance(external, bool) or not isinstance(external, str | int | None):
        raise RejectedEvent('"id" must be a string')
    when = data.get("received_at")
    if when is None:
        received = clock.now()
    elif isinstance(when, str):
        received = _parse_received(when, config.timezone)
    else:
        raise RejectedEvent('"received_at" must be an ISO 8601 string')
    name = data.get("name")
    check_text(sender)
    # an email reply to replies+TOKEN@domain names its conversation by the token
    to = data.get("to")
    token = None
    if isinstance(to, str):
        match = re.search(r"\+([a-z2-7]{8,64})@", to.lower())
        token = match[1] if match else None
    in_reply_to = data.get("in_reply_to")
    return InboundMessage(
        channel=channel,
        address=sender,
        text=check_text(text),
        external_id=str(external) if external is not None else None,
        received_at=received,
        profile_name=check_text(name) if isinstance(name, str) and name else None,
        in_reply_to=in_reply_to.strip("<> ") if isinstance(in_reply_to, str) else None,
        reply_token=token,
    )


# a sender's clock a little ahead of ours is not a message from the future
CLOCK_SKEW = timedelta(minutes=5)


def _parse_received(text: str, tz: ZoneInfo) -> datetime:
    value: datetime | None = None
    try:
        # the common case, fast: a full ISO 8601 time with its offset or Z
        value = datetime.fromisoformat(text)
        value = value.astimezone(UTC) if value.tzinfo is not None else None
    except ValueError:
        pass
    if value is None:
        try:
            value = clock.parse_time(text, tz, what='"received_at"')
        except UsageError as exc:
            raise RejectedEvent(str(exc)) from None
    now = clock.now()
    if value > now + CLOCK_SKEW:
        # stored, it would sort after the agent's answer to it in the transcript
        raise RejectedEvent(
            f'"received_at" {clock.iso(value)} is in the future (now is {clock.iso(now)}); '
            "fix the time, or leave it out to mean now"
        )
    return value


def _json_type(value: Any) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _provider_parser(ws: Workspace, fmt: str, channel: str | None) -> Provider:
    """The provider ``fmt`` set up for ``channel``, for parsing only (no secrets needed: an
    ingested file is trusted input, its signatures are not checked)."""
    config = ws.config
    cls = provider_class(fmt)
    if not cls.receives_webhooks:
        raise UsageError(
            f"--format {fmt}: that provider receives no webhooks, so there are no payloads "
            "of its own to read; use --format jsonl, or eml, mbox or maildir for emails"
        )
    if channel is None:
        using = [c.name for c in config.channels.values() if c.provider == fmt]
        if len(using) != 1:
            raise UsageError(
                f"--format {fmt}: name the channel these payloads came from with --channel "
                f"(configured: {', '.join(config.channels)})"
            )
        channel = using[0]
    base = config.channel(channel)
    settings = dict(base.settings) if base.provider == fmt else {}
    return cls.for_parsing(ChannelConfig(name=channel, provider=fmt, settings=settings))


def _provider_events(provider: Provider, raw: bytes, number: int) -> list[InboundEvent]:
    data = _decode_object(raw, number) if raw.lstrip()[:1] in (b"{", b"[", b'"') else None
    if data is not None and not isinstance(data, dict):
        raise RejectedEvent(f"expected a JSON object, got {_json_type(data)}")
    if provider.form_webhooks and isinstance(data, dict):
        # a line may hold a form post's fields (Twilio's parameters) as a JSON object
        body = urlencode({str(k): str(v) for k, v in data.items()}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = raw.strip()
        if data is None:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                raise RejectedEvent("not UTF-8; save the file as UTF-8") from None
        content_type = (
            "application/json" if data is not None else "application/x-www-form-urlencoded"
        )
    request = WebhookRequest(
        method="POST", url="", headers={"content-type": content_type}, query={}, body=body
    )
    try:
        events = provider.parse(request)
    except PayloadError as exc:
        raise RejectedEvent(f"not a {provider.name} payload: {exc}") from None
    except (OutreachError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RejectedEvent(f"{provider.name} payload cannot be read ({exc})") from None
    except RecursionError:
        raise RejectedEvent(f"{provider.name} payload cannot be read (nested too deeply)") from None
    return events


def ingest(
    ws: Workspace,
    stream: IO[bytes],
    *,
    channel: str | None = None,
    fmt: str = "jsonl",
    batch_size: int = BATCH_SIZE,
    send: bool = True,
) -> InboundSummary:
    """``replies ingest``: stream lines into the store in batches, then send queued replies.

    A bad line is reported with its number and the rest are kept.
    """
    config = ws.config
    if channel is not None:
        config.channel(channel)
    store = ws.store
    inbox = Inbox(store, config)
    provider = None if fmt == "jsonl" else _provider_parser(ws, fmt, channel)
    summary = InboundSummary()
    batch: list[tuple[int, InboundEvent]] = []
    unsent: list[str] = []
    last_send = time.monotonic()

    def send_waiting() -> None:
        nonlocal last_send
        last_send = time.monotonic()
        if not unsent:
            return
        # here: the sending engine (asyncio, ssl, templates) is start-up cost for the many
        # ingests that queue no reply
        from ..sending.engine import send_replies

        sent, problems = send_replies(ws, unsent)
        summary.replies_sent += sent
        summary.problems.extend(problems)
        unsent.clear()

    stored_up_to = 0  # the last line of the last committed batch

    def flush(final: bool = False) -> None:
        nonlocal stored_up_to
        if batch:
            # counted only once committed: a batch the database rolled back (a lost
            # connection, a deadlock) is applied again from a fresh summary
            done = InboundSummary()

            def apply() -> None:
                nonlocal done
                done = InboundSummary()
                apply_events(store, config, batch, done, inbox)

            store.retrying(apply)
            summary.add(done)
            stored_up_to = batch[-1][0]
            batch.clear()
            unsent.extend(done.replies_queued)
        # A send pass has a fixed cost, so replies go out in bunches: at the end, or once
        # enough are waiting or the oldest has waited a few seconds (a slow stdin stream).
        if send and (
            final
            or len(unsent) >= REPLY_BUNCH
            or time.monotonic() - last_send >= REPLY_DELAY_SECONDS
        ):
            send_waiting()

    try:
        for number, raw in _lines(stream):
            if raw is None:
                summary.rejected.append((number, f"line is longer than {MAX_LINE_BYTES} bytes"))
                continue
            if not raw.strip():
                continue
            try:
                if provider is None:
                    batch.append(
                        (number, parse_normalized(_decode_object(raw, number), config, channel))
                    )
                else:
                    batch.extend((number, e) for e in _provider_events(provider, raw, number))
            except RejectedEvent as exc:
                summary.rejected.append((number, str(exc)))
                continue
            if len(batch) >= batch_size:
                flush()
        flush(final=True)
    except sqlite3.Error as exc:
        fault = database_error(exc, store_path(store))
        if isinstance(fault, DiskFullError) and stored_up_to:
            # whole batches are in (ingested again, a line with an id is stored once)
            done = f"its first {stored_up_to:,} lines were stored"
            raise DiskFullError(fault.where, done=done) from None
        raise
    summary.rejected.sort()
    return summary
