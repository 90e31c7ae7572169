"""``outreach serve`` also reads mailboxes: every channel with ``imap_poll`` is synced on
that interval, so one process takes webhooks and email.

Each channel gets a thread of its own with its own database connection (the server's is
not shared across threads); SQLite's busy timeout orders its writes with the server's. A
failed sync (server down, wrong password) is logged in one line and tried again at the next
interval; it never stops the server.
"""

from __future__ import annotations

import logging
import os
import threading

from ..config import Config
from ..errors import OutreachError
from .settings import has_mailbox, mailbox_settings

log = logging.getLogger("outreach.mail")


class MailPoller:
    """Background syncs for the channels that ask for them; ``stop`` ends them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def channels(self) -> list[str]:
        return [
            c.name
            for c in self.config.channels.values()
            if has_mailbox(c) and c.settings.get("imap_poll")
        ]

    def start(self) -> MailPoller:
        for name in self.channels:
            # wrong settings stop serve before it listens, as any other config error
            settings = mailbox_settings(self.config.channel(name), os.environ)
            assert settings.poll_seconds is not None
            thread = threading.Thread(
                target=self._loop,
                args=(name, settings.poll_seconds),
                name=f"imap-poll-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, channel: str, interval: float) -> None:
        from ..workspace import Workspace
        from .imap import sync

        while not self._stop.is_set():
            ws = Workspace(self.config)
            try:
                for result in sync(ws, channel):
                    if result.fetched:
                        log.info("replies sync %s: %d new messages", channel, result.fetched)
            except OutreachError as exc:
                log.error("replies sync %s: %s", channel, exc)
            except Exception:  # a bug must not end the polling, nor the server
                log.exception("replies sync %s failed", channel)
            finally:
                ws.close()
            self._stop.wait(interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
