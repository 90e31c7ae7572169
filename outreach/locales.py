"""BCP 47 language tags as outreach stores and looks them up: ``nl_be`` → ``nl-BE``.

Tags come from files written by people and by programs, so two other spellings are read
too: a POSIX locale name (``en_US.UTF-8``, ``sr_RS@latin``) becomes its BCP 47 tag
(``en-US``, ``sr-Latn-RS``), and extensions (``en-US-u-ca-buddhist``, ``-x-…``) are kept,
lower-cased, but play no part in finding a template or a translation.
"""

from __future__ import annotations

import functools
import re

# the POSIX @modifiers that name a script; any other (@euro, @valencia) is dropped
_POSIX_SCRIPTS = {"latin": "Latn", "cyrillic": "Cyrl", "devanagari": "Deva", "arabic": "Arab"}
_EXTENSIONS = re.compile(r"(?:-[0-9a-wyz](?:-[0-9a-z]{2,8})+)*(?:-x(?:-[0-9a-z]{1,8})+)?")


def normalize_locale(tag: str | None) -> str | None:
    """``nl_be`` / ``NL-be`` → ``nl-BE``, keeping what was written (no likely-subtag
    expansion) in canonical case; ``en_US.UTF-8`` → ``en-US``; None or blank → None."""
    if not tag or not str(tag).strip():
        return None
    text, _, modifier = str(tag).strip().partition("@")
    text = text.split(".", 1)[0]  # a POSIX codeset: en_US.UTF-8
    parts = re.split(r"[-_]", text)
    out = [parts[0].lower()]
    script = _POSIX_SCRIPTS.get(modifier.lower())
    if script and not (len(parts) > 1 and len(parts[1]) == 4 and parts[1].isalpha()):
        out.append(script)
    extension = False
    for part in parts[1:]:
        if extension or len(part) == 1:
            extension = True  # after a singleton (u, t, x) every subtag is lower case
            out.append(part.lower())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())  # script: Latn
        elif len(part) == 2 or part.isdigit():
            out.append(part.upper())  # region: BE, 419
        else:
            out.append(part)
    return "-".join(out)


def split_extensions(tag: str) -> tuple[str, str]:
    """A normalised tag → (language, script, region and variants; the extensions)."""
    match = re.search(r"-[0-9a-z](?:-|$)", tag)
    if match is None:
        return tag, ""
    return tag[: match.start()], tag[match.start() :]


def valid_extensions(extensions: str) -> bool:
    """Whether ``-u-ca-buddhist``-style extensions are well formed (RFC 5646 §2.2.6)."""
    return _EXTENSIONS.fullmatch(extensions) is not None


@functools.lru_cache(maxsize=1024)
def locale_chain(tag: str | None) -> tuple[str, ...]:
    """``nl-BE`` → (``nl-BE``, ``nl``): most specific first, extensions left out.

    Remembered per tag: a send asks it for every message (its template, its survey
    question), of customers who share a few locales."""
    norm = normalize_locale(tag)
    if norm is None:
        return ()
    parts = split_extensions(norm)[0].split("-")
    return tuple("-".join(parts[:n]) for n in range(len(parts), 0, -1))
