"""What a transcript shows of an email besides its new text: automatic or not, the
attachments, a problem reading it, and (``conversations show --full``) the whole body."""

from __future__ import annotations

from typing import Any

from ..store import Store


def add_email_details(store: Store, shown: dict[str, Any], *, full: bool = False) -> None:
    """Give each stored email in ``shown`` (``show_conversation``'s result) an ``email``
    object; its ``full_text`` only when ``full``."""
    parts = store.mail.email_parts_of_customer(str(shown["customer_id"]))
    if not parts:
        return
    for message in shown["messages"]:
        if message["direction"] != "in":
            continue
        found = parts.get(f"{message['channel']}\x00{message['external_id']}")
        if found is None:
            continue
        details = {k: v for k, v in found.items() if full or k != "full_text"}
        message["email"] = details
