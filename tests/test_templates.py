"""Rendering: lookup chain, email headers, sandbox and limits, filters, SMS segments."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outreach.config import Config, load_config
from outreach.errors import RenderError
from outreach.locales import locale_chain
from outreach.templates.checks import check_templates, sms_segments
from outreach.templates.limits import MAX_OUTPUT_CHARS
from outreach.templates.render import Renderer

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def customer(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "C-1",
        "name": "Anna de Vries",
        "email": "anna@example.nl",
        "phone": "+31612345678",
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
        "plan": "pro",
    }
    base.update(fields)
    return base


@pytest.fixture
def config(ws: Path) -> Config:
    return load_config(ws)


def write(ws: Path, name: str, files: Mapping[str, str | bytes]) -> None:
    folder = ws / "templates" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, content in files.items():
        path = folder / file
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def render(config: Config, name: str, channel: str = "sms", **kw: Any) -> Any:
    person = kw.pop("person", None) or customer()
    return Renderer(config).render(name, channel, person, now=NOW, **kw)


# --- lookup -----------------------------------------------------------------------------

CHAIN_FILES = {
    "sms.nl-BE.j2": "sms.nl-BE",
    "sms.nl.j2": "sms.nl",
    "sms.j2": "sms",
    "default.j2": "default",
}


@pytest.mark.parametrize(
    ("channel", "locale", "expected"),
    [
        ("sms", "nl-BE", "sms.nl-BE"),
        ("sms", "nl_be", "sms.nl-BE"),
        ("sms", "nl-NL", "sms.nl"),
        ("sms", "nl", "sms.nl"),
        ("sms", "de-DE", "sms"),
        ("sms", None, "sms"),
        ("whatsapp", "nl-BE", "default"),
    ],
)
def test_lookup_follows_the_locale_chain_then_default(
    ws: Path, config: Config, channel: str, locale: str | None, expected: str
) -> None:
    write(ws, "chain", CHAIN_FILES)
    result = render(config, "chain", channel, person=customer(locale=locale))
    assert result.body == expected
    assert result.source == f"templates/chain/{expected}.j2"


def test_locale_chain_goes_from_specific_to_general() -> None:
    assert locale_chain("zh_hant_tw") == ("zh-Hant-TW", "zh-Hant", "zh")
    assert locale_chain("") == ()


def test_missing_template_names_every_file_looked_for(ws: Path, config: Config) -> None:
    write(ws, "only_email", {"email.j2": "Subject: x\n\nbody"})
    with pytest.raises(RenderError) as err:
        render(config, "only_email", "sms", person=customer(locale="nl-BE"))
    message = str(err.value)
    for file in ("sms.nl-BE.j2", "sms.nl.j2", "sms.j2", "default.j2"):
        assert f"templates/only_email/{file}" in message
    assert "C-1" in message
    assert not Renderer(config).exists("only_email", "sms")
    assert Renderer(config).exists("only_email", "email", "fr")


def test_a_template_name_cannot_leave_the_templates_folder(ws: Path, config: Config) -> None:
    with pytest.raises(RenderError):
        render(config, "..", "sms")


def test_compiled_templates_are_cached_no_file_read_per_render(ws: Path, config: Config) -> None:
    write(ws, "cached", {"sms.j2": "Hi {{ customer.name|first_name }}"})
    renderer = Renderer(config)
    assert renderer.render("cached", "sms", customer(), now=NOW).body == "Hi Anna"
    (ws / "templates" / "cached" / "sms.j2").unlink()
    assert renderer.render("cached", "sms", customer(name="Bo Li"), now=NOW).body == "Hi Bo"


# --- email ------------------------------------------------------------------------------


def test_email_headers_are_parsed_into_subject_preheader_and_body(ws: Path, config: Config) -> None:
    write(
        ws,
        "mail",
        {
            "email.j2": (
                "Subject: Hello {{ customer.name|first_name }}\nPreheader: Short one\n\n"
                "Body line 1\nSubject: not a header here\n"
            )
        },
    )
    result = render(config, "mail", "email")
    assert result.subject == "Hello Anna"
    assert result.preheader == "Short one"
    assert result.body == "Body line 1\nSubject: not a header here"
    assert result.html is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Hello there\n\nbody", "missing Subject: header"),
        ("Preheader: only\n\nbody", "missing Subject: header"),
        ("Subject: {{ '' }}\n\nbody", "the Subject: is empty"),
        ("Subject: hi\nFrom: me\n\nbody", "unknown header From:"),
        ("Subject: hi\nbody right away", "no blank line after the headers"),
    ],
)
def test_bad_email_headers_are_template_errors(
    ws: Path, config: Config, text: str, problem: str
) -> None:
    write(ws, "mail", {"email.j2": text})
    with pytest.raises(RenderError) as err:
        render(config, "mail", "email")
    assert problem in str(err.value)
    assert "templates/mail/email.j2" in str(err.value)
    assert err.value.exit_code == 4


def test_html_alternative_is_autoescaped_and_text_is_not(ws: Path, config: Config) -> None:
    write(
        ws,
        "mail",
        {
            "email.j2": "Subject: Hi {{ customer.name }}\n\nHi {{ customer.name }}",
            "email.html.j2": "<p>Hi {{ customer.name }}</p>"
            '{% if unsubscribe_url %}<a href="{{ unsubscribe_url }}">x</a>{% endif %}',
        },
    )
    evil = customer(name="<script>alert(1)</script> & co", locale=None)
    result = render(config, "mail", "email", person=evil, unsubscribe_url="https://u/?a=1&b=2")
    assert result.body == "Hi <script>alert(1)</script> & co"
    assert result.html == (
        "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"
        '<a href="https://u/?a=1&amp;b=2">x</a>'
    )


def test_html_is_only_used_in_the_language_of_the_text(ws: Path, config: Config) -> None:
    write(
        ws,
        "mail",
        {
            "email.j2": "Subject: en\n\nen",
            "email.html.j2": "<p>en</p>",
            "email.nl.j2": "Subject: nl\n\nnl",
            "email.de.j2": "Subject: de\n\nde",
            "email.de.html.j2": "<p>de</p>",
        },
    )
    assert render(config, "mail", "email", person=customer(locale="en")).html == "<p>en</p>"
    dutch = render(config, "mail", "email", person=customer(locale="nl-NL"))
    assert (dutch.subject, dutch.html) == ("nl", None)
    assert render(config, "mail", "email", person=customer(locale="de-AT")).html == "<p>de</p>"


# --- errors -----------------------------------------------------------------------------


def test_unknown_variable_names_file_line_variable_and_customer(ws: Path, config: Config) -> None:
    write(ws, "typo", {"sms.j2": "Hi {{ customer.name }},\n\nyour plan: {{ customer.plann }}"})
    with pytest.raises(RenderError) as err:
        render(config, "typo", "sms", person=customer(id="C-42"))
    message = str(err.value)
    assert message.startswith("templates/typo/sms.j2:3: unknown variable customer.plann")
    assert "did you mean customer.plan?" in message
    assert "(customer C-42)" in message
    assert (err.value.source, err.value.line, err.value.customer_id) == (
        "templates/typo/sms.j2",
        3,
        "C-42",
    )


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ custmer.name }}", "unknown variable custmer"),
        ("{{ survey.question }}", "unknown variable survey.question (survey is not set"),
        ("{{ event.order_id }}", "unknown variable event"),
        ("{% if %}", "syntax error"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_render_problems_become_template_errors(
    ws: Path, config: Config, source: str, problem: str
) -> None:
    write(ws, "bad", {"sms.j2": source})
    with pytest.raises(RenderError) as err:
        render(config, "bad", "sms")
    assert problem in str(err.value)
    assert str(err.value).startswith("templates/bad/sms.j2:1: ")


def test_extra_values_reach_the_template(ws: Path, config: Config) -> None:
    write(ws, "shipped", {"sms.j2": "{{ event.order_id }} {{ campaign.kind }} {{ sender }}"})
    result = render(
        config,
        "shipped",
        "sms",
        extra={"event": {"order_id": "A-1"}},
        campaign={"name": "x", "kind": "notification"},
    )
    assert result.body == "A-1 notification Acme"
    with pytest.raises(RenderError, match=r"unknown variable event\.order; did you mean"):
        write(ws, "shipped2", {"sms.j2": "{{ event.order }}"})
        render(config, "shipped2", "sms", extra={"event": {"order_id": "A-1"}})


def test_a_column_named_like_a_dict_method_is_the_column(ws: Path, config: Config) -> None:
    """Customer attributes are columns of the import: one called ``items`` or ``values``
    is what the template means by ``customer.items``, not the mapping's method."""
    source = "{{ customer.items }} / {{ customer.values }} / {{ customer.plan }}"
    write(ws, "order", {"sms.j2": source})
    person = customer(items="3 books", values="honesty")
    assert render(config, "order", "sms", person=person).body == "3 books / honesty / pro"


