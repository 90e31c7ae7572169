"""Reliability suite: ``@pytest.mark.slow`` soaks run only when asked for.

They run with ``-m slow`` (or any ``-m`` expression that names them) or with
``OUTREACH_SLOW=1``; the default suite stays inside CI's time budget.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.option.markexpr or "") or os.environ.get("OUTREACH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="soak run: use -m slow or OUTREACH_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


class SmallDisk:
    """A tmpfs of a few MiB mounted for one test, that ``fill`` makes full."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / ".filler"

    def fill(self, leave: int = 0) -> None:
        """Take every free byte (and page) but ``leave``, so that a write fails with ENOSPC
        at once, or once ``leave`` bytes more are written."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        block = b"\0" * 65536
        try:
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(block) == 1:
                        break
                    block = block[: len(block) // 2]
            if leave:
                os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A real full disk: a 16 MiB tmpfs, mounted as root, unmounted even when the test
    fails. Skipped, with the reason, where mounting is not allowed (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs needs root to mount (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {done.stderr.strip()}")
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
