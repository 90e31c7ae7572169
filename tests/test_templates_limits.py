"""A template cannot take the machine: every payload ends in a clean template error.

Each payload is rendered in a child process whose address space is capped (RLIMIT_AS), so
a payload that escapes the limits fails with a MemoryError in the child instead of
swapping the machine; ``tracemalloc`` measures what each render allocated at its peak.
All payloads share one child (one interpreter start-up, not forty).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.errors import RenderError
from outreach.templates.render import Renderer

S = "{% set s = 'x' * 60000 %}"  # a value just under the limit of one value
PAYLOADS = {
    "nested repetition": "{{ [[0]*65536]*65536 }}",
    "nested repetition, str": "{{ [['x' * 60000] * 1000] * 1000 }}",
    "doubling with ~": "{% set s = 'xxxxxxxx' %}" + "{% set s = s ~ s %}" * 18 + "{{ s|length }}",
    "doubling with +": "{% set s = 'xxxxxxxx' %}" + "{% set s = s + s %}" * 18 + "{{ s|length }}",
    "doubling a list": "{% set s = [1] %}" + "{% set s = s + s %}" * 24 + "{{ s|length }}",
    "nesting a list": "{% set s = [0] %}" + "{% set s = [s, s] %}" * 30 + "{{ s }}",
    "nesting a dict": "{% set s = {} %}" + "{% set s = {'a': s, 'b': s} %}" * 30 + "{{ s }}",
    "squaring a number": "{% set n = 9 ** 1000 %}" + "{% set n = n * n %}" * 18 + "{{ n > 1 }}",
    "macro that calls itself": "{% macro m(n) %}{{ 'x' * 60000 }}{{ m(n + 1) }}{% endmacro %}"
    "{{ m(0) }}",
    "macro with a loop": "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 60000 }}"
    "{% endfor %}{% endmacro %}{{ m() }}",
    "macro, exponential": "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% else %}"
    "{{ 'x' * 60000 }}{% endif %}{% endmacro %}{{ m(30) }}",
    "set block with a loop": "{% set b %}{% for i in range(100000) %}{{ 'x' * 60000 }}"
    "{% endfor %}{% endset %}{{ b|length }}",
    "filter block with a loop": "{% filter upper %}{% for i in range(100000) %}"
    "{{ 'x' * 60000 ~ i }}{% endfor %}{% endfilter %}",
    "many live values": S + "".join(f"{{% set v{i} = s ~ {i} %}}" for i in range(300)),
    "long concatenation": S + "{{ " + " ~ ".join(["s"] * 300) + " }}",
    "long list literal": S + "{{ [" + ", ".join(["s"] * 300) + "] }}",
    "big range as list": "{{ range(100000)|list|length }}",
    "big range mapped": "{{ range(100000)|map('string')|list|length }}",
    "big range": "{{ range(10 ** 9)|length }}",
    "join with a big separator": S + "{{ range(10000)|join(s) }}",
    "str.join with a big separator": S + "{{ s.join(s) }}",
    "join of a big list": S + "{{ ([s] * 1)|join }}{{ [s, s, s, s]|join }}",
    "format repeating a value": S + "{{ ('%s' * 1000) % ((s,) * 1000) }}",
    "format by name": S + "{{ ('%(a)s' * 1000) % {'a': s} }}",
    "str.format repeating a value": S + "{{ ('{0}' * 1000).format(s) }}",
    "format filter": S + "{{ ('%s' * 1000)|format(*([s] * 1000)) }}",
    "wordwrap": S + "{{ s|wordwrap(1, wrapstring=s) }}",
    "batch fill": S + "{{ [1]|batch(10000, s)|list }}",
    "slice fill": S + "{{ range(10000)|slice(10000, s)|list }}",
    "escape chain": "{% set s = '&' * 60000 %}{{ s|e|e|e|e|e|e|e|e|e|e }}",
    "list and string chain": S + "{{ s|list|string|list|string|list|string|length }}",
    "tojson of a big list": S + "{{ ([s] * 1000)|tojson }}",
    "translate": S + "{{ s.translate({120: s}) }}",
    "output in a loop": S + "{% for i in range(100000) %}{{ s ~ i }}{% endfor %}",
    "html escape in a loop": "{% set s = '<' * 60000 %}{% for i in range(100000) %}"
    "{{ s|e|e }}{% endfor %}",
    "dict of big values": S + "{{ dict(a=s, b=s, c=s, d=s) }}",
    "split into many items": "{{ ('a ' * 30000).split() * 100 }}",
    "repeating bytes": S + "{{ s.encode('utf-32') * 60000 }}",
    "tojson indent": "{{ range(5000)|list|tojson(indent=1000000) }}",
    "urlize target": S + "{{ ('a.b ' * 10000)|urlize(target=s) }}",
    # rendered as the HTML part of an email: every {{ }} is escaped on output
    "html: autoescape in a loop": "{% set s = '<' * 60000 %}{% for i in range(100000) %}"
    "{{ s }}{% endfor %}",
    "html: markup joined with ~": "{% set s = '<' * 20000 %}{{ ('<b>'|safe) ~ s ~ s ~ s }}",
}

CHILD = r"""
import json, resource, sys, time, tracemalloc
from pathlib import Path
from outreach.config import load_config
from outreach.errors import RenderError
from outreach.templates.render import Renderer

