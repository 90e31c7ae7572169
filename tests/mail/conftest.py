"""A session's Dovecot, and a fresh IMAP account per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.dovecot import DOVECOT, Account, Dovecot, running_dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not os.access(DOVECOT, os.X_OK):
        pytest.skip("dovecot is not installed (.ci/run installs dovecot-imapd)")
    # not under pytest's own tmp folder: Dovecot's mail processes run as its own user and
    # must be able to reach the Maildirs
    root = Path(tempfile.mkdtemp(prefix="outreach-dovecot-"))
    root.chmod(0o755)
    try:
        with running_dovecot(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def account(dovecot: Dovecot) -> Account:
    return dovecot.account()


def use_mailbox(
    ws: Path, account: Account, *, port: int | None = None, extra: str = "", security: str = "none"
) -> dict[str, str]:
    """Point the workspace's email channel at ``account``; the env it needs."""
    toml = ws / "outreach.toml"
    text = toml.read_text(encoding="utf-8")
    settings = (
        f'imap_host = "127.0.0.1"\nimap_port = {port or account.port}\n'
        f'imap_security = "{security}"\nimap_username_env = "IMAP_USER"\n'
        f'imap_password_env = "IMAP_PASSWORD"\n{extra}'
    )
    toml.write_text(
        text.replace(
            '[channels.email]\nprovider = "outbox"\n',
            f'[channels.email]\nprovider = "outbox"\n{settings}',
            1,
        ),
        encoding="utf-8",
    )
    return {"IMAP_USER": account.user, "IMAP_PASSWORD": account.password}
