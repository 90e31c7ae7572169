"""Customer import against a real workspace database: parsing, validation,
normalisation, batches, consent from files, and the bad input of issue 2."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach import consent
from outreach.config import load_config
from outreach.customers.importer import ImportResult, import_customers
from outreach.customers.normalise import BadCell, Normaliser
from outreach.errors import UsageError
from outreach.store.sqlite import SqliteStore
from outreach.workspace import Workspace, examples_dir

Import = Callable[..., ImportResult]


@pytest.fixture
def workspace(ws: Path) -> Iterator[Workspace]:
    loaded = Workspace.load(ws)
    yield loaded
    loaded.close()


@pytest.fixture
def imp(workspace: Workspace, tmp_path: Path) -> Import:
    """imp(content, name="customers.csv", **options): write the file and import it."""

    def run(content: str | bytes, name: str = "customers.csv", **options: Any) -> ImportResult:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return import_customers(workspace.store, workspace.config, path, **options)

    return run


def customer(workspace: Workspace, cid: str) -> dict[str, Any]:
    row = workspace.store.customers.get_customer(cid)
    assert row is not None, f"customer {cid} was not imported"
    return row


def sqlite_conn(workspace: Workspace) -> sqlite3.Connection:
    """The connection of the workspace's SQLite store, for tests that read its tables."""
    store = workspace.store
    assert isinstance(store, SqliteStore)
    return store.conn


def count(workspace: Workspace) -> int:
    return int(sqlite_conn(workspace).execute("SELECT count(*) FROM customers").fetchone()[0])


def test_csv_with_semicolons_is_normalised(imp: Import, workspace: Workspace) -> None:
    result = imp(
        "id;name;email;phone;preferred_channel;locale;timezone;age;zip;score;formula\n"
        "C1; Ann ;Ann@Example.COM;06 1234 5678;SMS;nl_be;Europe/Brussels;42;0612;3.5;=1+1\n"
    )
    assert (result.created, result.updated, result.rejected) == (1, 0, 0)
    row = customer(workspace, "C1")
    assert row["name"] == "Ann"
    assert row["email"] == "Ann@example.com"
    assert row["phone"] == "+31612345678"
    assert row["preferred_channel"] == "sms"
    assert row["locale"] == "nl-BE"
    assert row["timezone"] == "Europe/Brussels"
    # canonical numbers become numbers (so `age > 30` works); "0612" and formulas stay text
    assert row["age"] == 42 and isinstance(row["age"], int)
    assert row["score"] == 3.5
    assert row["zip"] == "0612"
    assert row["formula"] == "=1+1"
    assert set(workspace.store.customers.attribute_columns()) >= {"age", "zip", "score", "formula"}
    conn = sqlite_conn(workspace)
    older = conn.execute(
        "SELECT count(*) FROM customers WHERE age > 30 AND zip = '0612'"
    ).fetchone()[0]
    assert older == 1


@pytest.mark.parametrize(
    ("header", "row"),
    [
        ("id\tname\temail", "C1\tAnn\tann@example.com"),
        ("id|name|email", "C1|Ann|ann@example.com"),
        ("id,name,email", 'C1,"Ann, the first",ann@example.com'),
    ],
)
def test_delimiter_is_sniffed(imp: Import, workspace: Workspace, header: str, row: str) -> None:
    result = imp(f"{header}\n{row}\n")
    assert result.created == 1, result.error_lines()
    assert customer(workspace, "C1")["email"] == "ann@example.com"


def test_utf8_bom_and_crlf_are_accepted(imp: Import, workspace: Workspace) -> None:
    result = imp("\ufeffid,name\r\nC1,Zoë\r\nC2,Jürgen\r\n".encode())
    assert result.created == 2
    assert customer(workspace, "C1")["name"] == "Zoë"


