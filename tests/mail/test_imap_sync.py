"""`replies sync` against a real Dovecot on loopback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from outreach.mail import imap
from tests.conftest import Cli
from tests.mail.conftest import use_mailbox
from tests.mail.helpers import LATER, fixture, send_survey, show
from tests.servers.dovecot import Account, DroppingProxy


def sync(cli: Cli, env: dict[str, str], *extra: str, code: int = 0) -> dict[str, object]:
    result = cli("--now", LATER, "replies", "sync", "--json", *extra, env=env)
    assert result.exit_code == code, result.stderr
    if code:
        return {"stderr": result.stderr}
    [channel] = json.loads(result.stdout)["channels"]
    data: dict[str, object] = channel
    return data


def stored(ws: Path) -> list[str]:
    conn = sqlite3.connect(ws / "outreach.db")
    rows = conn.execute("SELECT external_id FROM messages WHERE direction = 'in' ORDER BY id")
    out = [str(r[0]) for r in rows]
    conn.close()
    return out


def numbered(n: int, sent_token: str = "aaaaaaaaaaaaaaaa") -> list[bytes]:
    return [
        (
            f"From: Sender {i} <sender{i}@example.org>\nTo: replies+{sent_token}@acme.example\n"
            f"Subject: Re: hello {i}\nMessage-ID: <m{i}@example.org>\n"
            f"Date: Tue, 1 Dec 2026 10:00:{i % 60:02d} +0000\n\nanswer {i}\n\n"
            f"On Tue, 1 Dec 2026 at 09:00, Acme <a@acme.example> wrote:\n> question\n"
        ).encode()
        for i in range(n)
    ]


def test_a_sync_stores_replies_once_across_runs_and_leaves_them_unread(
    ws: Path, cli: Cli, account: Account
) -> None:
    sent = send_survey(ws, cli)
    env = use_mailbox(ws, account)
    account.append(
        fixture("gmail_en.eml", sent),
        fixture("outlook_nl.eml", sent),
        fixture("out_of_office_en.eml", sent),
    )
    first = sync(cli, env)
    assert first["fetched"] == 3 and first["stored"] == 3 and first["survey_answers"] == 1
    assert first["automatic"] == 1
    texts = [m["text"] for m in show(cli, "nl2")["messages"]]  # type: ignore[attr-defined]
    assert "9" in texts and "10! Altijd tevreden." in texts
    # nothing new: nothing fetched; one more message: only it
    assert sync(cli, env)["fetched"] == 0
    account.append(fixture("thunderbird_en.eml", sent))
    again = sync(cli, env)
    assert again["fetched"] == 1 and again["stored"] == 1 and again["duplicates"] == 0
    assert len(stored(ws)) == 4
    # BODY.PEEK on a read-only folder: still unread, still there
    assert account.count() == 4
    assert all(b"\\Seen" not in line for line in account.flags())


def test_a_bounce_in_the_mailbox_marks_the_delivery(ws: Path, cli: Cli, account: Account) -> None:
    sent = send_survey(ws, cli)
    env = use_mailbox(ws, account)
    account.append(fixture("bounce_hard.eml", sent))
    assert sync(cli, env)["bounces"] == 1
    conn = sqlite3.connect(ws / "outreach.db")
    status = conn.execute(
        "SELECT status FROM deliveries WHERE id = ?", (sent.delivery_id,)
    ).fetchone()[0]
    conn.close()
    assert status == "bounced" and stored(ws) == []


def test_move_to_moves_only_what_was_stored(ws: Path, cli: Cli, account: Account) -> None:
    send_survey(ws, cli)
    env = use_mailbox(ws, account)
    account.append(*numbered(3))
    account.append(b"From: x@example.org\n\nfiling\n", folder="Done")
    result = sync(cli, env, "--move-to", "Done")
    assert result["moved"] == 3
    assert account.count("INBOX") == 0 and account.count("Done") == 4


def test_wrong_credentials_are_one_line_without_the_password(
    ws: Path, cli: Cli, account: Account
) -> None:
    env = use_mailbox(ws, account)
    env["IMAP_PASSWORD"] = "wrong-horse-battery"
    result = cli("replies", "sync", env=env)
    assert result.exit_code == 4
    assert result.stderr.count("\n") == 1 and "refused" in result.stderr
    assert "wrong-horse-battery" not in result.stderr + result.stdout
    assert "imap_password_env" in result.stderr


def test_an_unset_password_variable_is_a_config_error(ws: Path, cli: Cli, account: Account) -> None:
    env = use_mailbox(ws, account)
    result = cli("replies", "sync", env={"IMAP_USER": env["IMAP_USER"], "IMAP_PASSWORD": ""})
    assert result.exit_code == 4 and "IMAP_PASSWORD" in result.stderr
    check = cli("channels", "check", "--channel", "email", env={"IMAP_PASSWORD": ""})
    assert check.exit_code == 4 and "IMAP_PASSWORD" in check.stdout


def test_a_server_that_is_not_there_is_one_line(ws: Path, cli: Cli, account: Account) -> None:
    from tests.servers.dovecot import free_port

    env = use_mailbox(ws, account, port=free_port())
    result = cli("replies", "sync", env=env)
    assert result.exit_code == 4 and "cannot connect" in result.stderr


def test_a_connection_dropped_mid_fetch_resumes_without_storing_twice(
    ws: Path, cli: Cli, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_survey(ws, cli)
    monkeypatch.setattr(imap, "CHUNK", 10)
    account.append(*numbered(35))
    proxy = DroppingProxy(account.port, limit=12_000)
    try:
        env = use_mailbox(ws, account, port=proxy.port)
        result = cli("--now", LATER, "replies", "sync", env=env)
        assert result.exit_code == 3, result.stderr
        assert "lost" in result.stderr and "run replies sync again" in result.stderr
        part = len(stored(ws))
        assert 0 < part < 35 and part % 10 == 0  # whole chunks, each with its position
        again = sync(cli, env)
        assert again["stored"] == 35 - part and again["duplicates"] == 0
    finally:
        proxy.close()
    assert sorted(stored(ws)) == sorted(f"m{i}@example.org" for i in range(35))


def test_a_changed_uidvalidity_reads_the_folder_again_and_stores_nothing_twice(
    ws: Path, cli: Cli, account: Account
) -> None:
    send_survey(ws, cli)
    env = use_mailbox(ws, account)
    account.append(*numbered(4))
    assert sync(cli, env)["stored"] == 4
    account.change_uidvalidity()
    again = sync(cli, env)
    assert again["uidvalidity_changed"] and again["fetched"] == 4
    assert again["stored"] == 0 and again["duplicates"] == 4
    account.append(*numbered(5)[4:])
    assert sync(cli, env)["stored"] == 1


def test_since_skips_older_mail(ws: Path, cli: Cli, account: Account) -> None:
    send_survey(ws, cli)
    env = use_mailbox(ws, account)
    account.append(*numbered(2))
    # APPEND without a date files mail today: a --since in the future skips all of it
    assert sync(cli, env, "--since", "2999-01-01")["fetched"] == 0
    bad = cli("replies", "sync", "--since", "yesterday", env=env)
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_a_malformed_message_never_stops_the_sync(ws: Path, cli: Cli, account: Account) -> None:
    sent = send_survey(ws, cli)
    env = use_mailbox(ws, account)
    account.append(fixture("malformed.eml", sent), *numbered(2))
    result = sync(cli, env)
    assert result["stored"] == 3
    assert show(cli, "nl2")["attention_reason"] == "unreadable_email"


def test_imap_settings_are_checked_when_the_config_loads(
    ws: Path, cli: Cli, account: Account
) -> None:
    use_mailbox(ws, account, extra='imap_poll = "soon"\n')
    result = cli("replies", "sync")
    assert result.exit_code == 4 and "imap_poll" in result.stderr


def test_sync_without_a_mailbox_says_what_to_set(cli: Cli) -> None:
    result = cli("replies", "sync")
    assert result.exit_code == 4 and "imap_host" in result.stderr


def test_serve_syncs_the_mailbox_on_its_poll_interval(ws: Path, cli: Cli, account: Account) -> None:
    import os
    import subprocess
    import sys
    import time

    from tests.servers.dovecot import free_port

    env = use_mailbox(ws, account, extra='imap_poll = "1s"\n')
    account.append(*numbered(2))
    assert cli("customers", "list").exit_code == 0  # the database exists before serve
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach", "-w", str(ws), "serve", "--port", str(port)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while len(stored(ws)) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve never synced the mailbox"
            time.sleep(0.2)
        account.append(*numbered(3)[2:])  # a later message: the next interval
        while len(stored(ws)) < 3:
            assert time.monotonic() < deadline + 10, "serve synced only once"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    assert sorted(stored(ws)) == ["m0@example.org", "m1@example.org", "m2@example.org"]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_a_sync_over_tls_checks_the_servers_certificate(
    ws: Path, cli: Cli, account: Account, security: str
) -> None:
    send_survey(ws, cli)
    port = account.tls_port if security == "tls" else account.port
    env = use_mailbox(ws, account, port=port, security=security)
    account.append(*numbered(2))
    # the server's certificate is signed by a CA this machine does not trust
    refused = cli("replies", "sync", env=env)
    assert refused.exit_code == 4 and "TLS" in refused.stderr, refused.stderr
    assert account.password not in refused.stderr
    trusted = {**env, "SSL_CERT_FILE": str(account.ca_file)}
    assert sync(cli, trusted)["stored"] == 2


def test_a_first_sync_reports_its_progress_in_chunks(
    ws: Path, cli: Cli, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach.workspace import Workspace

    send_survey(ws, cli)
    env = use_mailbox(ws, account)
    account.append(*numbered(25))
    monkeypatch.setattr(imap, "CHUNK", 10)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen: list[tuple[int, int]] = []
    workspace = Workspace.load(ws)
    try:
        imap.sync(workspace, progress=lambda done, total: seen.append((done, total)))
    finally:
        workspace.close()
    assert seen == [(0, 25), (10, 25), (20, 25), (25, 25)]


def test_serve_keeps_serving_when_a_poll_fails_and_logs_one_line_without_the_password(
    ws: Path, cli: Cli, account: Account
) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.servers.dovecot import free_port

    env = use_mailbox(ws, account, extra='imap_poll = "1s"\n')
    env["IMAP_PASSWORD"] = "not-the-password-4711"
    assert cli("customers", "list").exit_code == 0
    port = free_port()
    log_file = ws / "serve.log"
    with log_file.open("wb") as log_out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "outreach", "-w", str(ws), "serve", "--port", str(port)],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}, **env},
            stdout=subprocess.DEVNULL,
            stderr=log_out,
        )

    def refusals() -> list[str]:
        text = log_file.read_text(errors="replace")
        return [line for line in text.splitlines() if "replies sync email" in line]

    try:
        deadline = time.monotonic() + 30
        while len(refusals()) < 2:  # two polls, both refused, while serve stays up
            assert proc.poll() is None, log_file.read_text(errors="replace")
            assert time.monotonic() < deadline, "serve did not poll twice"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
    assert all("refused" in line for line in refusals())
    assert "not-the-password-4711" not in log_file.read_text(errors="replace")
