"""Whether a message may go: consent, opt-out, the window, caps and staleness, in one place.

``may_send`` is the one decision, made by the sending engine right before every send and
by an agent's reply before it is queued; the planner routes with its consent part
(``consent_refusal``) and caps with ``counts_for_cap``. Everything here is pure: the
callers read consent, recent contact and cap usage from the store once per batch and pass
the answers in, so a decision costs no query.

The rules:
- an opt-out always wins, except for the one confirmation of a STOP or START itself;
- a campaign goes only to a customer who opted in on that channel;
- a reply (follow-up, automatic, agent) goes to an opt-in, or on a channel the customer
  wrote on within the service window (24 hours): it answers them where they are;
- nothing stale goes out: a delivery planned by an earlier run whose occurrence is older
  than the campaign's ``late``, or a survey whose ``expires`` has passed, is ``expired``;
- a campaign waits for its window (in the customer's time zone); replies never wait;
- transactional notifications are neither counted against nor held back by caps.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from .config import Window
from .consent import OPTED_IN, OPTED_OUT
from .deliveries import Purpose

# the skip reasons of this module
REASON_OPTED_OUT = "opted_out"
REASON_NO_CONSENT = "no_consent"
REASON_EXPIRED = "expired"
REASON_FREQUENCY_CAP = "frequency_cap"

_UTC = ZoneInfo("UTC")
# plain strings: compared once or twice per delivery, in the sending engine's hot loop
_CAMPAIGN = Purpose.CAMPAIGN.value
_KEYWORD = Purpose.KEYWORD.value
_NOT_BY_RECENT_CONTACT = frozenset((_CAMPAIGN, _KEYWORD))
_CLEAR_CONSENT = frozenset((OPTED_IN, OPTED_OUT))
# a deferral never lands on now or earlier: the pass would claim the delivery again
_MIN_DEFERRAL = timedelta(seconds=1)


class Decision(NamedTuple):
    """The answer of ``may_send``: go, skip (``reason``) or wait (``not_before``)."""

    reason: str | None = None
    not_before: datetime | None = None

    @property
    def go(self) -> bool:
        return self.reason is None and self.not_before is None


GO = Decision()


def counts_for_cap(kind: str) -> bool:
    """Whether a campaign of this kind counts against (and is held back by) caps."""
    return kind != "notification"


def consent_refusal(
    purpose: str, consent: str | None, *, wrote_recently: bool = False
) -> str | None:
    """Why consent forbids this message now (``opted_out``, ``no_consent``), or None."""
    if purpose == _KEYWORD:
        return None  # the one confirmation of a STOP or START goes out regardless
    if consent == OPTED_OUT:
        return REASON_OPTED_OUT
    if consent == OPTED_IN:
        return None
    if purpose == _CAMPAIGN:
        return REASON_NO_CONSENT
    # a reply on a channel the customer wrote on within a day answers them there
    return None if wrote_recently else REASON_NO_CONSENT


def needs_recent_contact(purpose: str, consent: str | None) -> bool:
    """Whether ``may_send`` depends on the customer having written recently: only then is
    it worth asking the store."""
    return purpose not in _NOT_BY_RECENT_CONTACT and consent not in _CLEAR_CONSENT


def is_stale(age: timedelta | None, late: timedelta | None, expires: timedelta | None) -> bool:
    """Whether a delivery whose occurrence is ``age`` old (None: not planned by an earlier
    run, or not a scheduled occurrence) is past the campaign's ``late`` or its survey's
    ``expires``."""
    if age is None:
        return False
    return (late is not None and age > late) or (expires is not None and age > expires)


def may_send(
    purpose: str,
    consent: str | None,
    now: datetime,
    *,
    wrote_recently: bool = False,
    age: timedelta | None = None,
    late: timedelta | None = None,
    expires: timedelta | None = None,
    window: Window | None = None,
    tz: ZoneInfo = _UTC,
    kind: str | None = None,
    capped: bool = False,
) -> Decision:
    """May this message go now? See the module docstring for the rules, in their order.

    ``age``: how old the delivery's occurrence is, for a delivery planned by an earlier
    run; ``window``: the campaign's sending window, in ``tz``; ``capped``: the customer
    has used a frequency cap that ``kind`` counts against.
    """
    refusal = consent_refusal(purpose, consent, wrote_recently=wrote_recently)
    if refusal is not None:
        return Decision(refusal)
    if purpose != _CAMPAIGN:
        return GO
    if is_stale(age, late, expires):
        return Decision(REASON_EXPIRED)
    if capped and (kind is None or counts_for_cap(kind)):
        return Decision(REASON_FREQUENCY_CAP)
    if window is not None and not window.contains(now.astimezone(tz)):
        return Decision(not_before=max(window.next_opening(now, tz), now + _MIN_DEFERRAL))
    return GO