def test_bad_rows_are_reported_with_line_column_and_fix(imp: Import, workspace: Workspace) -> None:
    result = imp(
        "id,email,phone,preferred_channel,locale,timezone,opted_in\n"
        "C1,ann@example.com,+31612345678,sms,nl,Europe/Amsterdam,sms\n"
        "C2,bob@,06-12,fax,xx-YY,Mars/Base,pigeon\n"
        '"C3",cy@example.com,,,,europe/amsterdam,\n'
    )
    assert (result.created, result.rejected) == (1, 2)
    lines = result.error_lines()
    assert any(
        line.startswith("customers.csv:3: phone: ")
        and "not a valid number in region NL; write it as +316" in line
        for line in lines
    ), lines
    assert any(line.startswith("customers.csv:3: email: ") for line in lines)
    assert any(
        line.startswith("customers.csv:3: preferred_channel: ") and "email, sms, whatsapp" in line
        for line in lines
    )
    assert any(line.startswith("customers.csv:3: locale: ") for line in lines)
    assert any(line.startswith("customers.csv:3: opted_in: ") for line in lines)
    assert any(
        line.startswith("customers.csv:4: timezone: ") and "did you mean Europe/Amsterdam" in line
        for line in lines
    )
    assert count(workspace) == 1
    # a rejected row records no consent either
    assert workspace.store.consent.consent_history("C2") == []


def test_line_numbers_count_physical_lines_of_multiline_cells(imp: Import) -> None:
    result = imp('id,note,email\nC1,"two\nlines",a@example.com\n\nC2,x,broken\n')
    assert [p.line for p in result.errors] == [5]


def test_unclosed_quote_rejects_its_row_and_reads_the_lines_after_it_as_rows(
    imp: Import, workspace: Workspace
) -> None:
    rows = "".join(f"C{i},n{i}\n" for i in range(30))
    result = imp(f'id,name\nA1,"Ann\n{rows}')
    assert result.rejected == 1 and result.created == 30
    assert result.errors[0].line == 2 and "not closed within 20 lines" in result.errors[0].reason
    assert customer(workspace, "C0")["name"] == "n0"
    # a quote that runs to the end of the file, even a short one, is an error, not a value
    short = imp('id,name\n"B1,Bob\nB2,x\n', name="short.csv")
    assert (short.rejected, short.created) == (1, 1)
    assert short.errors[0].line == 2 and "never closed" in short.errors[0].reason
    assert customer(workspace, "B2")["name"] == "x"


def test_a_closed_multiline_cell_at_the_end_of_the_file_is_a_value(
    imp: Import, workspace: Workspace
) -> None:
    result = imp('id,note\nC1,"two\nlines"')
    assert (result.rejected, result.created) == (0, 1)
    assert customer(workspace, "C1")["note"] == "two\nlines"


def test_unclosed_quote_in_the_header_is_a_usage_error(imp: Import) -> None:
    with pytest.raises(UsageError, match=r'customers.csv:1: a quoted column name .* close the "'):
        imp('id,"name\nC1,Ann\n')


def test_reimport_updates_given_fields_and_never_clears_or_deletes(
    imp: Import, workspace: Workspace
) -> None:
    imp("id,name,email,plan\nC1,Ann,ann@example.com,pro\nC2,Bob,bob@example.com,free\n")
    result = imp("id,name,email,plan\nC1,,ann@new.example.com,\nC3,Cy,,\n")
    assert (result.created, result.updated) == (1, 1)
    ann = customer(workspace, "C1")
    assert (ann["name"], ann["email"], ann["plan"]) == ("Ann", "ann@new.example.com", "pro")
    assert customer(workspace, "C2")["name"] == "Bob"
    assert count(workspace) == 3


def test_column_case_follows_existing_columns(imp: Import, workspace: Workspace) -> None:
    imp("id,plan\nC1,pro\n")
    result = imp("ID,Plan,EMAIL\nC2,free,b@example.com\n")
    assert result.created == 1 and result.new_columns == []
    assert customer(workspace, "C2")["plan"] == "free"


