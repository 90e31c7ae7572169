"""Keyword classification of inbound messages (README "How it keeps its promises": Consent).

A keyword is the *whole* message: ``stop``, `` STOP! `` and ``Stop all.`` are keywords,
``stop sending me surveys`` is not. Before comparing, surrounding spaces, punctuation and
symbols (emoji included) are removed, inner runs of spaces become one space, and case is
folded, so the configured lists (``config.keywords``: ``stop``, ``start``, ``help``, each the
defaults plus localized words) are compared in that same normal form.

A longer message that asks to stop in other words changes no consent on its own (a person
must confirm it the same day), so it is only *detected* here, by a small set of English and
Dutch phrase patterns: ``asks_to_stop``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

KeywordKind = Literal["stop", "start", "help"]
KINDS: tuple[KeywordKind, ...] = ("stop", "start", "help")

# Longer than this, a message is not a keyword (the longest default is "UNSUBSCRIBE").
_MAX_KEYWORD_CHARS = 40


@dataclass(frozen=True)
class KeywordMatch:
    """A message that is exactly one keyword: its kind and the word as configured."""

    kind: KeywordKind
    word: str


def normalize(text: str) -> str:
    """Case-folded text without surrounding punctuation, symbols or spaces."""
    start, end = 0, len(text)
    while start < end and not _is_word_char(text[start]):
        start += 1
    while end > start and not _is_word_char(text[end - 1]):
        end -= 1
    return " ".join(text[start:end].split()).casefold()


def _is_word_char(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char).startswith("M")


class KeywordTable:
    """The configured keyword lists, normalized once for fast whole-message lookup."""

    def __init__(self, keywords: Mapping[str, Sequence[str]]) -> None:
        self._words: dict[str, KeywordMatch] = {}
        # Earlier kinds win when a word is listed twice: an opt-out is never shadowed.
        for kind in KINDS:
            for word in keywords.get(kind, ()):
                key = normalize(word)
                if key and key not in self._words:
                    self._words[key] = KeywordMatch(kind, word.strip().upper())

    def match(self, text: str) -> KeywordMatch | None:
        """The keyword this whole message is, or None."""
        if len(text) > _MAX_KEYWORD_CHARS * 4:
            return None
        key = normalize(text)
        if not key or len(key) > _MAX_KEYWORD_CHARS:
            return None
        return self._words.get(key)


# Phrases that ask to stop receiving messages, in English and Dutch. They are searched in
# the normalized text (case-folded, accents kept), each on word boundaries.
_OBJECT = (
    r"(?:text(?:s|ing)?|messag(?:e|es|ing)|sms(?:es|ing)?|e-?mail(?:s|ing)?|mail(?:s|ing)?"
    r"|contact(?:ing)?|spam(?:ming)?|survey(?:s)?|notification(?:s)?|whatsapp(?:s|ing)?)"
)
_STOP_PATTERNS = (
    # English
    rf"\b(?:stop|quit|cease)\b.{{0,30}}\b{_OBJECT}\b",
    rf"\b(?:don'?t|do not|never|dont)\s+(?:\w+\s+)?{_OBJECT}\b.{{0,20}}\b(?:me|us)\b",
    rf"\bno\s+more\s+{_OBJECT}\b",
    r"\bunsubscribe\b",
    r"\bopt\s*-?\s*(?:me\s+)?out\b",
    r"\b(?:remove|delete|take)\s+(?:me|my\s+(?:number|email|address|details))\b",
    r"\bleave\s+me\s+alone\b",
    r"\bstop\s+(?:it|this|that|please|now|all)\b",
    r"\bplease\s+stop\b",
    r"\bnot\s+interested\b",
    # Dutch
    r"\bniet\s+meer\s+(?:\w+\s+)?(?:sturen|versturen|sms(?:en)?|mailen|e-?mailen|appen|"
    r"bellen|benaderen|contacteren|ontvangen|berichten|whatsappen)\b",
    r"\bgeen\s+(?:\w+\s+)?(?:berichten|sms(?:jes|'jes)?|mails|e-?mails|appjes|enquêtes|"
    r"enquetes|nieuwsbrieven|berichtjes)\s+meer\b",
    r"\b(?:stop|stoppen|ophouden|hou\s+op|houd\s+op)\s+(?:met|aub|a\.u\.b|alsjeblieft|"
    r"alstublieft|nu)\b",
    r"\b(?:afmelden|uitschrijven|afmelding|uitschrijving)\b",
    r"\bmeld\s+(?:me|mij)\s+af\b",
    r"\bschrijf\s+(?:me|mij)\s+uit\b",
    r"\b(?:haal|verwijder)\s+(?:me|mij|mijn\s+(?:nummer|gegevens|e-?mail(?:adres)?))\b",
    r"\blaat\s+(?:me|mij)\s+(?:met\s+rust|gerust)\b",
    r"\bgeen\s+interesse\b",
)
_STOP_RE = re.compile("|".join(f"(?:{p})" for p in _STOP_PATTERNS))


def asks_to_stop(text: str) -> bool:
    """Does this (non-keyword) message ask, in other words, to stop receiving messages?"""
    return _STOP_RE.search(" ".join(text.split()).casefold()[:2000]) is not None
