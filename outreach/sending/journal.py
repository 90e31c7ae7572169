"""The send journal: which claimed deliveries a process has handed to a provider, and the
results it has not yet recorded, in a file that outlives the process.

Without it, every delivery a dead process had claimed and not recorded becomes
``unknown``, so the engine could claim no more than it sends at once (``concurrency``),
and a channel paid a claim-and-record transaction every few messages. With it, recovery
on the same host (``replay``) tells the three apart: a delivery never started goes back to
the queue, one with a result is recorded as the process would have, and only one started
and unanswered (at most ``concurrency`` a process) is ``unknown``. The engine then claims
and records in large batches, as it does for channels that cannot send twice.

The file is written with one ``write`` per event and never synced: the kernel keeps it
when a process is killed, not when the machine loses power. So it is trusted only within
the boot that wrote it (the kernel's ``boot_id``); after a reboot, or where there is no
boot id (not Linux), or on another host (PostgreSQL workers elsewhere), recovery ignores
it and every claimed delivery is ``unknown`` as before. A line is ``S id`` (written before
the provider is called) or ``R {json}`` (a result, and the conversation message of a sent
one), after a ``C id id ...`` naming the deliveries claimed (replay touches no others); a
line cut short by the kill has no newline and is ignored, which is safe: a cut
``S`` means the provider was never called, a cut ``R`` leaves the delivery ``unknown``.

A journal that cannot be written (a full disk) is deleted and the pass goes on without
it: recovery then finds no file, so nothing is requeued on its word.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..deliveries import Status
from .results import Result

DIRECTORY = ".outreach-journal"  # in the workspace folder
ROTATE_BYTES = 4 * 1024 * 1024  # a file this large is followed by a new one
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_RESULT_FIELDS = tuple(f.name for f in fields(Result))  # a result's line, in this order
log = logging.getLogger("outreach.journal")


def boot_id() -> str | None:
    """This boot of the kernel (None where it cannot be known)."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _files(root: Path, worker: int) -> list[Path]:
    """The journal files of ``worker``, oldest first."""
    folder = root / DIRECTORY
    found = []
    with contextlib.suppress(OSError):
        for path in folder.glob(f"{worker}.*"):
            generation = path.name.partition(".")[2]
            if generation.isdigit():
                found.append((int(generation), path))
    return [path for _, path in sorted(found)]


class Journal:
    """One sending process's journal (one lease's), open for appending."""

    def __init__(self, root: Path, worker: int, boot: str) -> None:
        self.root = root
        self.worker = worker
        self.header = json.dumps({"worker": worker, "pid": os.getpid(), "boot": boot}) + "\n"
        self.generation = 0
        self.fd = -1
        self.size = 0
        # per file: the deliveries it names that are not yet recorded; an older file is
        # deleted once it names none
        self.pending: dict[int, set[str]] = {}
        self.broken = False
        self.users = 0  # passes of this process using it (serve runs several at once)
        self.lock = threading.Lock()

    @classmethod
    def open(cls, root: Path, worker: int) -> Journal | None:
        """A new journal for ``worker`` under ``root``, or None where none can be kept."""
        boot = boot_id()
        if boot is None:
            return None
        journal = cls(root, worker, boot)
        try:
            (root / DIRECTORY).mkdir(exist_ok=True)
            forget(root, worker)  # a worker id is never reused: nothing of another's
            journal._next_file()
        except OSError as exc:
            log.warning("send journal in %s: %s; sending without one", root / DIRECTORY, exc)
            journal.close()
            return None
        return journal

    def _path(self, generation: int) -> Path:
        return self.root / DIRECTORY / f"{self.worker}.{generation}"

    def _next_file(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.generation += 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(self._path(self.generation), flags, 0o600)
        self.pending[self.generation] = set()
        self.size = 0
        self._write(self.header.encode())

    def _write(self, data: bytes) -> None:
        written = os.write(self.fd, data)
        if written != len(data):  # the rest did not fit
            raise OSError(errno.ENOSPC, "disk full")
        self.size += written

    def claimed(self, delivery_ids: list[str]) -> bool:
        """Note the deliveries this process has just claimed (before any is started):
        replay touches no other row, even one another incarnation of this worker id
        left ``sending`` (a database restored from a backup hands ids out again)."""
        return self._append(b"C %s\n" % " ".join(delivery_ids).encode(), delivery_ids)

    def started(self, delivery_id: str) -> bool:
        """Note that ``delivery_id`` is handed to its provider now; False when the journal
        has just failed (it is gone: recovery will not requeue on its word)."""
        return self._append(b"S %s\n" % delivery_id.encode(), (delivery_id,))

    def finished(self, result: Result, outbound: dict[str, Any] | None) -> None:
        """Note a started delivery's result (and, sent, its conversation message)."""
        line = {"r": [getattr(result, name) for name in _RESULT_FIELDS], "o": outbound}
        self._append(b"R %s\n" % json.dumps(line, separators=(",", ":")).encode(), (result.id,))

    def _append(self, line: bytes, delivery_ids: Iterable[str]) -> bool:
        """One line, naming ``delivery_ids`` (pending in this file until recorded); False
        once the journal has failed."""
        with self.lock:
            if self.broken:
                return False
            try:
                if self.size > ROTATE_BYTES:
                    self._next_file()
                self._write(line)
            except OSError as exc:
                self._fail(exc)
                return False
            self.pending[self.generation].update(delivery_ids)
            return True

    def recorded(self, delivery_ids: Iterable[str]) -> None:
        """These results are committed: files that name nothing else pending go."""
        done = set(delivery_ids)
        with self.lock:
            if self.broken:
                return
            for pending in self.pending.values():
                pending -= done
            for generation in [g for g, ids in self.pending.items() if not ids]:
                if generation != self.generation:
                    del self.pending[generation]
                    with contextlib.suppress(OSError):
                        self._path(generation).unlink()

    def _fail(self, exc: OSError) -> None:
        why = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        log.warning(
            "send journal %s: %s; sending on without it (a crash now would leave every "
            "claimed delivery unknown)",
            self._path(self.generation),
            why,
        )
        self.broken = True
        self.close()

    def close(self) -> None:
        """Delete the journal: everything it named is recorded (or it is broken)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        forget(self.root, self.worker)
        self.pending.clear()


_registry_lock = threading.Lock()
_journals: dict[tuple[Path, int], Journal] = {}
# workers of this process that sent without a journal, or whose journal failed: a journal
# opened later would not name their earlier sends, so none is ever opened for them
_refused: set[tuple[Path, int]] = set()


def acquire(root: Path, worker: int) -> Journal | None:
    """This process's journal for lease ``worker`` (shared by its passes), or None: the
    pass must then claim no more than it sends at once."""
    key = (root, worker)
    with _registry_lock:
        journal = _journals.get(key)
        if journal is None and key not in _refused:
            journal = Journal.open(root, worker)
            if journal is None:
                _refused.add(key)
            else:
                _journals[key] = journal
        if journal is None or journal.broken:
            _refused.add(key)
            return None
        journal.users += 1
        return journal


def release(journal: Journal) -> None:
    """A pass is done with ``journal``: the last one deletes it, unless results it names
    are still not recorded (a failed last flush), which recovery would need."""
    with _registry_lock:
        journal.users -= 1
        if journal.users or any(journal.pending.values()):
            return
        _journals.pop((journal.root, journal.worker), None)
        journal.close()
        if journal.broken:
            _refused.add((journal.root, journal.worker))


@dataclass
class Replay:
    """What a dead process's journal says: the deliveries it started, and its results."""

    claimed: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)
    results: dict[str, Result] = field(default_factory=dict)
    outbound: dict[str, dict[str, Any]] = field(default_factory=dict)

    def forget(self, delivery_id: str) -> None:
        """What an earlier attempt of ``delivery_id`` left (a newer one follows)."""
        self.started.discard(delivery_id)
        self.results.pop(delivery_id, None)
        self.outbound.pop(delivery_id, None)