# --- sandbox and limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ ''.__class__.__mro__ }}", "sandbox violation"),
        ("{{ customer.__class__.__subclasses__() }}", "sandbox violation"),
        ("{{ cycler.__init__.__globals__ }}", "unknown variable cycler"),
        ("{{ range.__globals__ }}", "sandbox violation"),
        ("{% set l = [1] %}{{ l.append(2) }}", "sandbox violation"),
        ("{{ customer.update({'id': 'x'}) }}", "sandbox violation"),
        ("{{ customer.items.__self__ }}", "sandbox violation"),
        ("{% include '/etc/passwd' %}", "include refused"),
        ("{% include '../outreach.toml' %}", "include refused"),
        ("{% include 'x/../../outreach.toml' %}", "include refused"),
        ("{% set ns = namespace(s='x') %}", "unknown variable namespace"),
    ],
)
def test_sandbox_refuses_escapes(ws: Path, config: Config, source: str, problem: str) -> None:
    write(ws, "evil", {"sms.j2": source})
    with pytest.raises(RenderError) as err:
        render(config, "evil", "sms")
    assert problem in str(err.value)
    assert "root:" not in str(err.value)


def test_include_through_a_symlink_out_of_templates_is_refused(ws: Path, config: Config) -> None:
    (ws / "secret.txt").write_text("s3cret", encoding="utf-8")
    write(ws, "evil", {"sms.j2": "{% include 'evil/link.j2' %}"})
    os.symlink(ws / "secret.txt", ws / "templates" / "evil" / "link.j2")
    with pytest.raises(RenderError, match="outside templates") as err:
        render(config, "evil", "sms")
    assert "s3cret" not in str(err.value)


