"""The IMAP settings of an email channel (README "Email replies"), read and checked.

``imap_host``, ``imap_port``, ``imap_security`` (``tls``, ``starttls``; ``none`` for a
server on the same machine), ``imap_username_env``, ``imap_password_env``, ``imap_folder``
(default ``INBOX``) and ``imap_poll`` (how often ``serve`` syncs, e.g. ``60s``). The values
are checked when the configuration loads; the secrets only when a sync needs them, so a
sender without the mailbox password still sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import ChannelConfig, parse_duration
from ..errors import ConfigError

IMAP_SETTINGS = frozenset(
    {
        "imap_host",
        "imap_port",
        "imap_security",
        "imap_username_env",
        "imap_password_env",
        "imap_folder",
        "imap_poll",
    }
)
_PORTS = {"tls": 993, "starttls": 143, "none": 143}


@dataclass(frozen=True)
class MailboxSettings:
    channel: str
    host: str
    port: int
    security: str
    username: str
    password: str
    folder: str
    poll_seconds: float | None
    timeout: float

    def __repr__(self) -> str:  # never the password, whoever prints it
        return (
            f"MailboxSettings({self.channel}: {self.username}@{self.host}:{self.port} "
            f"{self.security} {self.folder})"
        )


def has_mailbox(channel: ChannelConfig) -> bool:
    """Whether the channel is set up to read replies over IMAP."""
    return bool(channel.settings.get("imap_host"))


def setting_problems(channel: ChannelConfig) -> list[str]:
    """What is wrong with the channel's IMAP values (not its secrets)."""
    where = f"[channels.{channel.name}]"
    values = channel.settings
    if not any(key in values for key in IMAP_SETTINGS):
        return []
    problems = []
    if not isinstance(values.get("imap_host"), str) or not values["imap_host"]:
        problems.append(f"{where} imap_host: set the IMAP server's host name to read replies")
    security = values.get("imap_security", "tls")
    if security not in _PORTS:
        problems.append(f'{where} imap_security: "{security}" is not one of tls, starttls, none')
    port = values.get("imap_port", 993)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        problems.append(f"{where} imap_port: expected a port number, got {port!r}")
    for key in ("imap_username_env", "imap_password_env"):
        if not isinstance(values.get(key), str) or not values[key]:
            problems.append(f"{where} {key}: name the environment variable that holds it")
    folder = values.get("imap_folder", "INBOX")
    if not isinstance(folder, str) or not folder.strip():
        problems.append(f"{where} imap_folder: expected a folder name such as INBOX")
    poll = values.get("imap_poll")
    if poll is not None:
        try:
            if parse_duration(str(poll), where=f"{where} imap_poll").total_seconds() < 1:
                problems.append(f"{where} imap_poll: poll at most once a second")
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def secret_problems(channel: ChannelConfig, env: Mapping[str, str]) -> list[str]:
    """Unset secret variables of the channel's mailbox."""
    where = f"[channels.{channel.name}]"
    out = []
    for key in ("imap_username_env", "imap_password_env"):
        var = channel.settings.get(key)
        if isinstance(var, str) and var and not env.get(var):
            out.append(
                f"{where} {key}: environment variable {var} is not set (or empty); "
                f"export {var}=… before running replies sync"
            )
    return out


def mailbox_settings(channel: ChannelConfig, env: Mapping[str, str]) -> MailboxSettings:
    """The channel's mailbox, secrets included; ConfigError naming the first problem."""
    if not has_mailbox(channel):
        raise ConfigError(
            f"[channels.{channel.name}] has no imap_host: set imap_host, imap_username_env and "
            "imap_password_env to read its replies (README: Email replies)"
        )
    problems = setting_problems(channel) + secret_problems(channel, env)
    if problems:
        raise ConfigError(problems[0])
    values = channel.settings
    security = str(values.get("imap_security", "tls"))
    poll = values.get("imap_poll")
    return MailboxSettings(
        channel=channel.name,
        host=str(values["imap_host"]),
        port=int(values.get("imap_port", _PORTS[security])),
        security=security,
        username=env[str(values["imap_username_env"])],
        password=env[str(values["imap_password_env"])],
        folder=str(values.get("imap_folder", "INBOX")),
        poll_seconds=parse_duration(str(poll), where="imap_poll").total_seconds()
        if poll is not None
        else None,
        timeout=max(channel.timeout, 30.0),
    )