def test_opted_in_starts_consent_but_never_overrides_the_ledger(
    imp: Import, workspace: Workspace
) -> None:
    imp("id,phone,opted_in\nC1,+31612345678,sms;email\nC2,+31612345679,sms\n")
    history = workspace.store.consent.consent_history("C1")
    assert {(h["channel"], h["status"], h["source"]) for h in history} == {
        ("sms", "opted_in", "import:customers.csv"),
        ("email", "opted_in", "import:customers.csv"),
    }
    # C2 texts STOP; a later import that still says opted_in must not undo it.
    consent.record(
        workspace.store, workspace.config, ["C2"], "sms", "opted_out", source="keyword:STOP"
    )
    result = imp("id,opted_in\nC1,sms\nC2,sms\n", name="again.csv")
    assert result.consents == 0
    assert workspace.store.consent.current_consent_for("C2", "sms") != "opted_in"
    assert len(workspace.store.consent.consent_history("C1")) == 2  # nothing appended twice
    # a file without opted_in (or with an empty cell) clears nothing
    imp("id,name,opted_in\nC1,Ann,\n", name="third.csv")
    assert workspace.store.consent.current_consent_for("C1", "sms") == "opted_in"


def test_duplicate_ids_last_row_wins_and_are_reported(imp: Import, workspace: Workspace) -> None:
    content = "id,name,plan\n" + "".join(f"C{i},n{i},p\n" for i in range(5))
    content += "C1,later,\nC4,,q\n"
    result = imp(content, batch_size=2)  # duplicates across batches too
    assert (result.created, result.updated, result.duplicates) == (5, 0, 2)
    assert customer(workspace, "C1")["name"] == "later"
    assert customer(workspace, "C1")["plan"] == "p"  # empty cell kept the earlier value
    assert customer(workspace, "C4")["plan"] == "q"
    warnings = result.warning_lines()
    assert any(w.startswith("customers.csv:7: id: ") and "line 3" in w for w in warnings)


def test_non_utf8_row_is_rejected_with_its_line(imp: Import, workspace: Workspace) -> None:
    content = b"id,name\nC1,Ann\nC2,Ren\xe9e\nC3,Cy\n"
    result = imp(content)
    assert result.created == 2
    assert result.error_lines() == [
        "customers.csv:3: name: not UTF-8 (byte 0xE9); save the file as UTF-8"
    ]


def test_row_with_more_cells_than_the_header_is_rejected(imp: Import, workspace: Workspace) -> None:
    result = imp("id,name\nC1,Ann,extra\nC2,Bob,,\n")
    assert result.created == 1  # trailing empty cells are tolerated
    assert result.errors[0].line == 2
    assert "3 cells but the header names 2 columns" in result.errors[0].reason


def test_huge_cell_is_rejected_and_the_import_goes_on(imp: Import, workspace: Workspace) -> None:
    big = "x" * (50 * 1024 * 1024)
    result = imp(f"id,note\nC1,{big}\nC2,small\n")
    assert result.created == 1
    assert result.errors[0].line == 2
    assert "52.4 MB" in result.errors[0].reason and "64 KiB" in result.errors[0].reason


def test_json_array_is_streamed_and_errors_name_the_element(
    imp: Import, workspace: Workspace
) -> None:
    doc = [
        {"id": "C1", "email": "a@example.com", "age": 41, "vip": True, "opted_in": ["sms"]},
        {"id": 2, "tags": ["a", "b"]},
        {"id": "C3", "phone": "nope"},
        "not an object",
    ]
    result = imp(json.dumps(doc, indent=2), name="customers.json")
    assert result.created == 1
    assert customer(workspace, "C1")["age"] == 41
    assert customer(workspace, "C1")["vip"] == 1
    assert workspace.store.consent.current_consent_for("C1", "sms") == "opted_in"
    assert [(p.element, p.column) for p in result.errors] == [(1, "tags"), (2, "phone"), (3, None)]
    assert result.errors[0].format("customers.json").startswith("customers.json:")
    assert "[1]" in result.errors[0].format("customers.json")


