"""Parsers for survey answers: free text in, a clean answer or "unclear" out.

Customers answer the way people text: ``9``, ``9/10``, ``a 9!``, ``nine``, ``negen``,
``Ja hoor``, ``👍``, ``the second one``. Each parser is a pure function that never raises on
any input and says *unclear* rather than guess when the text holds more than one plausible
answer ("8 or 9"): an unclear answer goes to a person, a wrong one silently skews the report.

English and Dutch number and yes/no words are built in; digits work in any language.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

SURVEY_TYPES = ("nps", "csat", "choice", "yes_no", "text")

# Longest text that is read as a score or choice; longer messages are conversation.
_MAX_ANSWER_CHARS = 500

_NUMBER_WORDS = {
    # English
    "zero": 0,
    "nought": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    # Dutch ("een" is also the article "a", handled below)
    "nul": 0,
    "een": 1,
    "één": 1,
    "eén": 1,
    "twee": 2,
    "drie": 3,
    "vier": 4,
    "vijf": 5,
    "zes": 6,
    "zeven": 7,
    "acht": 8,
    "negen": 9,
    "tien": 10,
}
_YES = frozenset(
    {
        "yes",
        "y",
        "yeah",
        "yea",
        "yep",
        "yup",
        "ya",
        "sure",
        "ok",
        "okay",
        "absolutely",
        "definitely",
        "certainly",
        "of course",
        "ja",
        "j",
        "jazeker",
        "jawel",
        "zeker",
        "zeker weten",
        "graag",
        "prima",
        "oke",
        "oké",
        "okee",
        "oui",
        "si",
        "sí",
        "da",
        "true",
        "👍",
        "✅",
        "✔",
        "✔️",
        "☑",
        "☑️",
        "👌",
    }
)
_NO = frozenset(
    {
        "no",
        "n",
        "nope",
        "nah",
        "never",
        "not really",
        "nee",
        "neen",
        "nein",
        "non",
        "niet",
        "nooit",
        "liever niet",
        "false",
        "👎",
        "❌",
        "✖",
        "✖️",
        "🚫",
    }
)
_FILLER = frozenset(
    {
        "please",
        "thanks",
        "thank",
        "you",
        "thx",
        "hoor",
        "dank",
        "je",
        "u",
        "wel",
        "bedankt",
        "graag",
        "hoi",
        "hi",
        "hello",
        "dankjewel",
        "dankuwel",
        "alsjeblieft",
        "aub",
    }
)
_STAR = "⭐"


@dataclass(frozen=True)
class Answer:
    """A parsed reply: ``valid`` with a normalized ``answer`` (and ``score`` for scales)."""

    valid: bool
    answer: str | None = None
    score: int | None = None


UNCLEAR = Answer(valid=False)


def parse_answer(text: str, survey_type: str, choices: Sequence[str] = ()) -> Answer:
    """Read ``text`` as an answer to a survey of ``survey_type``."""
    if survey_type == "text":
        stripped = text.strip()
        return Answer(True, stripped) if stripped else UNCLEAR
    if survey_type == "nps":
        score = parse_scale(text, 0, 10)
    elif survey_type == "csat":
        score = parse_scale(text, 1, 5)
    elif survey_type == "yes_no":
        yes_no = parse_yes_no(text)
        return Answer(True, yes_no) if yes_no else UNCLEAR
    elif survey_type == "choice":
        choice = parse_choice(text, choices)
        return Answer(True, choice) if choice is not None else UNCLEAR
    else:
        return UNCLEAR
    return Answer(True, str(score), score) if score is not None else UNCLEAR


def _fold(text: str) -> str:
    """Case-folded, accents removed, inner spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split())


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", _fold(text))


def parse_scale(text: str, low: int, high: int) -> int | None:
    """A whole number from ``low`` to ``high``: "9", "9/10", "a 9!", "nine", "negen", "⭐⭐⭐⭐"."""
    if len(text) > _MAX_ANSWER_CHARS:
        return None
    folded = _fold(text)
    if not folded:
        return None
    stars = text.count(_STAR)
    if stars and not re.search(r"\d", folded):
        return stars if low <= stars <= high else None
    # "9/10", "9 out of 10", "9 van de 10", "4 uit 5": drop the scale's top
    folded = re.sub(rf"(\d)\s*(?:/|out\s+of|of|van\s+de|uit|op)\s*{high}\b", r"\1 ", folded)
    numbers = re.findall(r"(?<![\d.,])[-+]?\d+(?:[.,]\d+)?(?![\d])", folded)
    if numbers:
        if any(not n.isdigit() for n in numbers):
            return None  # "-1", "7.5", "8,5": not a whole point on the scale
        values = {int(n) for n in numbers}
    else:
        words = re.findall(r"[^\W\d_]+", folded)
        found = [_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS]
        # Dutch "een" is both "one" and "a": "een negen" means nine.
        if len(found) > 1 and "een" in words:
            found = [_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS and w != "een"]
        values = set(found)
    if len(values) != 1:
        return None
    value = values.pop()
    return value if low <= value <= high else None


def parse_yes_no(text: str) -> str | None:
    """``"yes"`` or ``"no"`` from yes/no words in English and Dutch (and 👍/👎), else None."""
    if len(text) > _MAX_ANSWER_CHARS:
        return None
    stripped = text.strip().strip(".!?,;:~ ").casefold()
    if stripped in _YES:
        return "yes"
    if stripped in _NO:
        return "no"
    words = _words(text)
    symbols = [c for c in text if not c.isalnum() and (c in _YES or c in _NO)]
    phrases = {" ".join(words[i : i + 2]) for i in range(len(words) - 1)}
    yes = any(w in _YES for w in (*words, *phrases, *symbols))
    no = any(w in _NO for w in (*words, *phrases, *symbols))
    if yes == no:
        return None
    # Only short answers ("yes please", "nee hoor", "ja, graag"): a long message that
    # merely contains "no" is conversation, not an answer.
    content = [w for w in words if w not in _FILLER and w not in _YES and w not in _NO]
    if len(content) > 2:
        return None
    return "yes" if yes else "no"


def parse_choice(text: str, choices: Sequence[str]) -> str | None:
    """One of ``choices`` by its number ("2", "#2", "option 2") or its text, fuzzy on case
    and accents ("cafe" for "Café"); None when no single choice fits."""
    if not choices or len(text) > _MAX_ANSWER_CHARS:
        return None
    folded = _fold(text).strip(" .!?,;:#()[]'\"")
    if not folded:
        return None
    keys = [_fold(c).strip(" .!?,;:") for c in choices]
    number = re.fullmatch(
        r"(?:(?:option|optie|choice|keuze|nr|no|nummer|number)\.?\s*)?#?(\d+)", folded
    )
    if number:
        index = int(number[1])
        return choices[index - 1] if 1 <= index <= len(choices) else None
    if folded in keys:
        return choices[keys.index(folded)]
    # a choice named inside a short sentence ("I'd pick delivery speed")
    contained = [i for i, k in enumerate(keys) if k and re.search(rf"\b{re.escape(k)}\b", folded)]
    if len(contained) == 1:
        return choices[contained[0]]
    if len(contained) > 1:
        # the longest wins only when it contains the others ("very good" over "good")
        longest = max(contained, key=lambda i: len(keys[i]))
        if all(keys[i] in keys[longest] for i in contained):
            return choices[longest]
        return None
    close = difflib.get_close_matches(folded, keys, n=2, cutoff=0.8)
    if len(close) == 1 or (len(close) == 2 and close[0] == close[1]):
        return choices[keys.index(close[0])]
    return None
