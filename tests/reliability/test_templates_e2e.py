"""Hostile templates through the real CLI: ``templates check`` and a campaign ``run``.

``tests/test_templates.py`` pins the sandbox rule by rule on the ``Renderer``; here the
same kinds of attack (plus Jinja's default globals, format-string attribute access,
``extends``/``import`` out of ``templates/``) go through a separate ``outreach`` process,
which must refuse each one by name, within bounded time, without printing what it
refused to read, and a campaign built on such a template must send nothing and record
``template_error``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .support import make_workspace, outreach_toml, query, run_cli, run_json

OUTBOX = '[channels.sms]\nprovider = "outbox"\nconcurrency = 4\n'
MARKER = "toml-contents-must-not-leak-7f3a"

EVIL = {
    "dunder": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "lipsum": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "joiner": "{{ joiner.__init__.__globals__ }}",
    "attrfilter": "{{ customer|attr('__class__') }}",
    "formatstr": "{{ '{0.__class__.__init__.__globals__}'.format(customer) }}",
    "selfref": "{{ self.__init__.__globals__ }}",
    "mutate": "{% set l = [1] %}{{ l.append(2) }}",
    "include": "{% include '../outreach.toml' %}",
    "extends": "{% extends '/etc/passwd' %}",
    "import": "{% import '../../outreach.toml' as t %}{{ t }}",
    "loop": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "recurse": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
    "{{ f(60) }}",
    "bigmul": "{{ 'x' * 1000000000 }}",
    "bigpow": "{{ 7 ** 123456789 }}",
    "bigpad": "{{ 'x'|center(1000000000) }}",
    "manyloops": "{% for i in range(100000) %}some words that repeat {% endfor %}",
}


@pytest.fixture
def evil_ws(tmp_path: Path) -> Path:
    ws = make_workspace(
        tmp_path / "ws",
        outreach_toml(OUTBOX) + f"# {MARKER}\n",
        campaigns={
            "evil": 'kind = "update"\ntemplate = "loop"\n'
            'channels = ["sms"]\n[schedule]\n'
            'start = "2026-12-01 08:00"\nwindow = "00:00-24:00"\n'
        },
        customers=3,
    )
    for name, source in EVIL.items():
        folder = ws / "templates" / name
        folder.mkdir()
        (folder / "sms.j2").write_text(source, encoding="utf-8")
    return ws


def test_templates_check_refuses_every_escape_in_bounded_time(evil_ws: Path) -> None:
    started = time.monotonic()
    result = run_cli(evil_ws, "templates", "check", *EVIL, "--json", "--sample", "1")
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    checks = {c["template"]: c for c in json.loads(result.stdout)}
    assert set(checks) == set(EVIL)
    for name, check in checks.items():
        assert check["errors"], f"{name} rendered: {check}"
        assert all(f"templates/{name}/sms.j2" in e for e in check["errors"]), check["errors"]
        assert check["renders"] == 0
    everything = result.stdout + result.stderr
    assert MARKER not in everything and "root:x:0:0" not in everything
    assert "uid=" not in everything
    # the two time-limited renders are stopped at their deadline, not run out
    assert elapsed < 15


def test_a_campaign_on_a_runaway_template_sends_nothing_and_records_template_error(
    evil_ws: Path,
) -> None:
    started = time.monotonic()
    data = run_json(evil_ws, "evil", ok=(3,))  # a run with a template error exits 3
    assert time.monotonic() - started < 20
    assert data["sent"] == 0
    [line] = data["campaigns"]
    assert line["skipped"] == {"template_error": 3}
    assert any("templates/loop/sms.j2" in p and "limit" in p for p in data["problems"])
    rows = query(evil_ws, "SELECT status, reason, error FROM deliveries")
    assert len(rows) == 3
    assert all(r[0] == "skipped" and r[1] == "template_error" for r in rows)
    assert all("rendering took" in r[2] for r in rows)
    assert not list((evil_ws / "outbox").rglob("*.json"))
