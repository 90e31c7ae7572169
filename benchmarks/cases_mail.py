"""Benchmarks of email replies: ``replies sync`` from a real Dovecot on loopback.

The mailbox is filled once per benchmark (not measured) by writing Maildir files into the
account's ``new/`` folder, as a local delivery agent does; Dovecot indexes them on the
first sync, which is part of what is measured, as it is on a real first sync. Each message
is a Gmail-style reply with its quoted history, from a customer's address and answering a
Message-ID outreach never sent, so every one goes through quote stripping and all three
matching steps.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import data
from .context import LATER, Context, check, fmt_n, join, json_out, max_rss, repeat
from .harness import Row, copy_workspace, outreach, run_child


@contextmanager
def _mailbox(ctx: Context, n: int, customers_n: int) -> Iterator[tuple[Path, dict[str, str]]]:
    """A workspace whose email channel reads a Dovecot account holding ``n`` replies."""
    from tests.servers.dovecot import DOVECOT, running_dovecot

    if not os.access(DOVECOT, os.X_OK):
        from .harness import NotAvailable

        raise NotAvailable("dovecot is not installed (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="outreach-bench-dovecot-"))
    root.chmod(0o755)
    try:
        with running_dovecot(root) as server:
            account = server.account()
            _deliver(account.maildir, n, customers_n)
            seed = copy_workspace(ctx.seeded("mail", customers_n), ctx.path(f"mail-{server.port}"))
            toml = seed / "outreach.toml"
            toml.write_text(
                toml.read_text(encoding="utf-8").replace(
                    "[channels.email]\n",
                    f'[channels.email]\nimap_host = "127.0.0.1"\nimap_port = {server.port}\n'
                    'imap_security = "none"\nimap_username_env = "BENCH_IMAP_USER"\n'
                    'imap_password_env = "BENCH_IMAP_PASSWORD"\n',
                    1,
                ),
                encoding="utf-8",
            )
            yield seed, {"BENCH_IMAP_USER": account.user, "BENCH_IMAP_PASSWORD": account.password}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _deliver(maildir: Path, n: int, customers_n: int) -> None:
    people = [c.email for c in data.customers(customers_n) if c.email]
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sender = people[i % len(people)]
        raw = (
            f"From: {sender}\r\nTo: Acme <replies@acme.example>\r\n"
            f"Subject: Re: How likely are you to recommend Acme?\r\n"
            f"Date: Tue, 1 Dec 2026 15:{i // 60 % 60:02d}:{i % 60:02d} +0000\r\n"
            f"Message-ID: <bench-{i}@mail.example>\r\n"
            f"In-Reply-To: <elsewhere-{i}@acme.example>\r\n"
            f"References: <elsewhere-{i}@acme.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
            f"{i % 11}, thanks for asking. The delivery was on time.\r\n\r\n"
            "On Tue, Dec 1, 2026 at 9:00 AM Acme <replies@acme.example> wrote:\r\n\r\n"
            "> Hi,\r\n>\r\n> How likely are you to recommend Acme to a friend? Reply with\r\n"
            "> a number from 0 to 10.\r\n>\r\n> Thanks,\r\n> Acme\r\n"
        ).encode()
        (maildir / "new" / f"{1733065200 + i}.M{i}P1.bench,S={len(raw)}").write_bytes(raw)
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam("dovecot")
        for path in [maildir, *maildir.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)


def bench_imap_sync_10k(ctx: Context) -> Row:
    n = ctx.sizes["imap"]
    customers_n = ctx.sizes["export_customers"]
    row = Row(
        "imap_sync_10k",
        "replies sync: first sync from loopback Dovecot",
        f"{fmt_n(n)} messages",
        "msg/s",
        ">= 1,000 msg/s, < 200 MB",
    )
    with _mailbox(ctx, n, customers_n) as (seed, env):

        def once(i: int) -> float:
            ws = copy_workspace(seed, ctx.path(f"imap-{i}"))
            child = check(
                run_child(
                    outreach(ws, "replies", "sync", "--json", now=LATER),
                    timeout=ctx.timeout,
                    env=env,
                )
            )
            [result] = json_out(child)["channels"]
            if result.get("stored") != n:
                row.note = join(row.note, f"stored {result.get('stored')} of {n}")
            max_rss(row, child.rss_mb)
            return n / child.wall

        repeat(ctx, row, once)
    row.note = join(
        row.note,
        "Gmail-style replies with quoted history, matched by sender "
        "after an unknown In-Reply-To; the server indexes them on this sync",
    )
    row.met = (row.median or 0) >= 1_000 and (row.rss_mb or 0) < 200
    return row


def bench_imap_idle(ctx: Context) -> Row:
    n = ctx.sizes["imap"]
    row = Row("imap_idle", "replies sync with nothing new", f"{fmt_n(n)} stored", "s", "< 0.5 s")
    with _mailbox(ctx, n, ctx.sizes["export_customers"]) as (seed, env):
        ws = copy_workspace(seed, ctx.path("imap-idle"))
        check(
            run_child(
                outreach(ws, "replies", "sync", "--json", now=LATER), timeout=ctx.timeout, env=env
            )
        )

        def once(i: int) -> float:
            child = check(
                run_child(
                    outreach(ws, "replies", "sync", "--json", now=LATER),
                    timeout=ctx.timeout,
                    env=env,
                )
            )
            max_rss(row, child.rss_mb)
            return child.wall

        repeat(ctx, row, once)
    row.note = "one process: Python start-up, login, STATUS; no SELECT"
    row.met = row.median is not None and row.median < 0.5
    return row
