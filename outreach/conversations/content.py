"""What a message that is not plain text carried, in one line for a person to read.

Inbound messages keep their ``kind`` (image, location, contacts, reaction, revoke, ...)
and, as ``details``, what that kind carries (see ``channels.base``); a transcript shows
them as ``[image image/jpeg https://…]`` or ``[location 52.3676, 4.9041 Acme HQ]``, so an
agent sees what arrived without mistaking it for something the customer wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe(kind: str | None, details: Mapping[str, Any] | None) -> str | None:
    """``[what arrived]`` for a message of ``kind``; None for text."""
    details = details or {}
    if not kind or kind in ("text", "button", "interactive"):
        return None
    if "media" in details:
        parts = [
            " ".join(
                str(p)
                for p in (
                    m.get("type"),
                    m.get("content_type"),
                    m.get("filename"),
                    m.get("url") or m.get("id"),
                )
                if p
            )
            for m in details["media"]
        ]
        return "; ".join(f"[{p}]" for p in parts)
    if kind == "location":
        place = details.get("location") or {}
        where = f"{place.get('latitude')}, {place.get('longitude')}"
        named = " ".join(str(place[k]) for k in ("name", "address") if place.get(k))
        return f"[location {where}{' ' + named if named else ''}]"
    if kind == "contacts":
        cards = [
            " ".join([c.get("name") or "", *c.get("phones", []), *c.get("emails", [])]).strip()
            for c in details.get("contacts") or []
        ]
        return "[contact " + "; ".join(cards) + "]"
    if kind == "reaction":
        emoji = details.get("reaction")
        return f"[reacted {emoji}]" if emoji else "[took a reaction back]"
    if kind == "revoke":
        return "[deleted a message]"
    if kind == "edit":
        return "[edited a message]"
    if kind == "number_change":
        return f"[number changed from {details.get('old')} to {details.get('new')}]"
    return f"[{details.get('type') or kind}]"
