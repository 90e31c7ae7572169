"""The one exception tree of outreach.

Every error a user can cause is an ``OutreachError`` carrying its exit code (README "Exit codes").
The CLI maps them to one line on stderr in exactly one place (``cli/__init__.py``);
anything else that escapes is a bug and exits 1.
"""

from __future__ import annotations

import errno
from typing import Any


class OutreachError(Exception):
    """Base of every expected error; ``str(err)`` is the one line shown to the user."""

    exit_code = 1


class UsageError(OutreachError):
    """The command line or its input is wrong (exit 2)."""

    exit_code = 2


class NotFoundError(UsageError):
    """A named customer, campaign, template or channel does not exist (exit 2)."""


class PartialFailure(OutreachError):
    """Some rows or messages failed while the rest succeeded (exit 3)."""

    exit_code = 3


class ConfigError(OutreachError):
    """outreach.toml, a campaign file or a channel setting is invalid (exit 4)."""

    exit_code = 4


class TemplateError(OutreachError):
    """A template cannot be found, compiled or rendered (exit 4)."""

    exit_code = 4


class LockedError(OutreachError):
    """Another run holds the workspace lock (exit 5)."""

    exit_code = 5


class StoreError(OutreachError):
    """The database is unusable: newer schema, corrupt file, not writable (exit 4)."""

    exit_code = 4


class StoreBusy(StoreError):
    """Another process held the database's write lock past the busy timeout (retry later)."""


class ConnectionLost(StoreError):
    """The database server's session ended under a piece of work (a restart, a network
    drop, a terminated backend): what it had not committed was rolled back, so the store
    may run the whole work again on a new connection (``Store.retrying``). ``why`` is the
    server's reason."""

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why


class ProviderError(OutreachError):
    """A channel provider refused or failed a send.

    ``retryable`` says whether the same request may succeed later (timeouts, 429, 5xx);
    ``retry_after`` is the provider's own hint in seconds, when it gave one. ``code`` is the
    provider's error code (Twilio 21211, Meta 131047, SMTP 550, ...). ``ambiguous`` means
    the request reached the provider but no answer came back (a read timeout, a reset
    after sending): the message may or may not exist, so a resend could duplicate it.
    ``skip`` means the message was not sent and cannot be as it stands (a closed customer
    service window and no template to use instead): the delivery is recorded skipped, with
    ``code`` as its reason, rather than failed. ``halts_channel`` means nothing else can go
    out on the channel now either (the disk under the outbox is full): its circuit opens at
    once and the delivery stays queued. The message must never contain a secret.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
        skip: bool = False,
        halts_channel: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after
        self.ambiguous = ambiguous
        self.skip = skip
        self.halts_channel = halts_channel


class SignatureError(OutreachError):
    """A webhook's signature is missing, forged or replayed; ``status`` is 401 or 403."""

    exit_code = 2

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class RenderError(TemplateError):
    """A template could not be found, compiled or rendered for one customer.

    ``str(err)`` is the one line for people; the parts are kept for reports and for the
    sending engine, which records the message as skipped with reason ``template_error``.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        line: int | None = None,
        customer_id: Any = None,
        hint: str = "",
    ) -> None:
        where = source or "templates"
        if line is not None:
            where += f":{line}"
        who = f" (customer {customer_id})" if customer_id is not None else ""
        super().__init__(f"{where}: {problem}{who}{'; ' + hint if hint else ''}")
        self.problem = problem
        self.hint = hint
        self.source = source
        self.line = line
        self.customer_id = customer_id

    def for_customer(self, customer_id: Any) -> RenderError:
        """This error, naming ``customer_id`` when it did not name a customer yet."""
        if self.customer_id is not None or customer_id is None:
            return self
        return RenderError(
            self.problem,
            source=self.source,
            line=self.line,
            customer_id=customer_id,
            hint=self.hint,
        )


class PayloadError(OutreachError):
    """A body that is not a payload of the provider it was handed to (a webhook answers 400,
    an ingested line is rejected with its number)."""

    exit_code = 3


class DiskFullError(OutreachError):
    """A write failed for want of space (exit 4; 3 when ``done`` says part was finished)."""

    exit_code = 4

    def __init__(self, where: object, *, done: str | None = None) -> None:
        detail = f"; {done} before it filled" if done else ""
        super().__init__(
            f"{where}: disk full (no space left on device){detail}; free some space there "
            "and run the command again"
        )
        self.where = str(where)
        if done:
            self.exit_code = 3


class DamagedStoreError(StoreError):
    """The database file is damaged or not a database (exit 4)."""


# a local write failed for a reason that passes: space, a quota, a read-only remount,
# a flaky device; never the caller's fault, so never a permanent failure
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
LOCAL_WRITE_ERRNOS = DISK_FULL_ERRNOS | {errno.EROFS, errno.EIO}


def local_write_error(exc: OSError, where: object) -> OutreachError | None:
    """The one-line error for a failed local write (full disk, read-only, I/O error);
    None for anything else (a missing folder, a permission), which stays the caller's."""
    if exc.errno in DISK_FULL_ERRNOS:
        return DiskFullError(where)
    if exc.errno == errno.EROFS:
        return StoreError(
            f"{where}: the file system is read-only; remount it read-write or choose another folder"
        )
    if exc.errno == errno.EIO:
        return StoreError(
            f"{where}: input/output error on the disk; check the device "
            "(dmesg) before running the command again"
        )
    return None
