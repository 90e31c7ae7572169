"""Only what the sender wrote now: quoted history and signatures removed from a reply.

``mail-parser-reply`` splits a body at the attribution lines of many mail clients and
languages ("On … wrote:", "Op … schreef:", Outlook's "From:/Sent:" and "Van:/Verzonden:"
blocks, "-----Original Message-----") and removes signatures and "Sent from my …"; the
first part is the new text. Two things it does not do are added here: the Dutch forms that
name the writer ("Op … schreef Anna <anna@…>:", Apple Mail's "Op … heeft … het volgende
geschreven:"), and ``>`` lines without any attribution (a bottom-posted answer under a
quote keeps only the answer).
"""

from __future__ import annotations

import re
from functools import lru_cache

from mailparser_reply import EmailReplyParser

LANGUAGES = ("en", "nl", "de", "fr")
# attribution lines mail-parser-reply misses; a Gmail line may wrap once, inside <address>
_EXTRA_HEADERS = re.compile(
    r"^[ \t]*(?:"
    r"Op\s[^\n]{1,200}?(?:\n[^\n]{0,200}?)?\sschreef\s[^\n]{0,200}?(?:\n[^\n]{0,200}?)?:"
    r"|Op\s[^\n]{1,200}?(?:\n[^\n]{0,200}?)?\sheeft\s[^\n]{0,200}?het\svolgende\sgeschreven:"
    r")[ \t]*$",
    re.MULTILINE,
)
_QUOTED = re.compile(r"^[ \t]*>")


@lru_cache(maxsize=1)
def _parser() -> EmailReplyParser:
    return EmailReplyParser(languages=list(LANGUAGES))


def new_text(body: str) -> str:
    """The part of ``body`` the sender wrote now; ``body`` itself when nothing is left."""
    text = body.replace("\r\n", "\n")
    cut = _EXTRA_HEADERS.search(text)
    if cut is not None:
        # top-posted: the history starts here; bottom-posted: the line itself goes
        before = text[: cut.start()]
        text = before if before.strip() else text[cut.end() :]
    message = _parser().read(text)
    parts = [reply.body for reply in message.replies]
    first = next((p for p in parts if _unquoted(p)), "")
    kept = _unquoted(first)
    return kept or body.strip()


def _unquoted(text: str) -> str:
    lines = [line for line in text.split("\n") if not _QUOTED.match(line)]
    return "\n".join(lines).strip()
