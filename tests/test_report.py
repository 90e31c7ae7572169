"""Campaign report figures on a small dataset whose numbers were worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach import clock
from outreach.errors import NotFoundError
from outreach.reports.report import campaign_report, csat_mean, nps_score, render_html
from outreach.store import Store
from outreach.workspace import Workspace
from tests.test_export import (
    add_consent,
    add_customer,
    add_delivery,
    add_message,
    add_occurrence,
    add_response,
)

O1 = "2026-11-02T09:00:00Z"
O2 = "2026-12-01T09:00:00Z"
NPS = {
    "question": "How likely are you to recommend Acme?",
    "type": "nps",
    "choices": [],
    "expires_seconds": 259200,
    "follow_up": None,
}


@pytest.fixture
def space(ws: Path) -> Iterator[Workspace]:
    workspace = Workspace.load(ws)
    yield workspace
    workspace.close()


def seed_nps(store: Store) -> None:
    """Occurrence O1 to c1..c11 and O2 to c1, c2; replies, answers and revocations.

    O1: c1 read, c2 c3 delivered, c4 c5 sent, c6 c7 failed (one provider error twice),
    c8 skipped no_consent, c9 skipped frequency_cap, c10 deferred, c11 skipped
    template_error (found at send time, so still planned).
    """
    for i in range(1, 13):
        add_customer(store, f"c{i}")
    add_customer(store, "c20")
    add_occurrence(store, "nps", O1, audience=11, survey=NPS)
    add_occurrence(store, "nps", O2, audience=2, survey=NPS)
    sent = {"sent_at": O1}
    add_delivery(store, "d1", "nps", O1, "c1", "read", **sent)
    add_delivery(store, "d2", "nps", O1, "c2", "delivered", **sent)
    add_delivery(store, "d3", "nps", O1, "c3", "delivered", **sent)
    add_delivery(store, "d4", "nps", O1, "c4", "sent", **sent)
    add_delivery(store, "d5", "nps", O1, "c5", "sent", **sent)
    add_delivery(store, "d6", "nps", O1, "c6", "failed", error="21211: invalid 'To' number")
    add_delivery(store, "d7", "nps", O1, "c7", "failed", error="21211: invalid 'To' number")
    add_delivery(store, "d8", "nps", O1, "c8", "skipped", reason="no_consent")
    add_delivery(store, "d9", "nps", O1, "c9", "skipped", reason="frequency_cap")
    add_delivery(store, "d10", "nps", O1, "c10", "deferred")
    add_delivery(store, "d11", "nps", O1, "c11", "skipped", reason="template_error")
    # a follow-up sent after an answer is not part of the campaign's figures
    add_delivery(
        store, "f1", "nps", O1, "c1", "sent", sent_at="2026-11-02T10:00:05Z", purpose="follow_up"
    )
    add_delivery(store, "e1", "nps", O2, "c1", "delivered", sent_at=O2)
    add_delivery(store, "e2", "nps", O2, "c2", "sent", sent_at=O2)
    # another campaign to c4 in between must not steal or add replies
    add_delivery(
        store,
        "x4",
        "other",
        "2026-11-02T09:30:00Z",
        "c4",
        "sent",
        sent_at="2026-11-02T09:30:00Z",
        channel="email",
    )

    def answer(cid: str, did: str, occ: str, text: str, at: str, score: int | None) -> None:
        mid = add_message(store, cid, "in", text, at)
        add_response(
            store,
            mid,
            did,
            cid,
            "nps",
            occ,
            text if score is not None else None,
            score,
            valid=score is not None,
        )

    answer("c1", "d1", O1, "9", "2026-11-02T10:00:00Z", 9)
    add_message(store, "c1", "in", "thanks!", "2026-11-02T10:05:00Z")
    answer("c2", "d2", O1, "10", "2026-11-02T11:00:00Z", 10)
    answer("c3", "d3", O1, "3", "2026-11-02T12:00:00Z", 3)
    answer("c3", "d3", O1, "8", "2026-11-02T12:30:00Z", 8)  # changed their mind: 8 counts
    answer("c4", "d4", O1, "maybe later", "2026-11-02T13:00:00Z", None)  # unclear
    add_message(store, "c5", "in", "who is this", "2026-11-02T08:00:00Z")  # before the send
    add_message(store, "c6", "in", "hello", "2026-11-02T10:00:00Z")  # their send failed
    answer("c1", "e1", O2, "10", "2026-12-01T10:00:00Z", 10)
    add_consent(store, "c4", "sms", "opted_out", "2026-11-02T13:05:00Z")
    add_consent(store, "c8", "sms", "opted_out", "2026-11-01T08:00:00Z")  # before the send
    add_consent(store, "c20", "sms", "opted_out", "2026-11-05T08:00:00Z")  # not in audience


def test_first_occurrence_figures(space: Workspace) -> None:
    seed_nps(space.store)
    clock.set_now("2026-12-24T12:00:00Z")
    r = campaign_report(space, "nps", O1)
    assert (r["audience"], r["planned"], r["sent"], r["delivered"], r["read"]) == (11, 9, 5, 3, 1)
    # the template error was meant to go: a failure, not a skip
    assert r["failed"] == 3
    assert r["failed_by_reason"] == {"21211: invalid 'To' number": 2, "template_error": 1}
    assert r["skipped"] == {"frequency_cap": 1, "no_consent": 1}
    assert r["deferred"] == 1
    assert r["opted_out"] == 1  # c4 only
    # c1 c2 c3 c4 wrote after the send; c5 only before it, c6's send failed; c1's December
    # answer belongs to the December occurrence
    assert r["replied"] == 4
    assert r["response_rate"] == 0.8
    assert r["responses"] == 3
    assert r["answers"] == {str(s): {8: 1, 9: 1, 10: 1}.get(s, 0) for s in range(11)}
    # promoters 2 (9, 10), passives 1 (8), detractors 0 → (2 - 0) / 3 = 66.7
    assert r["nps"] == 66.7
    assert r["nps_groups"] == {"promoters": 2, "passives": 1, "detractors": 0}
    assert "csat" not in r
    assert r["kind"] == "survey" and r["occurrence"] == O1
    assert r["first_sent_at"] == O1


def test_whole_campaign_counts_every_occurrence(space: Workspace) -> None:
    seed_nps(space.store)
    r = campaign_report(space, "nps")
    assert r["occurrences"] == [O1, O2]
    assert (r["audience"], r["planned"], r["sent"], r["delivered"], r["read"]) == (13, 11, 7, 4, 1)
    assert r["replied"] == 5  # four in November, c1 again in December
    assert r["response_rate"] == round(5 / 7, 4)
    # c1 answered 9 then 10 (December), c2 10, c3 8
    assert r["answers"]["10"] == 2 and r["answers"]["9"] == 1 and r["answers"]["8"] == 1
    assert r["nps"] == 75.0


def test_occurrence_accepts_any_form_of_its_time(space: Workspace) -> None:
    seed_nps(space.store)
    # 10:00 in Amsterdam is 09:00 UTC
    assert campaign_report(space, "nps", "2026-12-01 10:00")["occurrence"] == O2
    with pytest.raises(NotFoundError, match=r"no occurrence .*2026-11-02T09:00:00Z"):
        campaign_report(space, "nps", "2026-01-01")


def test_json_shape_of_spec_section_10(space: Workspace) -> None:
    seed_nps(space.store)
    r = campaign_report(space, "nps")
    for key in (
        "audience",
        "planned",
        "sent",
        "delivered",
        "read",
        "failed",
        "deferred",
        "opted_out",
        "replied",
    ):
        assert isinstance(r[key], int), key
    assert isinstance(r["skipped"], dict) and isinstance(r["answers"], dict)
    assert isinstance(r["response_rate"], float)
    assert isinstance(r["nps"], float)


def test_unknown_campaign_lists_known_ones(space: Workspace) -> None:
    seed_nps(space.store)
    (space.config.campaigns_dir / "welcome.toml").write_text('kind = "notification"\n')
    with pytest.raises(NotFoundError, match=r'"nsp" not found.*known: ') as err:
        campaign_report(space, "nsp")
    for name in ("nps", "other", "welcome"):  # from the database and from campaigns/
        assert name in str(err.value)
    with pytest.raises(NotFoundError):
        campaign_report(space, "../outreach")


def test_campaign_file_without_sends_reports_zeros(space: Workspace) -> None:
    (space.config.campaigns_dir / "csat.toml").write_text(
        'kind = "survey"\n[survey]\nquestion = "Happy?"\ntype = "csat"\n'
    )
    r = campaign_report(space, "csat")
    assert (r["audience"], r["sent"], r["replied"], r["response_rate"]) == (0, 0, 0, 0)
    assert r["answers"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
    assert r["csat"] is None


def test_csat_mean_and_choice_order(space: Workspace) -> None:
    store = space.store
    survey = {"question": "Which?", "type": "choice", "choices": ["Price", "Speed", "Support"]}
    add_occurrence(store, "pick", O1, survey=survey, audience=3)
    for i, choice in enumerate(["Support", "Support", "Price"], start=1):
        add_customer(store, f"p{i}")
        add_delivery(store, f"p{i}", "pick", O1, f"p{i}", "sent", sent_at=O1)
        mid = add_message(store, f"p{i}", "in", choice.lower(), "2026-11-02T10:00:00Z")
        add_response(store, mid, f"p{i}", f"p{i}", "pick", O1, choice, None, kind="choice")
    r = campaign_report(space, "pick")
    assert list(r["answers"].items()) == [("Price", 1), ("Speed", 0), ("Support", 2)]
    assert "nps" not in r and "csat" not in r


@pytest.mark.parametrize(
    ("scores", "nps"),
    [
        ({10: 1}, 100.0),
        ({0: 3}, -100.0),
        ({7: 5, 8: 5}, 0.0),
        ({9: 1, 6: 1, 7: 1}, 0.0),
        ({10: 2, 3: 1}, 33.3),
        ({10: 1, 0: 2}, -33.3),
        ({9: 2, 6: 1}, 33.3),
        ({9: 1, 10: 1, 8: 1, 5: 0}, 66.7),
        ({}, None),
    ],
)
def test_nps_is_promoters_minus_detractors_in_percent(
    scores: dict[int, int], nps: float | None
) -> None:
    assert nps_score(scores) == nps


def test_csat_is_the_mean_score() -> None:
    assert csat_mean({5: 2, 4: 1, 1: 1}) == 3.75
    assert csat_mean({3: 3}) == 3.0
    assert csat_mean({}) is None


def test_html_report_is_self_contained_and_escaped(space: Workspace) -> None:
    seed_nps(space.store)
    r = campaign_report(space, "nps", O1)
    r["failed_by_reason"] = {"<script>alert(1)</script>": 2}
    page = render_html(r)
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page and "NPS +66.7" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    # five funnel steps and eleven NPS answers as CSS bars; the largest fills its track
    assert page.count('class="track"') == 16
    assert 'style="width:100.0%"' in page and 'style="width:0.0%"' in page
    for external in ("http://", "https://", "src=", "<link", "@import"):
        assert external not in page