ws, payloads = Path(sys.argv[1]), json.loads(sys.stdin.read())
channels = {}
for index, (name, source) in enumerate(payloads.items()):
    folder = ws / "templates" / f"attack{index}"
    folder.mkdir(parents=True, exist_ok=True)
    if name.startswith("html:"):
        (folder / "email.j2").write_text("Subject: x\n\ntext", encoding="utf-8")
        (folder / "email.html.j2").write_text(source, encoding="utf-8")
        channels[name] = "email"
    else:
        (folder / "sms.j2").write_text(source, encoding="utf-8")
(ws / "templates" / "warm").mkdir(exist_ok=True)
(ws / "templates" / "warm" / "sms.j2").write_text("{{ now|date }} {{ 'a' ~ 1 }}")
renderer = Renderer(load_config(ws))
customer = {"id": "C-1", "name": "Ann", "email": "ann@example.com"}
renderer.render("warm", "sms", customer)  # imports and caches filled before the cap
with open("/proc/self/status") as status:
    size = next(int(l.split()[1]) for l in status if l.startswith("VmSize:")) * 1024
cap = size + 512 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
tracemalloc.start()
for index, name in enumerate(payloads):
    channel = channels.get(name, "sms")
    try:
        renderer.compile(f"attack{index}/{'email.html' if channel == 'email' else 'sms'}.j2")
    except RenderError:
        pass
    print(json.dumps({"started": name}), flush=True)
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        body = renderer.render(f"attack{index}", channel, customer).body
        outcome = {"rendered": len(body)}
    except RenderError as exc:
        outcome = {"error": str(exc)}
    except BaseException as exc:
        outcome = {"crash": f"{type(exc).__name__}: {exc}"[:300]}
    outcome["seconds"] = time.perf_counter() - started
    outcome["peak"] = tracemalloc.get_traced_memory()[1] - before
    print(json.dumps({name: outcome}), flush=True)
"""


def test_every_payload_ends_in_a_template_error_within_a_few_mb_and_the_deadline(
    ws: Path,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ws)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(json.dumps(PAYLOADS), timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        err = "timed out; " + err
    results: dict[str, dict[str, object]] = {}
    for line in out.splitlines():
        results.update(json.loads(line))
    problems = []
    for name in PAYLOADS:
        outcome = results.get(name)
        if outcome is None:
            problems.append(f"{name}: the child died while rendering it ({err.strip()[-300:]})")
            break
        if "error" not in outcome:
            problems.append(f"{name}: {outcome}")
        elif outcome["peak"] > 8 * 1024 * 1024:  # type: ignore[operator]
            problems.append(f"{name}: allocated {outcome['peak']:,} bytes at its peak")
        elif outcome["seconds"] > 2:  # type: ignore[operator]
            problems.append(f"{name}: took {outcome['seconds']:.1f} s")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        "{% set s = 'x' * 30000 %}{{ s ~ s }}",
        "{{ range(1000)|map('string')|join(', ') }}",
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ n }}{% endif %}{% endmacro %}{{ m(50) }}",
        "{{ ([1, 2, 3] * 1000)|sum }}{{ {'a': [1, 2], 'b': (3, 4)}|tojson }}",
        "{% for row in range(100)|batch(10, 0) %}{{ row|join('') }}{% endfor %}",
        "{{ '%s and %s' % ('a', 'b') }}{{ '{} {}'.format(1, 2) }}{{ 'x'|center(80) }}",
    ],
)
def test_ordinary_templates_stay_within_the_limits(ws: Path, source: str) -> None:
    folder = ws / "templates" / "fine"
    folder.mkdir(parents=True)
    (folder / "sms.j2").write_text(source, encoding="utf-8")
    renderer = Renderer(load_config(ws))
    assert renderer.render("fine", "sms", {"id": "C-1"}).body


def test_a_limit_is_a_template_error_naming_file_and_line(ws: Path) -> None:
    folder = ws / "templates" / "big"
    folder.mkdir(parents=True)
    (folder / "sms.j2").write_text("Hi\n{{ [[0]*65536]*65536 }}", encoding="utf-8")
    with pytest.raises(RenderError, match=r"templates/big/sms.j2:2: limit: .*too large"):
        Renderer(load_config(ws)).render("big", "sms", {"id": "C-1"})
