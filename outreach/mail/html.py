"""HTML-only mail → plain text with the standard library's ``html.parser``.

Not html2text (GPL-3.0, while outreach is MIT) nor BeautifulSoup (a parser tree for what is
a single streaming pass): a reply needs its words, line breaks and which part is quoted, not
its layout. Quoted history in HTML (``<blockquote>``, Gmail's ``gmail_quote``, Thunderbird's
``moz-cite-prefix``, Apple Mail's ``type="cite"``) becomes ``>`` lines, so the same quote
stripping as for plain text removes it; Outlook's "From: … Sent: …" block stays text, which
the quote stripper knows.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_BLOCK = frozenset(
    {
        "p",
        "div",
        "br",
        "tr",
        "li",
        "ul",
        "ol",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "hr",
        "section",
        "article",
        "header",
        "footer",
    }
)
_SKIP = frozenset({"script", "style", "head", "title", "template"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "protonmail_quote")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line: list[str] = []
        self.skip = 0
        self.depth = 0  # open elements, to know when a quoting element ends
        self.quotes: list[int] = []  # depths at which quoting elements opened

    def _break(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.line)).strip()
        self.line = []
        if text:
            self.lines.append("> " * len(self.quotes) + text)
        elif self.lines and self.lines[-1]:
            self.lines.append("")  # one blank line between blocks, never more

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if tag in _BLOCK:
            self._break()
        if tag in _VOID:
            return
        self.depth += 1
        values = dict(attrs)
        classes = values.get("class") or ""
        if (
            tag == "blockquote"
            or values.get("type") == "cite"
            or any(c in classes for c in _QUOTE_CLASSES)
        ):
            self.quotes.append(self.depth)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag in _VOID:
            return
        if tag in _BLOCK:
            self._break()
        while self.quotes and self.quotes[-1] >= self.depth:
            self.quotes.pop()
        self.depth = max(0, self.depth - 1)

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.line.append(data)


def html_to_text(markup: str) -> str:
    """The readable text of an HTML body, quoted parts as ``>`` lines."""
    parser = _Text()
    try:
        parser.feed(markup)
        parser.close()
    except (AssertionError, ValueError):  # html.parser's rare give-ups on broken markup
        return html.unescape(re.sub(r"<[^>]*>", " ", markup)).strip()
    parser._break()
    return "\n".join(parser.lines).strip()
