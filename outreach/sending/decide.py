"""The step right before a send, for one claimed delivery: send it, or what to record.

Pure: the engine reads the customers, their recent contact and the campaign's staleness
once per claimed batch and passes them in. Whether consent, the window and staleness
allow the message is ``policy.may_send``; this step adds what a send itself needs (a
customer, an address, attempts left).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from ..config import Window
from ..deliveries import Status
from ..policy import may_send

MAX_CLAIMS = 5  # runs that may try a delivery before it is failed for good


class Verdict(NamedTuple):
    """What to record instead of sending."""

    status: Status
    reason: str | None = None
    error: str | None = None
    not_before: datetime | None = None


NO_CUSTOMER = Verdict(Status.FAILED, "no_customer")
NO_ADDRESS = Verdict(Status.SKIPPED, "no_address")
EXHAUSTED = Verdict(Status.FAILED, "retries_exhausted", "gave up after repeated temporary failures")


def decide(
    delivery: Mapping[str, Any],
    *,
    customer: Mapping[str, Any] | None,
    address: str | None,
    now: datetime,
    tz: ZoneInfo,
    wrote_recently: bool = False,
    window: Window | None = None,
    age: timedelta | None = None,
    late: timedelta | None = None,
    expires: timedelta | None = None,
) -> Verdict | None:
    """None: send it now. Else the verdict to record, in the order a person would ask:
    is there a customer, may we (consent, staleness, window), can we (tries, address)."""
    if customer is None:
        return NO_CUSTOMER
    decision = may_send(
        delivery["purpose"],
        delivery.get("consent"),
        now,
        wrote_recently=wrote_recently,
        age=age,
        late=late,
        expires=expires,
        window=window,
        tz=tz,
    )
    if decision.reason is not None:
        return Verdict(Status.SKIPPED, decision.reason)
    if decision.not_before is not None:
        return Verdict(Status.DEFERRED, not_before=decision.not_before)
    if delivery["attempts"] > MAX_CLAIMS:
        return EXHAUSTED
    if not address:
        return NO_ADDRESS
    return None
