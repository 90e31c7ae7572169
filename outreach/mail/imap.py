"""``replies sync``: new mail of an email channel's IMAP folder → the inbox, each once.

The folder is read with ``imap-tools`` (on the standard library's ``imaplib``), opened
read-only (EXAMINE) and fetched with ``BODY.PEEK``, so nothing is marked read, moved or
deleted unless ``--move-to`` asks for a move. Where the sync stands is UIDVALIDITY + the
last UID stored (``mailbox_sync``), written in the same transaction as each chunk of
messages: a connection lost mid-fetch loses only the chunk in flight, which the next sync
fetches again. A changed UIDVALIDITY (the folder was rebuilt) reads the folder from the
start; what was stored already is recognised by its Message-ID and stored once.

Messages are fetched in chunks of ``CHUNK`` UIDs, sizes first: one over the size limit is
fetched only as far as ``HEAD_BYTES`` (``BODY.PEEK[]<0.N>``), so one huge attachment never
sits in memory.
"""

from __future__ import annotations

import imaplib
import os
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessage
from imap_tools.errors import ImapToolsError, MailboxLoginError

from .. import clock
from ..errors import ConfigError, PartialFailure, UsageError
from .settings import MailboxSettings, has_mailbox, mailbox_settings

if TYPE_CHECKING:
    from ..conversations.inbox import InboundSummary
    from ..workspace import Workspace

# as parse.py's, repeated so that an idle sync never imports the inbox (a third of a second)
MAX_MESSAGE_BYTES = 25 * 1024 * 1024
HEAD_BYTES = 256 * 1024

CHUNK = 500  # UIDs per FETCH and per write transaction
Progress = Callable[[int, int], None]  # (done, total)
_LOST = (imaplib.IMAP4.abort, OSError, socket.timeout, EOFError)


@dataclass
class SyncResult:
    """What one channel's sync did."""

    channel: str
    folder: str
    fetched: int = 0
    moved: int = 0
    uidvalidity_changed: bool = False
    summary: InboundSummary | None = None  # None: nothing was read

    def as_dict(self) -> dict[str, Any]:
        counts = self.summary.as_dict() if self.summary is not None else dict(NOTHING_READ)
        return {
            "channel": self.channel,
            "folder": self.folder,
            "fetched": self.fetched,
            "moved": self.moved,
            "uidvalidity_changed": self.uidvalidity_changed,
            **counts,
        }


# InboundSummary().as_dict(), spelled out: an idle sync does not import the inbox
NOTHING_READ: dict[str, Any] = {
    "messages": 0,
    "stored": 0,
    "duplicates": 0,
    "new_contacts": 0,
    "keywords": {},
    "survey_answers": 0,
    "unclear_answers": 0,
    "needs_attention": 0,
    "auto_replies": 0,
    "automatic": 0,
    "events": 0,
    "bounces": 0,
    "status_updates": 0,
    "status_ignored": 0,
    "replies": 0,
    "replies_sent": 0,
    "problems": [],
    "rejected": [],
}


class _Fetched(MailMessage):
    """A fetched message kept as bytes: the inbox parses it once, with policy.default."""

    def __init__(self, fetch_data: list[Any]) -> None:
        raw, uid_data, flag_data = self._get_message_data_parts(fetch_data)
        self._raw_uid_data = uid_data
        self._raw_flag_data = flag_data
        self.raw: bytes = raw


def mailbox_channels(ws: Workspace, channel: str | None) -> list[str]:
    """``channel`` (which must have a mailbox), or every channel that has one."""
    config = ws.config
    if channel is not None:
        if not has_mailbox(config.channel(channel)):
            mailbox_settings(config.channel(channel), os.environ)  # raises, saying what to set
        return [channel]
    names = [c.name for c in config.channels.values() if has_mailbox(c)]
    if not names:
        raise ConfigError(
            "no channel has a mailbox to read: set imap_host, imap_username_env and "
            "imap_password_env on an email channel in outreach.toml (README: Email replies)"
        )
    return names


def sync(
    ws: Workspace,
    channel: str | None = None,
    *,
    since: date | None = None,
    move_to: str | None = None,
    progress: Progress | None = None,
    send: bool = True,
) -> list[SyncResult]:
    """Sync every mailbox (or ``channel``'s); PartialFailure when a connection was lost."""
    results = []
    for name in mailbox_channels(ws, channel):
        settings = mailbox_settings(ws.config.channel(name), os.environ)
        results.append(
            sync_mailbox(ws, settings, since=since, move_to=move_to, progress=progress, send=send)
        )
    return results


def _connect(settings: MailboxSettings) -> BaseMailBox:
    where = f"[channels.{settings.channel}] imap_host {settings.host}:{settings.port}"
    try:
        if settings.security == "tls":
            return MailBox(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                ssl_context=ssl.create_default_context(),
            )
        if settings.security == "starttls":
            return MailBoxStartTls(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                ssl_context=ssl.create_default_context(),
            )
        return MailBoxUnencrypted(settings.host, settings.port, timeout=settings.timeout)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: TLS failed ({exc.reason or exc}); check imap_security and imap_port"
        ) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ConfigError(
            f"{where}: cannot connect ({_reason(exc)}); check imap_host, "
            "imap_port and imap_security"
        ) from None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _login(box: BaseMailBox, settings: MailboxSettings) -> None:
    try:
        box.login(settings.username, settings.password, initial_folder=None)
    except (MailboxLoginError, imaplib.IMAP4.error):
        # the server's answer is not shown: some echo what was sent
        raise ConfigError(
            f"[channels.{settings.channel}] IMAP login to {settings.host} as "
            f"{settings.username} was refused; check the variables named by "
            "imap_username_env and imap_password_env"
        ) from None


