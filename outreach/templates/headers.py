"""Values printed in an email template's header lines stay on one line.

An email template starts with header lines (``Subject: {{ customer.name }}``), a blank
line, then the text. A value from data holding a line break would end the header line
early and start another (``Bcc: …``), or a blank line that ends the headers. So, when a
template is compiled, every expression printed on a line that starts like a header
(``Name:``), before the first blank line, is wrapped in ``single_line``: line breaks and
other control characters become one space. Expressions in the text are untouched, and
the wrapping costs nothing at render time for them.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import nodes

HEADER_FILTER = "outreach_header_value"
_HEADER_START = re.compile(r"[ \t]*[A-Za-z][A-Za-z-]*[ \t]*:")
# C0 and C1 controls (CR, LF, tab, NUL, NEL, …) and the Unicode line/paragraph separators:
# everything str.splitlines() or a mail header would take as a line end.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def single_line(value: Any) -> Any:
    """``value`` with each run of control characters replaced by one space."""
    if isinstance(value, str) and not value.isprintable():
        return _CONTROLS.sub(" ", value)
    return value


def mark_header_values(tree: nodes.Template) -> None:
    """Wrap the expressions printed on header lines of ``tree`` in ``single_line``."""
    _Scan().walk(tree.body)


class _Scan:
    """Walks output in source order until the first blank line, as ``parse_email`` reads."""

    def __init__(self) -> None:
        self.line = ""  # literal text of the output line so far
        self.seen = False  # leading blank lines do not end the headers
        self.ended = False

    def walk(self, body: list[nodes.Node]) -> None:
        for node in body:
            if self.ended:
                return
            if isinstance(node, nodes.Output):
                self._output(node)
            elif isinstance(node, nodes.Macro | nodes.CallBlock | nodes.AssignBlock):
                continue  # a definition or {% set %} block prints nothing where it stands
            else:
                # if/for/with/filter blocks: their bodies in source order
                self.walk([c for c in node.iter_child_nodes() if isinstance(c, nodes.Stmt)])

    def _output(self, node: nodes.Output) -> None:
        for index, child in enumerate(node.nodes):
            if isinstance(child, nodes.TemplateData):
                self._text(child.data)
            else:
                if _HEADER_START.match(self.line):
                    node.nodes[index] = nodes.Filter(
                        child, HEADER_FILTER, [], [], None, None, lineno=child.lineno
                    )
                self.line += "\x00"  # the value is on this line, whatever it prints
                self.seen = True
            if self.ended:
                return

    def _text(self, data: str) -> None:
        first, *rest = data.split("\n")
        self.line += first
        self.seen = self.seen or bool(first.strip())
        for part in rest:
            if not self.line.strip() and self.seen:
                self.ended = True
                return
            self.line = part
            self.seen = self.seen or bool(part.strip())