def test_includes_inside_templates_work(ws: Path, config: Config) -> None:
    write(ws, "_partials", {"footer.j2": "-- {{ sender }}"})
    write(ws, "inc", {"sms.j2": "Hi{% include '_partials/footer.j2' %}"})
    assert render(config, "inc", "sms").body == "Hi-- Acme"


@pytest.mark.parametrize(
    "source",
    [
        # loops that produce nothing but never end in practice
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set r = range(9000)|list %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
        # a macro that calls itself twice per level
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
    ],
)
def test_renders_that_never_end_are_stopped(ws: Path, config: Config, source: str) -> None:
    write(ws, "slow", {"sms.j2": source})
    started = time.perf_counter()
    with pytest.raises(RenderError, match=r"templates/slow/sms.j2:1: limit: rendering took"):
        render(config, "slow", "sms")
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}some words that repeat {% endfor %}",
        "{{ 'x' * 1000000000 }}",
        "{{ ['x'] * 1000000000 }}",
        "{{ 7 ** 123456789 }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ ('x' * 60000).replace('x', 'yyyyyy') }}",
        "{{ ('a\n' * 30000)|indent(1000) }}",
        "{{ ('\t' * 60000).expandtabs(5000) }}",
        "{% macro f(n) %}{{ 'x' * 40000 }}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
        "{% endmacro %}{{ f(30) }}",
    ],
)
def test_output_that_explodes_is_refused(ws: Path, config: Config, source: str) -> None:
    write(ws, "big", {"sms.j2": source})
    started = time.perf_counter()
    with pytest.raises(RenderError) as err:
        render(config, "big", "sms")
    assert time.perf_counter() - started < 3
    assert any(word in str(err.value) for word in ("larger than", "too large", "over"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'Order 12345: %s'|format(customer.plan) }}", "Order 12345: pro"),
        ("{{ '{:,}'.format(1234567) }}", "1,234,567"),
        ("{{ '%05d' % 42 }}", "00042"),
        ("{{ 'ab'.center(6, '*') }}", "**ab**"),
        ("{{ 'a-b'.replace('-', ' to ') }}", "a to b"),
        ("{% for i in range(3) %}{{ loop.index }}{% else %}none{% endfor %}", "123"),
        ("{% for i in [] %}x{% else %}none{% endfor %}", "none"),
        ("{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}", "a=1"),
    ],
)
def test_ordinary_formatting_is_not_mistaken_for_an_attack(
    ws: Path, config: Config, source: str, expected: str
) -> None:
    write(ws, "fine", {"sms.j2": source})
    assert render(config, "fine", "sms").body == expected


