"""Built-in texts for the replies outreach sends by itself, for when a workspace has none.

A STOP must be confirmed, and START, HELP and the out-of-hours reply answered, on any
channel (``messenger``, ``app``, one added later) and in a workspace written by hand: when
``templates/NAME/`` has no file for the channel, these texts are rendered instead, in the
customer's language where there is one here (English otherwise). They are templates like
any other (same sandbox, filters and context), so an email gets ``Re: <subject>`` as its
subject (see ``Renderer.render``). ``templates check`` lists the channels that use them.
"""

from __future__ import annotations

from ..locales import locale_chain

BUILTIN_TEXTS: dict[str, dict[str, str]] = {
    "stop_confirmation": {
        "en": "{{ sender }}: you are unsubscribed and will get no more messages here. "
        "Reply START to subscribe again.",
        "nl": "{{ sender }}: je bent afgemeld en krijgt hier geen berichten meer. "
        "Antwoord START om je weer aan te melden.",
    },
    "start_confirmation": {
        "en": "{{ sender }}: welcome back! You will get our messages again. "
        "Reply STOP to unsubscribe, HELP for help.",
        "nl": "{{ sender }}: welkom terug! Je krijgt onze berichten weer. "
        "Antwoord STOP om je af te melden, HELP voor hulp.",
    },
    "help": {
        "en": "{% if help_text %}{{ help_text }}{% else %}{{ sender }}: reply STOP to "
        "unsubscribe, START to subscribe again.{% endif %}",
        "nl": "{% if help_text %}{{ help_text }}{% else %}{{ sender }}: antwoord STOP om je "
        "af te melden, START om je weer aan te melden.{% endif %}",
    },
    "out_of_hours": {
        "en": "Thanks for your message! Our team is away; an agent will answer from "
        "{{ next_opening|date(\"EEEE 'at' HH:mm\") }}. {{ sender }}",
        "nl": "Bedankt voor je bericht! Ons team is er nu niet; we antwoorden vanaf "
        "{{ next_opening|date(\"EEEE 'om' HH:mm\") }}. {{ sender }}",
    },
}
LANGUAGE_NAMES = {"en": "English", "nl": "Dutch"}


def builtin_language(name: str, locale: str | None) -> str:
    """The language of ``name``'s built-in text for a customer of ``locale`` (``en`` when
    none of theirs is here)."""
    texts = BUILTIN_TEXTS[name]
    for tag in locale_chain(locale):
        language = tag.split("-", 1)[0].lower()
        if language in texts:
            return language
    return "en"
