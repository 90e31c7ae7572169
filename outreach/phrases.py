"""The few fixed phrases outreach itself writes to customers, in their language.

Messages come from templates; what is left is outreach's own words: the unsubscribe page
and the subject of an agent's email reply when there is no email to answer. They are in
English and Dutch (the languages of the shipped templates), chosen by the customer's
locale, English otherwise.
"""

from __future__ import annotations

from .locales import locale_chain

PHRASES: dict[str, dict[str, str]] = {
    "unsubscribe_title": {"en": "Unsubscribe", "nl": "Afmelden"},
    "unsubscribe_question": {
        "en": "Stop receiving messages on {channel}?",
        "nl": "Geen berichten meer ontvangen via {channel}?",
    },
    "unsubscribe_button": {"en": "Unsubscribe", "nl": "Afmelden"},
    "unsubscribed_title": {"en": "Unsubscribed", "nl": "Afgemeld"},
    "unsubscribed_text": {
        "en": "You will get no more messages from {sender} on {channel}.",
        "nl": "Je krijgt geen berichten meer van {sender} via {channel}.",
    },
    "not_unsubscribed_title": {"en": "Not unsubscribed", "nl": "Niet afgemeld"},
    "not_unsubscribed_text": {
        "en": "Use the button on the unsubscribe page to confirm.",
        "nl": "Bevestig het met de knop op de afmeldpagina.",
    },
    "reply_subject": {"en": "your message to {sender}", "nl": "je bericht aan {sender}"},
}


def language(locale: str | None) -> str:
    """``nl`` for nl, nl-BE, nl_NL.UTF-8…; ``en`` for every language without phrases here."""
    for tag in locale_chain(locale):
        code = tag.split("-", 1)[0].lower()
        if code in PHRASES["unsubscribe_title"]:
            return code
    return "en"


def phrase(key: str, locale: str | None, **values: str) -> str:
    """The phrase ``key`` in the language of ``locale``, with ``values`` filled in."""
    return PHRASES[key][language(locale)].format(**values)
