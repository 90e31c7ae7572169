"""Leases: every sending process has a row in ``workers``, renewed by a heartbeat thread,
and each delivery it claims names that row (``claimed_by``).

Recovery (``recover``) turns a ``sending`` row into ``unknown`` only when its claimer is
dead: its heartbeat is older than ``[sending] lease`` seconds, or it ran on this host and
its pid no longer does (found at once, so a crash on one host is recovered by the next
command without waiting for the lease), or it has no row at all. A live process's
deliveries in flight (``serve``'s replies, another ``run`` or ``worker`` on PostgreSQL)
are never touched.

Heartbeats are real time, never the clock a run may be given with ``--now``: SQLite's own
``'now'``, or the PostgreSQL server's clock, on a connection of the heartbeat's own, so a
long transaction of the process never delays its lease. A process whose heartbeat stalls
for longer than the lease (a frozen host) may find its in-flight deliveries ``unknown``:
never sent twice, which is the promise; its later heartbeat makes its row again.

Hosts are told apart by host name and pid namespace (``HOST``): a container that shares
the host's name but not its pids (``--uts=host``) is another host here, since its pids mean
nothing to this one. Two machines must not share a host name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..channels import provider_class
from ..config import Config
from ..deliveries import Status
from ..store import Store, open_store
from ..workspace import Workspace
from . import journal
from .results import Result

# the initial pid namespace's inode number, fixed by the kernel (PROC_PID_INIT_INO)
_INIT_PID_NAMESPACE = 0xEFFFFFFC


def host_identity() -> str:
    """This host as ``workers.host`` names it: the host name, and the pid namespace
    where it is not the initial one (a container's), whose pids only it can check."""
    name = socket.gethostname()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # no /proc (not Linux): pids are the host's
        return name
    return name if namespace == _INIT_PID_NAMESPACE else f"{name}/pid:{namespace}"


HOST = host_identity()
HEARTBEAT_MAX = 5.0  # seconds between heartbeats, at most (a third of the lease if shorter)
log = logging.getLogger("outreach.lease")


def heartbeat_interval(lease: float) -> float:
    return min(HEARTBEAT_MAX, lease / 3)


@contextlib.contextmanager
def hold(ws: Workspace, kind: str) -> Iterator[int]:
    """This process's lease for as long as the block runs; its worker id (also
    ``ws.worker_id``). Nested uses share the outer lease."""
    if ws.worker_id is not None:
        yield ws.worker_id
        return
    worker = ws.store.workers.register(HOST, os.getpid(), kind)
    beat = _Heartbeat(ws.config, worker, kind)
    beat.start()
    ws.worker_id = worker
    try:
        yield worker
    finally:
        ws.worker_id = None
        beat.stop()
        # a row left behind (the database failed) is found dead by its lease anyway
        with contextlib.suppress(Exception):
            ws.store.workers.unregister(worker)


def recover(ws: Workspace, at: str) -> dict[str, int]:
    """Dead senders' in-flight deliveries: ``unknown``, or ``queued`` again on channels
    where a resend cannot duplicate; {"requeued": n, "unknown": n, "recorded": n}.

    A dead sender of this host that kept a send journal is replayed first: what it never
    handed to a provider goes back to the queue, what it had a result for is recorded
    (``recorded``), and only what it had started without an answer is left to be
    ``unknown``."""
    store = ws.store
    idempotent = [
        name for name, ch in ws.config.channels.items() if provider_class(ch.provider).idempotent
    ]
    here = store.workers.on_host(HOST)
    dead = {worker: pid for worker, pid in here if not running(pid)}
    # a journal whose worker has no row (it ended with results unrecorded, or another
    # host recovered it) is replayed too: what it claimed may still be in flight
    ended = journal.orphans(ws.root, {worker for worker, _ in here})
    requeued = recorded = 0
    for worker, pid in [*dead.items(), *ended.items()]:
        if worker in ended and running(pid):
            continue  # alive, its lease lapsed: its next heartbeat makes its row again
        back, done = _replay(ws, worker, pid, at)
        requeued += back
        recorded += done
    out = store.deliveries.recover_in_flight(idempotent, at, lease=ws.config.lease, dead=list(dead))
    return {"requeued": out["requeued"] + requeued, "unknown": out["unknown"], "recorded": recorded}


def _replay(ws: Workspace, worker: int, pid: int, at: str) -> tuple[int, int]:
    """Settle dead ``worker``'s claims by its journal: (requeued, recorded)."""
    replay = journal.read(ws.root, worker, pid)
    if replay is None:
        journal.forget(ws.root, worker)
        return 0, 0
    store = ws.store

    def settle() -> tuple[int, int]:
        with store.write():
            results: list[Result] = []
            outbound: list[dict[str, Any]] = []
            for delivery_id, channel in store.deliveries.in_flight_of(worker).items():
                if delivery_id not in replay.claimed:
                    continue  # not this process's claim (the id given out again): unknown
                result = replay.results.get(delivery_id)
                if result is not None:
                    results.append(result)
                    if delivery_id in replay.outbound:
                        outbound.append(replay.outbound[delivery_id])
                elif delivery_id not in replay.started:
                    # never handed to its provider: as if never claimed
                    results.append(
                        Result(delivery_id, channel, Status.QUEUED, at, attempts_back=True)
                    )
            if results:
                store.deliveries.record_results(results, outbound)
        back = sum(1 for r in results if r.id not in replay.results)
        return back, len(results) - back

    settled = store.retrying(settle)
    journal.forget(ws.root, worker)
    return settled


def running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, killed but not yet waited
    for, does not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: it answered the signal
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class _Heartbeat:
    """The thread that renews one lease, on a database connection of its own."""

    def __init__(self, config: Config, worker: int, kind: str) -> None:
        self.config = config
        self.worker = worker
        self.kind = kind
        self.interval = heartbeat_interval(config.lease)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="outreach-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)

    def _beat(self) -> None:
        store: Store | None = None
        try:
            while not self.stopped.wait(self.interval):
                try:
                    if store is None:
                        # opened at the first beat: a short command never opens it; no
                        # quick_check (it reads every page: up to 85 ms of a run's CPU),
                        # the process checked the file when it opened it
                        store = open_store(self.config.database, check=False)
                    store.workers.heartbeat(self.worker, HOST, os.getpid(), self.kind)
                except Exception as exc:  # the next beat tries again, on a new connection
                    log.warning("heartbeat: %s", " ".join(str(exc).split()))
                    if store is not None:
                        with contextlib.suppress(Exception):
                            store.close()
                    store = None
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
