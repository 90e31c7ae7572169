"""What a send pass produces: one ``Result`` per delivery it finished, and the counts of
the pass (``SendSummary``, per campaign occurrence) that ``run`` prints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..deliveries import Purpose, Status


@dataclass(slots=True)
class Result:
    """The outcome of one claimed delivery, recorded with an UPDATE guarded by ``sending``."""

    id: str
    channel: str
    status: Status
    at: str
    reason: str | None = None
    error: str | None = None
    provider_message_id: str | None = None
    sent_at: str | None = None
    not_before: str | None = None  # when to try again (deferred, or queued for a retry)
    attempts_back: bool = False  # never tried: the claim does not count as an attempt


@dataclass
class Tally:
    """Counts for one (campaign, occurrence) in this run (deferred and unknown ones are
    counted from the database afterwards, where earlier passes' count too)."""

    sent: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class SendSummary:
    """What a send pass did, per (campaign, occurrence), plus problems for people."""

    tallies: dict[tuple[str | None, str | None], Tally] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    interrupted: int = 0  # the signal that stopped the pass, or 0

    @property
    def sent(self) -> int:
        """Campaign messages sent, over every occurrence."""
        return sum(t.sent for t in self.tallies.values())

    def tally(self, row: Mapping[str, Any]) -> Tally:
        key = (row.get("campaign"), row.get("occurrence"))
        if key not in self.tallies:
            self.tallies[key] = Tally()
        return self.tallies[key]

    def count(self, row: Mapping[str, Any], result: Result) -> None:
        """Count a finished campaign delivery (replies are not a campaign's figures)."""
        if row.get("purpose") != Purpose.CAMPAIGN:
            return
        status = result.status
        if status is Status.SENT:
            self.tally(row).sent += 1
        elif status is Status.FAILED:
            self.tally(row).failed += 1
        elif status is Status.UNKNOWN:
            self.problems.append(f"{result.channel}: {result.error}")
        elif status is Status.SKIPPED:
            skipped = self.tally(row).skipped
            reason = result.reason or "unknown"
            skipped[reason] = skipped.get(reason, 0) + 1