def test_a_message_just_under_the_output_limit_renders(ws: Path, config: Config) -> None:
    write(ws, "long", {"sms.j2": "{{ 'x' * n }}"})
    body = render(config, "long", "sms", extra={"n": MAX_OUTPUT_CHARS}).body
    assert len(body) == MAX_OUTPUT_CHARS


def test_broken_utf8_names_file_and_line(ws: Path, config: Config) -> None:
    write(ws, "latin", {"sms.j2": "Hallo\nCaf\xe9 {{ sender }}\n".encode("latin-1")})
    with pytest.raises(RenderError) as err:
        render(config, "latin", "sms")
    assert str(err.value).startswith("templates/latin/sms.j2:2: not valid UTF-8 (byte 0xe9)")
    assert "save the file as UTF-8" in str(err.value)


# --- filters and context ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Anna de Vries", "Anna"),
        ("  bo  ", "bo"),
        ("de Vries, Anna", "Anna"),
        ("", "there"),
        (None, "there"),
    ],
)
def test_first_name(ws: Path, config: Config, name: str | None, expected: str) -> None:
    write(ws, "fn", {"sms.j2": "{{ customer.name|first_name('there') }}"})
    assert render(config, "fn", "sms", person=customer(name=name)).body == expected


@pytest.mark.parametrize(
    ("locale", "zone", "source", "expected"),
    [
        ("nl-NL", "Europe/Amsterdam", "{{ now|date('long') }}", "1 december 2026, 10:30:00 CET"),
        ("en-GB", "Europe/London", "{{ now|date('long') }}", "1 December 2026, 09:30:00 GMT"),
        (
            "nl-NL",
            "Europe/Amsterdam",
            "{{ now|date(\"EEEE d MMMM 'om' HH:mm\") }}",
            "dinsdag 1 december om 10:30",
        ),
        ("en-US", "America/New_York", "{{ now|date('EEEE h:mm a') }}", "Tuesday 4:30 AM"),
        ("nl-NL", "Europe/Amsterdam", "{{ '2026-12-24'|date('d MMMM') }}", "24 december"),
        ("nl-NL", "Europe/Amsterdam", "{{ 1234.5|money('EUR') }}", "€ 1.234,50"),
        ("en-GB", "Europe/London", "{{ 1234.5|money('EUR') }}", "€1,234.50"),
        ("en-US", "America/New_York", "{{ '19.99'|money('usd') }}", "$19.99"),
    ],
)
def test_date_and_money_use_the_customers_locale_and_zone(
    ws: Path, config: Config, locale: str, zone: str, source: str, expected: str
) -> None:
    write(ws, "fmt", {"sms.j2": source})
    person = customer(locale=locale, timezone=zone)
    body = render(config, "fmt", "sms", person=person).body
    assert body.replace("\u202f", " ").replace("\xa0", " ") == expected


