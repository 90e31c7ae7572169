"""outreach customers import|list|show through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli

CSV = (
    "id,name,email,phone,preferred_channel,locale,timezone,opted_in,plan,age\n"
    "C1,Ann,ann@example.com,0612345678,sms,nl-NL,Europe/Amsterdam,sms;email,pro,42\n"
    "C2,Bob,bob@example.com,+32470123456,email,nl-BE,Europe/Brussels,email,free,29\n"
    "C3,Cy,cy@example.com,+14155550123,email,en-US,America/New_York,,pro,35\n"
)


@pytest.fixture
def imported(cli: Cli, tmp_path: Path) -> Cli:
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 0, result.stderr
    return cli


def test_import_prints_a_summary_and_exits_0(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 0, result.stderr
    assert "Imported 3 customers from customers.csv (3 new, 0 updated)" in result.stdout
    again = cli("customers", "import", str(path), "--json")
    assert again.exit_code == 0
    data = json.loads(again.stdout)
    assert (data["imported"], data["created"], data["updated"], data["rejected"]) == (3, 0, 3, 0)
    assert data["errors"] == []


def test_import_with_bad_rows_exits_3_after_the_summary(cli: Cli, tmp_path: Path) -> None:
    rows = "".join(f"B{i},not-an-email\n" for i in range(60))
    path = tmp_path / "people.csv"
    path.write_text(f"id,email\nG1,good@example.com\n{rows}", encoding="utf-8")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 3
    assert "Imported 1 customer from people.csv" in result.stdout
    assert "60 rows rejected" in result.stdout
    err = result.stderr.splitlines()
    assert err[0].startswith("people.csv:3: email: ")
    assert "… and 10 more" in result.stderr
    assert err[-1].startswith("error: people.csv: 60 of 61 rows rejected")
    as_json = cli("customers", "import", str(path), "--json")
    assert as_json.exit_code == 3
    data = json.loads(as_json.stdout)
    assert data["rejected"] == 60 and len(data["errors"]) == 60
    assert data["errors"][0] == {
        "line": 3,
        "column": "email",
        "reason": data["errors"][0]["reason"],
    }


def test_import_strict_and_dry_run_write_nothing(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,phone\nC1,+31612345678\nC2,06-12\n", encoding="utf-8")
    strict = cli("customers", "import", str(path), "--strict")
    assert strict.exit_code == 3
    assert "nothing was imported (--strict)" in strict.stderr
    dry = cli("customers", "import", str(path), "--dry-run", "--json")
    assert dry.exit_code == 3
    assert json.loads(dry.stdout)["created"] == 1
    assert json.loads(cli("customers", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("content", "name", "args", "code", "message"),
    [
        (None, "missing.csv", [], 2, "no such file"),
        ("", "empty.csv", [], 2, "is empty"),
        ("name\nAnn\n", "c.csv", [], 2, "no id column"),
        ("id\nC1\n", "c.csv", ["--format", "xml"], 2, "xml"),
    ],
)
def test_import_file_problems_are_one_line(
    cli: Cli,
    tmp_path: Path,
    content: str | None,
    name: str,
    args: list[str],
    code: int,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = cli("customers", "import", str(path), *args)
    assert result.exit_code == code
    assert message in result.stderr
    if code == 2 and "--format" not in args:
        assert len(result.stderr.strip().splitlines()) == 1


def test_list_json_has_every_column_and_consent(imported: Cli) -> None:
    result = imported("customers", "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ["C1", "C2", "C3"]
    ann = rows[0]
    assert ann["phone"] == "+31612345678" and ann["plan"] == "pro" and ann["age"] == 42
    assert ann["consent"] == {"email": "opted_in", "sms": "opted_in"}
    assert rows[2]["consent"] == {}


def test_list_table_shows_customers(imported: Cli) -> None:
    result = imported("customers", "list", "--limit", "2")
    assert result.exit_code == 0
    assert "C1" in result.stdout and "C2" in result.stdout and "C3" not in result.stdout
    assert "2 customers" in result.stderr


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        ("plan = 'pro' and age > 30", ["C1", "C3"]),
        ("lower(email) like '%@example.com' and locale glob 'nl-*'", ["C1", "C2"]),
        ("coalesce(age, 0) between 30 and 40 -- a trailing comment", ["C3"]),
        ("cast(age as text) = '29'", ["C2"]),
    ],
)
def test_list_where_filters_on_any_column(imported: Cli, where: str, ids: list[str]) -> None:
    result = imported("customers", "list", "--where", where, "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == ids


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("id IN (SELECT customer_id FROM consent)", 'reading "consent" is not allowed'),
        ("1; DELETE FROM customers", "one condition"),
        ("randomblob(4) IS NOT NULL", "function randomblob() is not allowed"),
        ("load_extension('x') IS NULL", "load_extension"),
        ("exists (SELECT * FROM pragma_table_info('customers'))", "not allowed"),
        ("exists (SELECT * FROM sqlite_master)", 'reading "sqlite_master" is not allowed'),
        ("1) UNION SELECT * FROM consent --", "not allowed"),
        ("plan = ", "syntax error"),
        ("nope = 1", 'no customer column "nope"'),
    ],
)
def test_list_where_refuses_anything_but_reading_customers(
    imported: Cli, where: str, message: str
) -> None:
    result = imported("customers", "list", "--where", where, "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(json.loads(imported("customers", "list", "--json").stdout)) == 3


def test_values_that_look_like_markup_are_shown_as_data(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "odd[1].csv"
    path.write_text("id,name\nM1,[/bold] x [red]y\n", encoding="utf-8")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 0
    assert "from odd[1].csv" in result.stdout
    listed = cli("customers", "list")
    assert listed.exit_code == 0, listed.stderr
    assert "[/bold]" in listed.stdout


def test_show_has_columns_consent_and_conversation(imported: Cli) -> None:
    result = imported("customers", "show", "C1", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["customer"]["email"] == "ann@example.com"
    assert data["customer"]["age"] == 42
    assert data["consent"]["sms"]["status"] == "opted_in"
    assert data["consent"]["sms"]["source"] == "import:customers.csv"
    assert data["consent"]["whatsapp"]["status"] is None
    assert data["conversation"] is None
    text = imported("customers", "show", "C1")
    assert text.exit_code == 0 and "ann@example.com" in text.stdout


def test_show_unknown_customer_exits_2(imported: Cli) -> None:
    result = imported("customers", "show", "NOPE")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        'error: customer "NOPE" does not exist; see outreach customers list'
    )


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ([], []),
        (["import"], ["--format", "--id-column", "--dry-run", "--strict", "--json"]),
        (["list"], ["--where", "--limit", "--json"]),
        (["show"], ["--json"]),
    ],
)
def test_every_customers_command_has_help(cli: Cli, command: list[str], options: list[str]) -> None:
    result = cli("customers", *command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout
    for option in options:
        assert option in result.stdout


def test_unclosed_quote_row_is_rejected_with_its_line_and_the_next_row_imported(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "quotes.csv"
    path.write_text(
        'id,name,phone\nx1,"Unclosed quote,+31612345678\nx2,Bob,+31612345679\n',
        encoding="utf-8",
    )
    result = cli("customers", "import", str(path))
    assert result.exit_code == 3
    assert "1 row rejected" in result.stdout
    assert result.stderr.splitlines()[0].startswith(
        'quotes.csv:2: a quoted cell opened on this line is never closed; close the "'
    )
    listed = json.loads(cli("customers", "list", "--json").stdout)
    assert [(c["id"], c["name"]) for c in listed] == [("x2", "Bob")]


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("nul.csv", "id,name\nC1,Ann\nC2,Bo\x00b\n", 3),
        ("nul.jsonl", '{"id": "C1", "name": "Ann"}\n{"id": "C2", "name": "Bo\\u0000b"}\n', 2),
    ],
)
def test_a_nul_byte_in_a_cell_rejects_the_row(
    cli: Cli, tmp_path: Path, name: str, content: str, line: int
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        f"{name}:{line}: name: contains a NUL byte; remove it (is the file really text?)"
    )
    listed = json.loads(cli("customers", "list", "--json").stdout)
    assert [c["id"] for c in listed] == ["C1"]


def test_a_utf16_file_with_a_bom_is_read(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "excel.txt"  # Excel's "Unicode text": UTF-16 with a BOM, tabs
    path.write_text("id\tname\tlocale\nC1\tRenée\tfr-FR\nC2\tZoë\tnl\n", encoding="utf-16")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 0, result.stderr
    listed = json.loads(cli("customers", "list", "--json").stdout)
    assert [(c["id"], c["name"]) for c in listed] == [("C1", "Renée"), ("C2", "Zoë")]


def test_utf16_without_a_bom_is_refused_with_how_to_save_it(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes("id,name\nC1,Ann\n".encode("utf-16-le"))
    result = cli("customers", "import", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: people.csv is UTF-16 text without a byte-order mark; save it as UTF-8 "
        '(in Excel: "CSV UTF-8") and import it again'
    )


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("en_US.UTF-8", "en-US"),
        ("de_DE@euro", "de-DE"),
        ("sr_RS@latin", "sr-Latn-RS"),
        ("en-US-u-ca-buddhist", "en-US-u-ca-buddhist"),
        ("EN-us-U-CA-Buddhist", "en-US-u-ca-buddhist"),
        ("nl_be", "nl-BE"),
    ],
)
def test_posix_locale_names_and_bcp47_extensions_are_stored_as_bcp47(
    cli: Cli, tmp_path: Path, written: str, stored: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(f"id,locale\nC1,{written}\n", encoding="utf-8")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 0, result.stderr
    [row] = json.loads(cli("customers", "list", "--json").stdout)
    assert row["locale"] == stored


@pytest.mark.parametrize("written", ["C.UTF-8", "en-US-u", "xx-YY", "en-US-u-c"])
def test_locales_that_are_not_bcp47_are_refused(cli: Cli, tmp_path: Path, written: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text(f"id,locale\nC1,{written}\n", encoding="utf-8")
    result = cli("customers", "import", str(path))
    assert result.exit_code == 3
    assert f'people.csv:2: locale: "{written}" is not a known BCP 47 locale' in result.stderr