def read(root: Path, worker: int, pid: int) -> Replay | None:
    """The journal of dead ``worker`` (process ``pid``), or None where it cannot be
    trusted: none, another boot's, another process's, or unreadable."""
    files = _files(root, worker)
    if not files:
        return None
    boot = boot_id()
    replay = Replay()
    try:
        for path in files:
            with path.open("rb") as f:
                lines = iter(f)
                header = json.loads(next(lines, b"{}"))
                if header != {"worker": worker, "pid": pid, "boot": boot} or boot is None:
                    return None
                for line in _complete(lines):
                    kind, _, rest = line.partition(b" ")
                    # in the order written: a delivery claimed again (a retry, later in a
                    # long-lived process) is what its newest lines say
                    if kind == b"C":
                        for delivery_id in rest.decode().split():
                            replay.forget(delivery_id)
                            replay.claimed.add(delivery_id)
                    elif kind == b"S":
                        delivery_id = rest.decode()
                        replay.forget(delivery_id)
                        replay.started.add(delivery_id)
                    elif kind == b"R":
                        _add_result(replay, json.loads(rest))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("send journal of worker %s unreadable (%s): ignored", worker, exc)
        return None
    return replay


def _complete(lines: Iterator[bytes]) -> Iterator[bytes]:
    for line in lines:
        if line.endswith(b"\n"):  # else cut short by the kill
            yield line[:-1]


def _add_result(replay: Replay, entry: dict[str, Any]) -> None:
    values = dict(zip(_RESULT_FIELDS, entry["r"], strict=True))
    values["status"] = Status(values["status"])
    result = Result(**values)
    replay.forget(result.id)
    replay.started.add(result.id)
    replay.results[result.id] = result
    if entry.get("o"):
        replay.outbound[result.id] = entry["o"]


def orphans(root: Path, workers: set[int]) -> dict[int, int]:
    """Workers not in ``workers`` (their rows are gone: ended, or recovered elsewhere)
    that left a journal in this boot: worker → the pid that wrote it."""
    boot = boot_id()
    found: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for path in (root / DIRECTORY).iterdir():
            worker = path.name.partition(".")[0]
            if not worker.isdigit() or int(worker) in workers or int(worker) in found:
                continue
            try:
                with path.open("rb") as f:
                    header = json.loads(f.readline() or b"{}")
            except (OSError, ValueError):
                continue
            if isinstance(header, dict) and header.get("boot") == boot and "pid" in header:
                found[int(worker)] = int(header["pid"])
    return found


def forget(root: Path, worker: int) -> None:
    """Delete ``worker``'s journal files (replayed, or not to be trusted)."""
    for path in _files(root, worker):
        with contextlib.suppress(OSError):
            path.unlink()
