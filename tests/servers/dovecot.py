"""A real IMAP server for the tests: Dovecot from the distribution, on loopback.

Started once per test session in a temporary folder with a config of its own (no system
config, a free port, plaintext login allowed on loopback only, users in a passwd-file, mail
in Maildirs under the folder). Each test gets a fresh user, so mailboxes never mix. Mail is
delivered by APPEND, as a mail client files a message. ``.ci/run`` installs Dovecot; where
it is missing the tests that need it are skipped with the reason.

``DroppingProxy`` stands between a client and the server and cuts the connection after a
number of bytes from the server: a server that drops mid-fetch.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAX_USERS = 500

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Account:
    host: str
    port: int  # IMAP, STARTTLS offered
    user: str
    password: str
    maildir: Path
    tls_port: int = 0  # IMAPS
    ca_file: Path | None = None  # the test CA that signed the server's certificate

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(self.user, self.password)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        """File messages into ``folder`` (created if missing), unread."""
        client = self.client()
        try:
            client.create(folder)  # fails harmlessly when it exists
            for raw in messages:
                typ, data = client.append(
                    folder, "", None, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                )
                assert typ == "OK", data
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> list[bytes]:
        client = self.client()
        try:
            client.select(folder, readonly=True)
            _, data = client.fetch("1:*", "(FLAGS)")
            return [d for d in data if isinstance(d, bytes)]
        finally:
            client.logout()

    def count(self, folder: str = "INBOX") -> int:
        client = self.client()
        try:
            _, data = client.status(folder, "(MESSAGES)")
            return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))
        finally:
            client.logout()

    def change_uidvalidity(self) -> None:
        """Give INBOX a new UIDVALIDITY, as a server does when it rebuilds a folder."""
        uidlist = self.maildir / "dovecot-uidlist"
        header, _, rest = uidlist.read_text().partition("\n")
        fields = [f"V{int(f[1:]) + 1000}" if f.startswith("V") else f for f in header.split()]
        for index in self.maildir.glob("dovecot.index*"):
            index.unlink()
        uidlist.write_text(" ".join(fields) + "\n" + rest)


class Dovecot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        self._users = itertools.count(1)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # every user up front: Dovecot notices a changed passwd-file by its mtime in
        # seconds, so users added later in the same second would be refused
        (self.root / "passwd").write_text(
            "".join(f"user{i}:{{PLAIN}}pw-user{i}-secret\n" for i in range(1, MAX_USERS + 1))
        )
        if os.geteuid() == 0:
            owner = pwd.getpwnam("dovecot")
            uid, gid, users = owner.pw_uid, owner.pw_gid, ""
            os.chown(self.root / "mail", uid, gid)
        else:
            me = pwd.getpwuid(os.geteuid())
            uid, gid = me.pw_uid, me.pw_gid
            users = f"default_login_user = {me.pw_name}\ndefault_internal_user = {me.pw_name}\n"
        import trustme

        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(str(self.root / "cert.pem"))
        issued.private_key_pem.write_to_path(str(self.root / "key.pem"))
        authority.cert_pem.write_to_path(str(self.root / "ca.pem"))
        conf = self.root / "dovecot.conf"
        conf.write_text(
            _CONFIG.format(
                root=self.root,
                uid=uid,
                gid=gid,
                port=self.port,
                tls_port=self.tls_port,
                users=users,
            )
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "wb"),  # noqa: SIM115 - lives with it
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe,
            ):
                if probe.recv(100).startswith(b"* OK"):
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.root / "stderr.log").read_text(errors="replace")
        raise RuntimeError(f"dovecot did not start: {log[-500:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def account(self) -> Account:
        number = next(self._users)
        assert number <= MAX_USERS, "raise MAX_USERS"
        user = f"user{number}"
        password = f"pw-{user}-secret"
        return Account(
            "127.0.0.1",
            self.port,
            user,
            password,
            self.root / "mail" / user,
            self.tls_port,
            self.root / "ca.pem",
        )


class DroppingProxy:
    """Forwards to ``port``; after ``limit`` bytes from the server the connection is cut
    (only the first connection: a second sync gets through)."""

    def __init__(self, port: int, limit: int) -> None:
        self.target = port
        self.limit = limit
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.dropped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
                limit = None if self.dropped.is_set() else self.limit
                threading.Thread(
                    target=self._pump, args=(client, upstream, None), daemon=True
                ).start()
                threading.Thread(
                    target=self._pump, args=(upstream, client, limit), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[: limit - sent])
                    self.dropped.set()
                    break
                dst.sendall(data)
                sent += len(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def running_dovecot(root: Path) -> Iterator[Dovecot]:
    server = Dovecot(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
