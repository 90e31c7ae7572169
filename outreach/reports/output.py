"""Files that appear only complete: what ``export --output`` and ``report --html`` write.

The text goes to a hidden temporary file beside the target, which is renamed over it once
complete and synced: a failed or interrupted write leaves neither a half file nor the
temporary one (a killed writer's leftover is swept by the next write to the same file).
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from ..errors import UsageError, local_write_error


@contextmanager
def atomic_output(path: Path, *, what: str = "--output") -> Iterator[IO[str]]:
    """A text file at ``path`` that appears only complete: write a temp file, then rename."""
    folder = path.parent
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a folder; name a file inside it")
    if not folder.is_dir():
        raise UsageError(f"{what} {path}: folder {folder} does not exist; create it first")
    prefix = f".{path.name}."
    _sweep_leftovers(folder, prefix)
    try:
        # the pid in the name tells a later export whether its writer is still alive
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        raise local_write_error(exc, path) or UsageError(
            f"{what} {path}: cannot write in {folder} ({exc.strerror}); "
            "choose a folder you can write to"
        ) from None
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file 0600; the result is shared like any file the user writes
        os.fchmod(fd, _mode_for(path))
        # newline="" lets the csv module write its own RFC 4180 line endings.
        with open(fd, "w", encoding="utf-8", newline="") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        known = local_write_error(exc, path)
        if known is None:
            raise
        raise known from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The mode of the file being replaced, else what the umask gives a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _sweep_leftovers(folder: Path, prefix: str) -> None:
    """Remove temporary files of earlier exports to the same file whose process is gone.

    A killed export (SIGKILL, a power cut) cannot clean up after itself; its hidden
    ``.NAME.PID.*.tmp`` would stay for ever. One whose process still runs is left alone.
    """
    for leftover in folder.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = leftover.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with suppress(OSError):
                leftover.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not a pid at all: leave the file alone
    return True
