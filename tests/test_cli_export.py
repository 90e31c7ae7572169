"""outreach export and outreach report through the real CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import pytest

from outreach.workspace import Workspace
from tests.conftest import Cli
from tests.test_export import (
    add_customer,
    add_delivery,
    add_message,
    add_response,
    unwritable_folder,
)
from tests.test_report import O1, seed_nps

TRICKY = '=HYPERLINK("http://x","click"), "quoted"\nsecond line 👍'


@pytest.fixture
def seeded(ws: Path) -> Path:
    space = Workspace.load(ws)
    try:
        seed_nps(space.store)
        add_customer(space.store, "c99", "=cmd|' /C calc'!A0")
        add_delivery(space.store, "d99", "nps", O1, "c99", "sent", sent_at=O1)
        mid = add_message(space.store, "c99", "in", TRICKY, "2026-11-03T09:00:00Z")
        add_response(space.store, mid, "d99", "c99", "nps", O1, None, None, valid=False)
    finally:
        space.close()
    return ws


def test_export_replies_csv_on_stdout_is_spreadsheet_safe(seeded: Path, cli: Cli) -> None:
    result = cli("export", "replies", "--campaign", "nps", "--since", "2026-11-03")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert len(rows) == 2  # c99's message and c1's December answer
    tricky = next(r for r in rows if r["customer_id"] == "c99")
    assert tricky["text"] == "'" + TRICKY
    assert tricky["customer_name"] == "'=cmd|' /C calc'!A0"
    assert tricky["campaign"] == "nps" and tricky["received_at"] == "2026-11-03T09:00:00Z"


def test_export_format_follows_the_output_suffix(seeded: Path, cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "replies.jsonl"
    result = cli("export", "replies", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "Exported 10 replies to" in result.stderr
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10
    assert any(r["text"] == TRICKY for r in rows)  # JSON keeps the text exactly


def test_export_conversations_json(seeded: Path, cli: Cli) -> None:
    result = cli("export", "conversations", "--format", "json", "--until", "2026-11-02T10:01:00Z")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["customer_id"], r["direction"], r["text"]) for r in rows] == [
        ("c1", "in", "9"),
        ("c5", "in", "who is this"),
        ("c6", "in", "hello"),
    ]


def test_export_to_unwritable_folder_fails_cleanly(seeded: Path, cli: Cli, tmp_path: Path) -> None:
    folder = unwritable_folder(tmp_path)
    try:
        result = cli("export", "replies", "-o", str(folder / "out.csv"))
    finally:
        if folder.parent == tmp_path:
            folder.chmod(0o700)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: -") and "cannot write in" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (folder / "out.csv").exists()


def test_since_after_until_exits_2(seeded: Path, cli: Cli) -> None:
    result = cli("export", "replies", "--since", "2026-12-01", "--until", "7d")
    assert result.exit_code == 2
    assert "--since 2026-12-01" in result.stderr and "after --until" in result.stderr
    assert result.stdout == ""


def test_bad_format_is_refused(seeded: Path, cli: Cli) -> None:
    result = cli("export", "replies", "--format", "xlsx")
    assert result.exit_code == 2


def test_report_json(seeded: Path, cli: Cli) -> None:
    result = cli("report", "nps", "--occurrence", O1, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["sent"], data["replied"], data["nps"]) == (6, 5, 66.7)
    assert data["skipped"] == {"frequency_cap": 1, "no_consent": 1}
    assert data["failed_by_reason"]["template_error"] == 1


def test_report_terminal_shows_funnel_bars_and_nps(seeded: Path, cli: Cli) -> None:
    result = cli("report", "nps", "--occurrence", O1)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Delivery funnel" in out and "replied" in out
    assert "21211: invalid 'To' number" in out and "no_consent" in out
    assert "█" in out
    assert "NPS +66.7" in out


def test_report_html_file(seeded: Path, cli: Cli, tmp_path: Path) -> None:
    page = tmp_path / "nps.html"
    result = cli("report", "nps", "--html", str(page), "--json")
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)
    text = page.read_text(encoding="utf-8")
    assert "Campaign report: nps" in text and "NPS +" in text


def test_report_unknown_campaign(seeded: Path, cli: Cli) -> None:
    result = cli("report", "nsp")
    assert result.exit_code == 2
    assert 'campaign "nsp" not found' in result.stderr and "nps" in result.stderr


@pytest.mark.parametrize(
    "args", [["export"], ["export", "replies"], ["export", "conversations"], ["report"]]
)
def test_commands_have_help(cli: Cli, args: list[str]) -> None:
    result = cli(*args, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


@pytest.fixture
def umask_022() -> object:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_output_files_honour_the_umask(
    seeded: Path, cli: Cli, tmp_path: Path, umask_022: object
) -> None:
    target, page = tmp_path / "replies.csv", tmp_path / "nps.html"
    assert cli("export", "replies", "--output", str(target)).exit_code == 0
    assert cli("report", "nps", "--html", str(page)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(page.stat().st_mode) == 0o644
    # a file that is replaced keeps its mode
    target.chmod(0o600)
    assert cli("export", "replies", "--output", str(target)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "name"),
    [([], "replies.xlsx"), (["--format", "json"], "replies.csv"), (["--format", "csv"], "r.json")],
)
def test_an_extension_that_names_another_format_is_refused(
    seeded: Path, cli: Cli, tmp_path: Path, args: list[str], name: str
) -> None:
    result = cli("export", "replies", *args, "--output", str(tmp_path / name))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --output ") and "would hold" in result.stderr
    assert not (tmp_path / name).exists()


def test_excel_csv_starts_with_a_byte_order_mark(seeded: Path, cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "replies.csv"
    assert cli("export", "replies", "--excel", "-o", str(target)).exit_code == 0
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfreceived_at,")
    plain = cli("export", "replies").stdout
    assert plain.startswith("received_at,")
    result = cli("export", "replies", "--excel", "--format", "json")
    assert result.exit_code == 2 and "--excel is for CSV" in result.stderr


def test_export_has_the_providers_message_id(ws: Path, cli: Cli) -> None:
    line = json.dumps(
        {
            "channel": "sms",
            "from": "+31612345678",
            "text": "hi",
            "id": "SM123",
            "received_at": "2026-12-01T10:00:00Z",
        }
    )
    assert cli("--now", "2026-12-01T10:01:00Z", "replies", "ingest", "-", input=line).exit_code == 0
    rows = json.loads(cli("export", "replies", "--format", "json").stdout)
    assert rows[0]["provider_message_id"] == "SM123"
    assert isinstance(rows[0]["message_id"], int)
    assert "Exported 1 reply to" in cli("export", "replies", "-o", str(ws / "one.csv")).stderr