def test_json_array_line_numbers_survive_chunked_reading(imp: Import, workspace: Workspace) -> None:
    doc = [{"id": f"C{i}", "note": "x" * 50, "email": "a@example.com"} for i in range(3000)]
    doc[2500]["email"] = "broken"
    text = json.dumps(doc, indent=2)  # ~600 KB: read in several chunks
    expected = text[: text.index('"id": "C2500"')].count("\n")  # the line of its "{"
    result = imp(text, name="customers.json", batch_size=700)
    assert result.created == 2999
    assert [(p.line, p.element, p.column) for p in result.errors] == [(expected, 2500, "email")]


def test_jsonl_bad_line_is_reported_others_imported(imp: Import, workspace: Workspace) -> None:
    result = imp('{"id": "C1"}\n{"id": \n\n{"id": "C2", "name": "Bob"}\n', name="c.jsonl")
    assert result.created == 2
    assert result.errors[0].line == 2 and "not valid JSON" in result.errors[0].reason


def test_json_file_of_objects_per_line_is_read_as_jsonl(imp: Import, workspace: Workspace) -> None:
    result = imp('{"id": "C1"}\n{"id": "C2"}\n', name="c.json")
    assert (result.format, result.created) == ("jsonl", 2)


@pytest.mark.parametrize(
    ("content", "name", "options", "message"),
    [
        ("", "customers.csv", {}, "customers.csv is empty"),
        ("\n  \n", "customers.csv", {}, "customers.csv is empty"),
        ("name,email\nAnn,a@example.com\n", "customers.csv", {}, "no id column"),
        ("id,first name\nC1,Ann\n", "customers.csv", {}, "rename it to first_name"),
        ("id,2nd\nC1,x\n", "customers.csv", {}, "rename it to _2nd"),
        ("id,created_at\nC1,x\n", "customers.csv", {}, "clashes with the built-in column"),
        ("id,plan,Plan\nC1,a,b\n", "customers.csv", {}, "appears twice"),
        ("id\nC1\n", "customers.xlsx", {}, "add --format"),
        ("id\nC1\n", "customers.csv", {"id_column": "nope"}, 'no column "nope"'),
        ('{"id": 1}', "c.json", {"format": "json"}, "one array of customer objects"),
    ],
)
def test_file_level_problems_stop_before_anything_is_written(
    imp: Import,
    workspace: Workspace,
    content: str,
    name: str,
    options: dict[str, Any],
    message: str,
) -> None:
    before = workspace.store.customers.attribute_columns()
    with pytest.raises(UsageError, match=message):
        imp(content, name=name, **options)
    assert count(workspace) == 0
    assert workspace.store.customers.attribute_columns() == before