def test_now_is_the_customers_local_time_and_zone_falls_back_to_workspace(
    ws: Path, config: Config
) -> None:
    write(ws, "clock", {"sms.j2": "{{ now.hour }}:{{ now.minute }} {{ now.tzinfo }}"})
    assert render(config, "clock", person=customer(timezone="Asia/Tokyo")).body == (
        "18:30 Asia/Tokyo"
    )
    assert render(config, "clock", person=customer(timezone=None)).body == (
        "10:30 Europe/Amsterdam"
    )


# --- SMS segments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 0)),
        ("Hello", ("GSM-7", 1)),
        ("x" * 160, ("GSM-7", 1)),
        ("x" * 161, ("GSM-7", 2)),
        ("x" * 306, ("GSM-7", 2)),
        ("x" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # extension table: two septets each
        ("€" * 81, ("GSM-7", 2)),
        ("x" * 152 + "€" + "x" * 10, ("GSM-7", 2)),  # € does not straddle segments
        ("{[]}~^|\\" * 10, ("GSM-7", 1)),
        ("{[]}~^|\\" * 10 + "x", ("GSM-7", 2)),
        ("Café Ä ñ ü à", ("GSM-7", 1)),
        ("ç", ("UCS-2", 1)),  # lower-case ç is not GSM-7 (only Ç is)
        ("x" * 69 + "ł", ("UCS-2", 1)),
        ("x" * 70 + "ł", ("UCS-2", 2)),
        ("😀" * 35, ("UCS-2", 1)),  # astral: two UTF-16 units each
        ("😀" * 36, ("UCS-2", 2)),
        ("x" * 66 + "😀" + "x" * 10, ("UCS-2", 2)),  # surrogate pair not split
        ("y" * 134 + "—", ("UCS-2", 3)),
    ],
)
def test_sms_segments(text: str, expected: tuple[str, int]) -> None:
    assert sms_segments(text) == expected


# --- the shipped examples ---------------------------------------------------------------

EXAMPLES = (
    "nps",
    "csat",
    "order_shipped",
    "product_update",
    "nps_thanks",
    "csat_thanks",
    "stop_confirmation",
    "start_confirmation",
    "help",
    "out_of_hours",
)


def test_example_templates_render_on_every_channel_in_english_and_dutch(
    ws: Path, config: Config
) -> None:
    results = check_templates(config, [customer(), customer(id="C-2", locale="en-GB")], now=NOW)
    assert [r.errors for r in results if r.errors] == []
    pairs = {(r.template, r.channel) for r in results}
    assert pairs == {(n, c) for n in EXAMPLES for c in ("email", "sms", "whatsapp")}
    for r in results:
        if r.channel == "sms":
            assert (r.encoding, r.segments) == ("GSM-7", 1), r.template
        if r.channel == "email":
            assert {s.rsplit("/", 1)[1] for s in r.sources} == {
                "email.j2",
                "email.nl.j2",
                "email.html.j2",
                "email.html.nl.j2",
            }


def test_example_email_has_unsubscribe_footer_only_when_a_link_is_set(
    config: Config,
) -> None:
    survey = {"question": "How likely are you to recommend Acme?", "type": "nps"}
    renderer = Renderer(config)
    with_link = renderer.render(
        "nps",
        "email",
        customer(),
        survey=survey,
        now=NOW,
        unsubscribe_url="https://hooks.example.com/unsubscribe/t0k",
    )
    without = renderer.render("nps", "email", customer(), survey=survey, now=NOW)
    assert with_link.subject == "Anna, zou je Acme aanbevelen?"
    assert "https://hooks.example.com/unsubscribe/t0k" in with_link.body
    assert "https://hooks.example.com/unsubscribe/t0k" in (with_link.html or "")
    assert "Afmelden" not in without.body and "unsubscribe" not in (without.html or "")
    assert with_link.source == "templates/nps/email.nl.j2"


