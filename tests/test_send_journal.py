"""The send journal's file, written by the engine's writer and read back as recovery does:
what it says of each delivery is what its newest lines say, and a cut last line or another
process's file says nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outreach.deliveries import Status
from outreach.sending import journal
from outreach.sending.results import Result

AT = "2026-12-01T09:31:01Z"


def _written(root: Path, worker: int = 7) -> journal.Journal:
    kept = journal.Journal.open(root, worker)
    assert kept is not None, "this test needs a kernel boot id (Linux)"
    return kept


def _killed(kept: journal.Journal) -> None:
    os.close(kept.fd)  # the file stays as written


def test_a_retry_later_in_the_process_is_what_its_newest_lines_say(tmp_path: Path) -> None:
    kept = _written(tmp_path)
    kept.claimed(["a", "b"])
    kept.started("a")
    kept.finished(Result("a", "sms", Status.QUEUED, AT, not_before=AT), None)  # retry later
    kept.started("b")
    kept.finished(Result("b", "sms", Status.SENT, AT, sent_at=AT), {"text": "hi"})
    kept.claimed(["a"])  # claimed again, and handed to the provider: no answer yet
    kept.started("a")
    _killed(kept)
    replay = journal.read(tmp_path, 7, os.getpid())
    assert replay is not None
    assert replay.claimed == {"a", "b"}
    assert "a" in replay.started and "a" not in replay.results  # unknown, not queued
    assert replay.results["b"].status is Status.SENT and replay.outbound["b"] == {"text": "hi"}


def test_a_line_cut_short_by_the_kill_says_nothing(tmp_path: Path) -> None:
    kept = _written(tmp_path)
    kept.claimed(["a", "b"])
    kept.started("a")
    os.write(kept.fd, b"S b")  # the kill came in the middle of the line
    _killed(kept)
    replay = journal.read(tmp_path, 7, os.getpid())
    assert replay is not None
    assert replay.started == {"a"}  # b was never handed to its provider


def test_another_processs_journal_is_not_trusted_and_a_clean_end_leaves_nothing(
    tmp_path: Path,
) -> None:
    kept = _written(tmp_path)
    kept.claimed(["a"])
    kept.started("a")
    assert journal.read(tmp_path, 7, os.getpid() + 1) is None  # another process's pid
    assert journal.read(tmp_path, 8, os.getpid()) is None  # no journal for that worker
    kept.finished(Result("a", "sms", Status.SENT, AT), None)
    kept.recorded(["a"])
    kept.close()
    assert not list((tmp_path / journal.DIRECTORY).iterdir())


def test_a_full_file_is_followed_by_a_new_one_and_goes_once_all_it_names_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _written(tmp_path)
    monkeypatch.setattr(journal, "ROTATE_BYTES", len(kept.header) + 10)
    kept.claimed(["a", "b", "c"])
    kept.started("a")
    kept.started("b")  # past the limit: this line opens the second file
    kept.finished(Result("a", "sms", Status.SENT, AT, sent_at=AT), None)
    files = sorted((tmp_path / journal.DIRECTORY).iterdir())
    assert [f.name for f in files] == ["7.1", "7.2"]
    replay = journal.read(tmp_path, 7, os.getpid())  # both files, in order
    assert replay is not None
    assert replay.started == {"a", "b"} and set(replay.results) == {"a"}
    kept.recorded(["a", "b"])
    assert (tmp_path / journal.DIRECTORY / "7.1").exists()  # c is still pending there
    kept.recorded(["c"])
    assert [f.name for f in (tmp_path / journal.DIRECTORY).iterdir()] == ["7.2"]
