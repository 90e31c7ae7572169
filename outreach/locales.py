"""BCP 47 language tags as outreach stores and looks them up: ``nl_be`` → ``nl-BE``."""

from __future__ import annotations

import re


def normalize_locale(tag: str | None) -> str | None:
    """``nl_be`` / ``NL-be`` → ``nl-BE``, keeping what was written (no likely-subtag
    expansion) in canonical case; None or blank → None."""
    if not tag or not str(tag).strip():
        return None
    parts = re.split(r"[-_]", str(tag).strip())
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # script: Latn
        elif len(part) == 2 or part.isdigit():
            out.append(part.upper())  # region: BE, 419
        else:
            out.append(part)
    return "-".join(out)


def locale_chain(tag: str | None) -> tuple[str, ...]:
    """``nl-BE`` → (``nl-BE``, ``nl``): most specific first."""
    norm = normalize_locale(tag)
    if norm is None:
        return ()
    parts = norm.split("-")
    return tuple("-".join(parts[:n]) for n in range(len(parts), 0, -1))