def sync_mailbox(
    ws: Workspace,
    settings: MailboxSettings,
    *,
    since: date | None = None,
    move_to: str | None = None,
    progress: Progress | None = None,
    send: bool = True,
) -> SyncResult:
    """Fetch and store what the folder holds beyond the stored position."""
    result = SyncResult(settings.channel, settings.folder)
    box = _connect(settings)
    try:
        _login(box, settings)
        try:
            _read_folder(ws, box, settings, result, since, move_to, progress, send)
        except ImapToolsError as exc:
            raise PartialFailure(
                f"[channels.{settings.channel}] IMAP folder {settings.folder}: the server "
                f"refused ({_reason(exc)}); {result.fetched:,} messages read before that"
            ) from None
    except _LOST as exc:
        raise PartialFailure(
            f"[channels.{settings.channel}] IMAP connection to {settings.host} lost "
            f"({_reason(exc)}) after {result.fetched:,} messages; what was stored is kept, "
            "run replies sync again to resume"
        ) from None
    finally:
        try:
            box.logout()
        except Exception:  # a dead connection cannot log out; nothing is lost by it
            box.client.shutdown()
    return result


def _read_folder(
    ws: Workspace,
    box: BaseMailBox,
    settings: MailboxSettings,
    result: SyncResult,
    since: date | None,
    move_to: str | None,
    progress: Progress | None,
    send: bool,
) -> None:
    store = ws.store
    status = box.folder.status(settings.folder, ["UIDVALIDITY", "UIDNEXT", "MESSAGES"])
    uidvalidity, uidnext = int(status["UIDVALIDITY"]), int(status.get("UIDNEXT", 0))
    position = store.mail.mailbox_position(settings.channel, settings.folder)
    start = 1
    if position is not None:
        if position[0] == uidvalidity:
            start = position[1] + 1
        else:
            result.uidvalidity_changed = True
    if uidnext and uidnext <= start and not result.uidvalidity_changed:
        return  # nothing new: the usual cron minute, one STATUS and no SELECT
    box.folder.set(settings.folder, readonly=move_to is None)
    criteria = f"UID {start}:*"
    if since is not None:
        criteria += f" SINCE {since.strftime('%d-%b-%Y')}"
    # "n:*" always matches the newest message, even below n
    uids = [u for u in box.uids(criteria) if int(u) >= start]
    total = len(uids)
    from .feed import MailFeed

    feed = MailFeed(ws, settings.channel, send=send)
    result.summary = feed.summary
    if progress is not None:
        progress(0, total)
    for chunk in _chunks(uids, CHUNK):
        sizes = _sizes(box, chunk)
        for raw, size in _fetch(box, chunk, sizes):
            feed.add(raw, size=size)
        last = int(chunk[-1])

        def remember(last: int = last) -> None:
            store.mail.save_mailbox_position(
                settings.channel, settings.folder, uidvalidity, last, clock.iso(clock.now())
            )

        feed.flush(also=remember)
        result.fetched += len(chunk)
        if move_to is not None:
            box.move(chunk, move_to)
            result.moved += len(chunk)
        if progress is not None:
            progress(result.fetched, total)
    if not uids:
        # a folder emptied (or rebuilt) since: remember its UIDVALIDITY all the same
        last = max(start - 1, 0) if not result.uidvalidity_changed else 0

        def save_position() -> None:
            with store.write():
                store.mail.save_mailbox_position(
                    settings.channel, settings.folder, uidvalidity, last, clock.iso(clock.now())
                )

        store.retrying(save_position)


def _chunks(values: Sequence[str], size: int) -> Iterator[list[str]]:
    for at in range(0, len(values), size):
        yield list(values[at : at + size])


def _sizes(box: BaseMailBox, uids: Sequence[str]) -> dict[str, int]:
    """UID → RFC822.SIZE, one FETCH for the chunk."""
    typ, data = box.client.uid("FETCH", ",".join(uids), "(UID RFC822.SIZE)")
    if typ != "OK":
        raise imaplib.IMAP4.abort(f"FETCH RFC822.SIZE answered {typ}")
    out = {}
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        fetched = _Fetched([line])
        if fetched.uid is not None:
            out[fetched.uid] = fetched.size_rfc822
    return out


def _fetch(
    box: BaseMailBox, uids: Sequence[str], sizes: dict[str, int]
) -> Iterator[tuple[bytes, int]]:
    """(raw bytes, full size) of each UID, in UID order; a huge one only its beginning."""
    small = [u for u in uids if sizes.get(u, 0) <= MAX_MESSAGE_BYTES]
    large = [u for u in uids if sizes.get(u, 0) > MAX_MESSAGE_BYTES]
    got: dict[str, bytes] = {}
    if small:
        box.email_message_class = _Fetched
        for message in box.fetch(uid_list=small, mark_seen=False, bulk=max(2, len(small))):
            assert isinstance(message, _Fetched)
            if message.uid is not None:
                got[message.uid] = message.raw
    for uid in large:
        typ, data = box.client.uid("FETCH", uid, f"(UID BODY.PEEK[]<0.{HEAD_BYTES}>)")
        if typ == "OK":
            got[uid] = _Fetched(data).raw
    for uid in uids:
        if uid in got:  # a message expunged meanwhile is simply gone
            yield got[uid], sizes.get(uid) or len(got[uid])


def parse_since(text: str) -> date:
    """``--since 2026-11-01`` → a date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f'--since "{text}": expected a date like 2026-11-01') from None
