"""Survey answer parsers: robust on what people write, never guessing, never crashing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.answers import SURVEY_TYPES, parse_answer, parse_choice, parse_scale, parse_yes_no


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("9", 9),
        ("9/10", 9),
        ("9 / 10", 9),
        ("a 9!", 9),
        ("nine", 9),
        ("Negen", 9),
        ("10!!", 10),
        ("10/10", 10),
        ("0", 0),
        ("zero", 0),
        ("nul", 0),
        ("I'd say 8", 8),
        ("8 out of 10", 8),
        ("een 7", 7),
        ("een negen!", 9),
        ("  6  ", 6),
        ("tien", 10),
        ("Ten.", 10),
        ("een", 1),
        ("10! Love the new app", 10),
    ],
)
def test_nps_reads_what_people_write(text: str, score: int) -> None:
    assert parse_scale(text, 0, 10) == score
    assert parse_answer(text, "nps").score == score


@pytest.mark.parametrize(
    "text",
    [
        "11",
        "-1",
        "7.5",
        "8,5",
        "8 or 9",
        "between 7 and 8",
        "great!",
        "",
        "👍",
        "+31612345678",
        "my order 12345 is late",
        "nine or ten",
    ],
)
def test_nps_is_unclear_rather_than_a_guess(text: str) -> None:
    assert parse_scale(text, 0, 10) is None
    assert not parse_answer(text, "nps").valid


@pytest.mark.parametrize(
    ("text", "score"),
    [("5", 5), ("4/5", 4), ("1", 1), ("three", 3), ("vier", 4), ("⭐⭐⭐⭐", 4), ("2 of 5", 2)],
)
def test_csat_reads_one_to_five(text: str, score: int) -> None:
    assert parse_answer(text, "csat").score == score


@pytest.mark.parametrize("text", ["0", "6", "10", "⭐⭐⭐⭐⭐⭐", "meh"])
def test_csat_outside_one_to_five_is_unclear(text: str) -> None:
    assert not parse_answer(text, "csat").valid


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", "yes"),
        ("Y", "yes"),
        ("Yes please!", "yes"),
        ("ja", "yes"),
        ("Ja hoor", "yes"),
        ("ja, graag", "yes"),
        ("👍", "yes"),
        ("👍🏽", "yes"),
        ("sure", "yes"),
        ("no", "no"),
        ("N", "no"),
        ("Nee", "no"),
        ("nee hoor", "no"),
        ("no thanks", "no"),
        ("👎", "no"),
        ("not really", "no"),
    ],
)
def test_yes_no_in_english_and_dutch(text: str, answer: str) -> None:
    assert parse_yes_no(text) == answer
    assert parse_answer(text, "yes_no").answer == answer


@pytest.mark.parametrize(
    "text",
    [
        "maybe",
        "yes and no",
        "ja nee",
        "",
        "🙂",
        "yes but the delivery was very late and the driver was rude",
    ],
)
def test_yes_no_unclear(text: str) -> None:
    assert parse_yes_no(text) is None


CHOICES = ["Delivery speed", "Price", "Café service", "Good", "Very good"]


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("1", "Delivery speed"),
        ("#2", "Price"),
        ("option 3", "Café service"),
        ("price", "Price"),
        ("PRICE!", "Price"),
        ("cafe service", "Café service"),
        ("delivery sped", "Delivery speed"),
        ("I'd pick delivery speed", "Delivery speed"),
        ("very good", "Very good"),
        ("good", "Good"),
    ],
)
def test_choice_by_number_or_text(text: str, choice: str) -> None:
    assert parse_choice(text, CHOICES) == choice
    assert parse_answer(text, "choice", CHOICES).answer == choice


@pytest.mark.parametrize("text", ["0", "6", "price or delivery speed", "banana", ""])
def test_choice_unclear(text: str) -> None:
    assert parse_choice(text, CHOICES) is None


def test_text_survey_takes_any_text_even_emoji() -> None:
    assert parse_answer("🙂🙂", "text").answer == "🙂🙂"
    assert not parse_answer("   ", "text").valid


@given(st.integers(min_value=0, max_value=10))
def test_any_plain_int_from_0_to_10_parses_to_itself(n: int) -> None:
    assert parse_answer(str(n), "nps").score == n
    assert parse_answer(f" {n} ", "nps").score == n


@given(st.integers(min_value=1, max_value=5))
def test_any_plain_int_from_1_to_5_is_a_csat_score(n: int) -> None:
    assert parse_answer(str(n), "csat").score == n


@given(
    st.text(max_size=600), st.sampled_from(SURVEY_TYPES), st.lists(st.text(max_size=20), max_size=5)
)
def test_parsers_never_crash(text: str, kind: str, choices: list[str]) -> None:
    answer = parse_answer(text, kind, choices)
    if answer.valid and kind in ("nps", "csat"):
        assert answer.score is not None
        assert 0 <= answer.score <= 10
    if answer.valid and kind == "choice":
        assert answer.answer in choices
