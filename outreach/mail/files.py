"""``replies ingest FILE --format eml|mbox|maildir``: emails from files (stdlib ``mailbox``).

An mbox is read message by message from its table of contents and a Maildir file by file,
so a large mailbox is never held in memory whole; an ``.eml`` is one message (``-`` reads
one from standard input). A message over the size limit is read only as far as its text.
"""

from __future__ import annotations

import mailbox
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..conversations.inbox import InboundSummary
from ..errors import UsageError
from .feed import MailFeed, email_channel
from .parse import HEAD_BYTES, MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from ..workspace import Workspace

FORMATS = ("eml", "mbox", "maildir")


def _eml(path: str) -> Iterator[tuple[bytes, int]]:
    if path == "-":
        data = sys.stdin.buffer.read()
        yield data, len(data)
        return
    file = Path(path)
    size = file.stat().st_size
    with file.open("rb") as stream:
        yield stream.read(HEAD_BYTES if size > MAX_MESSAGE_BYTES else -1), size


def _mbox(path: str) -> Iterator[tuple[bytes, int]]:
    if not Path(path).is_file():
        raise UsageError(f"{path}: not an mbox file; check the path or use --format maildir")
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            data = box.get_bytes(key)
            yield data, len(data)
    finally:
        box.close()


def _maildir(path: str) -> Iterator[tuple[bytes, int]]:
    folder = Path(path)
    if not (folder / "cur").is_dir() or not (folder / "new").is_dir():
        raise UsageError(f"{path}: not a Maildir (it needs cur/ and new/ folders)")
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        with box.get_file(key) as stream:  # the file as it is: not parsed, not read whole
            stream.seek(0, 2)
            size = stream.tell()
            stream.seek(0)
            yield stream.read(HEAD_BYTES if size > MAX_MESSAGE_BYTES else -1), size


def ingest_mail(
    ws: Workspace, path: str, fmt: str, channel: str | None = None, *, send: bool = True
) -> InboundSummary:
    """Store every email in ``path`` as a reply on ``channel`` (or the one email channel)."""
    name = email_channel(ws.config, channel)
    reader = {"eml": _eml, "mbox": _mbox, "maildir": _maildir}[fmt]
    feed = MailFeed(ws, name, send=send)
    try:
        for raw, size in reader(path):
            feed.add(raw, size=size)
            feed.maybe_flush()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror}); check the path") from None
    feed.flush()
    return feed.summary