def test_example_out_of_hours_formats_next_opening_in_the_customers_language(
    config: Config,
) -> None:
    opening = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday
    renderer = Renderer(config)
    nl = renderer.render(
        "out_of_hours", "sms", customer(), now=NOW, extra={"next_opening": opening}
    )
    en = renderer.render(
        "out_of_hours",
        "sms",
        customer(locale="en-GB", timezone="Europe/London"),
        now=NOW,
        extra={"next_opening": opening},
    )
    assert "maandag om 09:00" in nl.body
    assert "Monday at 08:00" in en.body


# --- header values from data --------------------------------------------------------------

BREAKING = "Ann\r\nBcc: x@example.com\x1c\x85\u2028\x00end"


@pytest.mark.parametrize(
    ("source", "subject", "preheader"),
    [
        ("Subject: Hi {{ customer.name }}\n\nbody", "Hi Ann Bcc: x@example.com end", None),
        (
            "\n{% if customer.plan %}\nSubject: {{ customer.name|upper }}\n{% endif %}\n"
            "Preheader: {% for p in [customer.name] %}{{ p }}{% endfor %}\n\n\nbody",
            "ANN BCC: X@EXAMPLE.COM END",
            "Ann Bcc: x@example.com end",
        ),
        (
            "{% macro who() %}{{ customer.name }}{% endmacro %}Subject: {{ who() }}\n\nbody",
            "Ann Bcc: x@example.com end",
            None,
        ),
        (
            "{% set b %}\n\nNote{% endset %}Subject: {{ customer.name }}\n\nbody",
            "Ann Bcc: x@example.com end",
            None,
        ),
    ],
)
def test_values_printed_in_header_lines_are_single_line(
    ws: Path, config: Config, source: str, subject: str, preheader: str | None
) -> None:
    write(ws, "hdr", {"email.j2": source})
    result = render(config, "hdr", "email", person=customer(name=BREAKING))
    assert (result.subject, result.preheader, result.body) == (subject, preheader, "body")


def test_values_in_the_text_keep_their_line_breaks(ws: Path, config: Config) -> None:
    write(
        ws,
        "hdr",
        {
            "email.j2": "Subject: Hi\n\nNote: {{ customer.name }}",
            "sms.j2": "Note: {{ customer.name }}\n\n{{ customer.name }}",
        },
    )
    person = customer(name="two\nlines")
    assert render(config, "hdr", "email", person=person).body == "Note: two\nlines"
    # a channel without headers: only the first paragraph's "Name:" lines are single-line
    assert render(config, "hdr", "sms", person=person).body == "Note: two lines\n\ntwo\nlines"


# --- nothing a template reaches is mutable ------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ dict.update(customer, name='MUTATED') }}{{ customer.name }}",
        "{{ dict.setdefault(customer, 'plan', 'MUTATED') }}",
        "{{ customer.update(name='MUTATED') }}",
        "{{ dict.__setitem__(customer, 'name', 'MUTATED') }}",
        "{{ customer.pop('name') }}",
        "{% set acc = [] %}{% for i in range(3) %}{{ acc.append(i) }}{% endfor %}{{ acc }}",
        "{% set d = dict(a=1) %}{{ d.update(a=2) }}{{ d }}",
        "{{ list.append(survey.choices, 'MUTATED') }}",
    ],
)
def test_a_template_cannot_change_what_it_is_given(ws: Path, config: Config, source: str) -> None:
    write(ws, "mut", {"sms.j2": source, "email.j2": "Subject: x\n\n{{ customer.name }}"})
    person = customer()
    survey = {"question": "Q?", "choices": ["a"]}
    renderer = Renderer(config)
    with pytest.raises(RenderError):
        renderer.render("mut", "sms", person, survey=survey, now=NOW)
    assert person["name"] == "Anna de Vries" and survey == {"question": "Q?", "choices": ["a"]}
    # the next render, of any template, sees the data as it was given
    assert renderer.render("mut", "email", person, now=NOW).body == "Anna de Vries"


def test_dict_in_a_template_still_builds_a_mapping(ws: Path, config: Config) -> None:
    write(ws, "d", {"sms.j2": "{% set d = dict(a=1, b=2) %}{{ d.a }}{{ d['b'] }}{{ d|length }}"})
    assert render(config, "d", "sms").body == "122"