def test_missing_file_is_a_usage_error(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        import_customers(workspace.store, workspace.config, tmp_path / "nope.csv")


def test_id_column_option_maps_another_column(imp: Import, workspace: Workspace) -> None:
    result = imp("customer no,name\nK-1,Ann\n", id_column="customer no")
    assert result.created == 1
    assert customer(workspace, "K-1")["name"] == "Ann"


def test_strict_imports_nothing_when_a_row_is_bad(imp: Import, workspace: Workspace) -> None:
    rows = "".join(f"C{i},+3161234567{i % 10},sms\n" for i in range(10))
    result = imp(f"id,phone,opted_in,plan\n{rows}CX,06-12,sms\n", strict=True, batch_size=3)
    assert result.rolled_back and result.rejected == 1 and result.imported == 0
    assert count(workspace) == 0
    assert sqlite_conn(workspace).execute("SELECT count(*) FROM consent").fetchone()[0] == 0
    assert "plan" not in workspace.store.customers.attribute_columns()
    good = imp(f"id,phone,opted_in\n{rows}", strict=True, batch_size=3)
    assert good.created == 10 and not good.rolled_back


def test_dry_run_writes_nothing_but_counts(imp: Import, workspace: Workspace) -> None:
    imp("id,name\nC1,Ann\n")
    result = imp("id,name,plan,opted_in\nC1,Ann B,pro,sms\nC2,Bob,free,email\n", dry_run=True)
    assert (result.created, result.updated, result.consents) == (1, 1, 2)
    assert count(workspace) == 1
    assert customer(workspace, "C1")["name"] == "Ann"
    assert "plan" not in workspace.store.customers.attribute_columns()


EMAIL_LOCAL = st.text(
    alphabet=st.sampled_from("abcXYZ019.!#$%&'*+/=?^_`{|}~-\"@ é"), min_size=0, max_size=12
)
EMAIL_DOMAIN = st.sampled_from(
    [
        "example.com",
        "EXAMPLE.com",
        "exa_mple.com",
        "localhost",
        "a..b",
        "xn--bcher-kva.example",
        "bücher.example",
        "example.com.",
        "-bad.com",
        "123.45",
    ]
)


NORMALISER = Normaliser(load_config(examples_dir()))


@settings(max_examples=300, deadline=None)
@given(local=EMAIL_LOCAL, domain=EMAIL_DOMAIN)
def test_email_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    norm = NORMALISER
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = norm.email(address)
        again = norm.email(address)  # second time from the domain cache
    except BadCell:
        got = again = None
    assert got == expected == again


def _example_numbers() -> list[str]:
    import phonenumbers

    found = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
        ):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return sorted(found)


EXAMPLE_NUMBERS = _example_numbers()


def _reference_phone(text: str) -> str | None:
    import phonenumbers

    try:
        number = phonenumbers.parse(text, "NL")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@settings(max_examples=1500, deadline=None)
@given(
    base=st.sampled_from(EXAMPLE_NUMBERS),
    cut=st.integers(min_value=0, max_value=3),
    tail=st.text(alphabet="0123456789", max_size=3),
)
def test_e164_fast_path_agrees_with_phonenumbers_parse(base: str, cut: int, tail: str) -> None:
    text = base[: len(base) - cut] + tail
    try:
        got: str | None = NORMALISER.phone(text)
    except BadCell:
        got = None
    assert got == _reference_phone(text)


def test_every_example_number_of_every_region_is_accepted() -> None:
    assert len(EXAMPLE_NUMBERS) > 500
    for text in EXAMPLE_NUMBERS:
        assert NORMALISER.phone(text) == _reference_phone(text) == text


# ------------------------------------------------------------------ interrupted imports

INTERRUPTED = """
import sys
from pathlib import Path
from outreach.customers.importer import import_customers
from outreach.workspace import Workspace

ws = Workspace.load(Path(sys.argv[1]))
import_customers(ws.store, ws.config, Path(sys.argv[2]), batch_size=int(sys.argv[3]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_import_leaves_whole_batches(ws: Path, tmp_path: Path, sig: int) -> None:
    batch = 500
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("id,name,email,opted_in\n")
        for i in range(60_000):
            f.write(f"C{i:06d},Name {i},user{i}@example.com,sms\n")
    Workspace.load(ws).store.close()  # create and migrate the database first
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(ws), str(path), str(batch)],
        stderr=subprocess.DEVNULL,
    )
    db = sqlite3.connect(ws / "outreach.db", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if db.execute("SELECT count(*) FROM customers").fetchone()[0] >= 3 * batch:
                break
            time.sleep(0.01)
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        customers = db.execute("SELECT count(*) FROM customers").fetchone()[0]
        grants = db.execute("SELECT count(*) FROM consent").fetchone()[0]
        partial = db.execute(
            "SELECT count(*) FROM customers WHERE name IS NULL OR email IS NULL"
        ).fetchone()[0]
    finally:
        db.close()
    assert 0 < customers < 60_000, "the import was not interrupted half-way"
    assert customers % batch == 0
    assert grants == customers  # a customer and its consent are in the same batch
    assert partial == 0
