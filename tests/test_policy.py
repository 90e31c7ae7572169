"""``policy.may_send``, the one decision whether a message may go, and the sending
engine's per-delivery step built on it (``sending.decide``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outreach.config import Window
from outreach.deliveries import MOVES_FROM, REPORTED, Purpose, Status, reported_from
from outreach.policy import GO, Decision, counts_for_cap, is_stale, may_send
from outreach.sending.decide import MAX_CLAIMS, Verdict, decide

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # 10:30 in Amsterdam
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")
WINDOW = Window.parse("09:00-20:00", where="test")
CUSTOMER: dict[str, object] = {"id": "c1", "email": "c1@example.com"}


@pytest.mark.parametrize(
    ("purpose", "consent", "wrote", "expected"),
    [
        (Purpose.CAMPAIGN, "opted_in", False, None),
        (Purpose.CAMPAIGN, "opted_out", True, "opted_out"),
        (Purpose.CAMPAIGN, None, True, "no_consent"),  # writing in is no consent to campaigns
        (Purpose.KEYWORD, "opted_out", False, None),  # the STOP confirmation itself
        (Purpose.KEYWORD, None, False, None),
        (Purpose.AGENT, "opted_out", True, "opted_out"),
        (Purpose.AGENT, None, True, None),  # answers them where they wrote, within a day
        (Purpose.AGENT, None, False, "no_consent"),
        (Purpose.FOLLOW_UP, "opted_in", False, None),
        (Purpose.AUTO_REPLY, None, False, "no_consent"),
    ],
)
def test_consent_decides_by_purpose(
    purpose: Purpose, consent: str | None, wrote: bool, expected: str | None
) -> None:
    assert may_send(purpose, consent, NOW, wrote_recently=wrote).reason == expected


def test_a_campaign_outside_its_window_waits_for_the_customers_morning() -> None:
    # 04:30 in New York: deferred to 09:00 there, 14:00 UTC
    decision = may_send(Purpose.CAMPAIGN, "opted_in", NOW, window=WINDOW, tz=NEW_YORK)
    assert decision == Decision(not_before=datetime(2026, 12, 1, 14, 0, tzinfo=UTC))
    assert not decision.go
    assert may_send(Purpose.CAMPAIGN, "opted_in", NOW, window=WINDOW, tz=AMSTERDAM) == GO
    # replies never wait for a campaign window
    assert may_send(Purpose.AGENT, "opted_in", NOW, window=WINDOW, tz=NEW_YORK).go


def test_staleness_by_late_and_by_a_surveys_expiry() -> None:
    day = timedelta(days=1)
    assert not is_stale(None, day, day)  # not an earlier run's delivery
    assert not is_stale(2 * day, None, None)
    assert is_stale(3 * day, 2 * day, None)
    assert is_stale(8 * day, None, 7 * day)
    assert not is_stale(3 * day, None, 7 * day)
    stale = may_send(Purpose.CAMPAIGN, "opted_in", NOW, age=3 * day, late=2 * day)
    assert stale.reason == "expired"
    # an opt-out is the stronger reason; a reply has no occurrence to be late for
    assert may_send(Purpose.CAMPAIGN, "opted_out", NOW, age=3 * day, late=day).reason == (
        "opted_out"
    )
    assert may_send(Purpose.FOLLOW_UP, "opted_in", NOW, age=3 * day, late=day).go
    # stale wins over waiting for the window: it would never be sent anyway
    late_outside = may_send(
        Purpose.CAMPAIGN, "opted_in", NOW, age=3 * day, late=day, window=WINDOW, tz=NEW_YORK
    )
    assert late_outside.reason == "expired"


def test_notifications_are_exempt_from_frequency_caps() -> None:
    assert not counts_for_cap("notification")
    assert counts_for_cap("survey") and counts_for_cap("update")
    assert may_send(Purpose.CAMPAIGN, "opted_in", NOW, capped=True, kind="survey").reason == (
        "frequency_cap"
    )
    assert may_send(Purpose.CAMPAIGN, "opted_in", NOW, capped=True, kind="notification").go


def test_the_transition_table_never_moves_a_delivery_back_from_its_provider() -> None:
    # a late "sent" report never undoes "delivered"; a "queued" report changes nothing
    assert Status.DELIVERED not in MOVES_FROM[Status.SENT]
    assert reported_from("queued") == ()
    assert reported_from("delivered") == MOVES_FROM[Status.DELIVERED]
    assert set(REPORTED) <= set(MOVES_FROM)
    # only a send pass's claim starts a send, from what is due
    assert MOVES_FROM[Status.SENDING] == (Status.QUEUED, Status.DEFERRED)
    assert Status.SENT not in MOVES_FROM[Status.SKIPPED]


def _claimed(**fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "d1",
        "purpose": "campaign",
        "consent": "opted_in",
        "attempts": 1,
        "window": "09:00-20:00",
    }
    row.update(fields)
    return row


def _decide(
    row: dict[str, object],
    address: str | None = "c1@example.com",
    *,
    customer: dict[str, object] | None = CUSTOMER,
    tz: ZoneInfo = AMSTERDAM,
    age: timedelta | None = None,
) -> Verdict | None:
    return decide(
        row,
        customer=customer,
        address=address,
        now=NOW,
        tz=tz,
        window=WINDOW,
        age=age,
        late=timedelta(days=2),
        expires=timedelta(days=7),
    )


def test_decide_sends_a_good_delivery_and_says_what_to_record_for_the_others() -> None:
    assert _decide(_claimed()) is None
    assert _decide(_claimed(), customer=None) == Verdict(Status.FAILED, "no_customer")
    assert _decide(_claimed(), None) == Verdict(Status.SKIPPED, "no_address")
    exhausted = _decide(_claimed(attempts=MAX_CLAIMS + 1))
    assert exhausted is not None and exhausted.reason == "retries_exhausted"
    assert _decide(_claimed(consent="opted_out")) == Verdict(Status.SKIPPED, "opted_out")
    assert _decide(_claimed(), age=timedelta(days=3)) == Verdict(Status.SKIPPED, "expired")
    assert _decide(_claimed(), age=timedelta(days=1)) is None
    deferred = _decide(_claimed(), tz=NEW_YORK)
    assert deferred == Verdict(Status.DEFERRED, not_before=datetime(2026, 12, 1, 14, tzinfo=UTC))
