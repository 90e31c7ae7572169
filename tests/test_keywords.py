"""Keyword classification: whole message, case and surrounding punctuation ignored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.config import DEFAULT_KEYWORDS
from outreach.keywords import KeywordTable, asks_to_stop, normalize

TABLE = KeywordTable({**DEFAULT_KEYWORDS, "stop": (*DEFAULT_KEYWORDS["stop"], "Stoppen")})


@pytest.mark.parametrize(
    ("text", "kind", "word"),
    [
        ("STOP", "stop", "STOP"),
        ("stop   ", "stop", "STOP"),
        ("  Stop!", "stop", "STOP"),
        ("stop all", "stop", "STOP ALL"),
        ("Stop   All.", "stop", "STOP ALL"),
        ("stopall", "stop", "STOPALL"),
        ("opt-out", "stop", "OPT-OUT"),
        ("Unsubscribe", "stop", "UNSUBSCRIBE"),
        ("afmelden", "stop", "AFMELDEN"),
        ("stoppen", "stop", "STOPPEN"),
        ("🛑 STOP 🛑", "stop", "STOP"),
        ("start", "start", "START"),
        ("Yes!", "start", "YES"),
        ("unstop", "start", "UNSTOP"),
        ("help?", "help", "HELP"),
        ("info", "help", "INFO"),
        ("hulp", "help", "HULP"),
    ],
)
def test_a_whole_message_keyword_is_recognized(text: str, kind: str, word: str) -> None:
    match = TABLE.match(text)
    assert match is not None
    assert (match.kind, match.word) == (kind, word)


@pytest.mark.parametrize(
    "text",
    [
        "stop sending me surveys",
        "please stop",
        "9",
        "",
        "   ",
        "!!!",
        "STOPP",
        "s t o p",
        "yes please",
        "help me with my order",
        "x" * 10_000,
    ],
)
def test_a_message_that_is_not_exactly_a_keyword_is_none(text: str) -> None:
    assert TABLE.match(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "please stop texting me",
        "Stop sending me messages!",
        "unsubscribe me",
        "Don't text me again",
        "no more emails please",
        "remove me from your list",
        "leave me alone",
        "niet meer sturen aub",
        "Geen berichten meer",
        "geen sms'jes meer alsjeblieft",
        "ik wil niet meer ge-sms't worden, niet meer sms'en",
        "Hou op met die berichten",
        "meld me af",
        "schrijf mij uit aub",
        "laat me met rust",
    ],
)
def test_longer_stop_requests_are_detected_as_intent(text: str) -> None:
    assert asks_to_stop(text)


@pytest.mark.parametrize(
    "text",
    [
        "9",
        "The delivery was late but the driver was friendly",
        "Ja hoor, prima service",
        "When does my order arrive?",
        "Can you send me the invoice?",
        "👍",
        "",
    ],
)
def test_ordinary_replies_are_not_stop_intent(text: str) -> None:
    assert not asks_to_stop(text)


def test_normalize_strips_surrounding_punctuation_and_folds_case() -> None:
    assert normalize("  ¡Stop   All!  ") == "stop all"
    assert normalize("...") == ""


@given(st.text(max_size=300))
def test_classification_never_crashes(text: str) -> None:
    TABLE.match(text)
    asks_to_stop(text)
    normalize(text)
