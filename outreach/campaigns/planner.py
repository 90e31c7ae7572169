"""Planning an occurrence into deliveries.

Planning streams the audience, routes each customer to the first channel that is
configured, has an address and current consent, applies frequency caps, and computes
``not_before`` from the window in the customer's own time zone. It writes one delivery per
(campaign, occurrence, customer) — skips included, with their reason — in batches; the
unique key makes a re-plan after a crash insert only what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .. import clock
from ..channels import ADDRESS_COLUMN, address_kind
from ..config import Cap, Config, Window, zone_or
from ..deliveries import CAP_STATES, Delivery, Purpose, Status, new_delivery_id
from ..errors import ConfigError, NotFoundError, TemplateError, UsageError
from ..policy import REASON_FREQUENCY_CAP, REASON_OPTED_OUT, consent_refusal
from ..store import Store
from ..templates.render import Renderer
from .files import Campaign, localized_question

BATCH = 2000


@dataclass
class PlanResult:
    audience: int = 0
    planned: int = 0
    deferred: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    # an earlier run planned this occurrence: nothing new, whatever the audience is now
    already_planned: bool = False


def route(
    config: Config,
    campaign: Campaign,
    customer: dict[str, Any],
    consent: dict[str, str],
    user_channels: Collection[str] = (),
) -> tuple[str | None, str | None]:
    """(channel, None) for the first usable channel, else (None, skip reason).

    ``user_channels``: the channels addressed by platform user id (``address = "user"``)
    on which this customer has one.
    """
    reason = "no_address"
    seen: set[str] = set()
    for entry in campaign.channels:
        name = customer.get("preferred_channel") if entry == "preferred" else entry
        if not name or name in seen or name not in config.channels:
            continue
        seen.add(name)
        kind = address_kind(config.channels[name])
        if kind == "user":
            if name not in user_channels:
                continue
        else:
            field = ADDRESS_COLUMN.get(kind)
            if field is None or not customer.get(field):
                continue
        refusal = consent_refusal(Purpose.CAMPAIGN, consent.get(name))
        if refusal is None:
            return name, None
        if reason != REASON_OPTED_OUT:  # an opt-out anywhere is the reason to report
            reason = refusal
    return None, reason


def plan_occurrence(
    config: Config,
    store: Store,
    campaign: Campaign,
    occurrence: str,
    now: datetime,
    *,
    customers: Sequence[tuple[str, dict[str, Any]]] | None = None,
    dry_run: bool = False,
    on_batch: Callable[[Sequence[Delivery]], None] | None = None,
) -> PlanResult:
    """Write one delivery per audience member for this occurrence (skips included).

    ``customers`` (id, event data) replaces the audience query for triggered sends.
    ``on_batch`` sees each batch of deliveries once it is committed.
    """
    result = PlanResult()
    if store.deliveries.occurrence_status(campaign.name, occurrence) == "planned":
        result.already_planned = True
        return result
    # find the audience first: a bad filter must not leave a half-begun occurrence behind
    events: dict[str, dict[str, Any]] = {}
    if customers is not None:
        events = dict(customers)
        found = store.customers.get_customers(list(events))
        missing = [cid for cid in events if cid not in found]
        if missing:
            raise NotFoundError(
                f'customer "{missing[0]}" in the --customers file does not exist; import it first'
            )
        stream: Iterator[dict[str, Any]] = iter(found[cid] for cid in events)
    else:
        try:
            # unverified contacts (strangers who wrote in) are never a campaign's audience
            where = f"verified = 1 AND ({campaign.where})" if campaign.where else "verified = 1"
            if campaign.where:
                # checked as written, so that an error shows the user's text, not the above
                store.customers.validate_where(campaign.where)
            stream = store.customers.select_customers(where)
        except UsageError as exc:
            raise ConfigError(f"campaigns/{campaign.name}.toml [audience] {exc}") from None
    at = clock.iso(now)
    store.use_large_cache()
    if not dry_run:
        store.deliveries.begin_occurrence(
            campaign.name,
            occurrence,
            campaign.kind,
            campaign.survey.snapshot() if campaign.survey else None,
            at,
        )
    window = campaign.window or config.window
    occurrence_time = clock.parse_time(occurrence) if occurrence[:1].isdigit() else now
    ready_at = max(now, occurrence_time)
    # the workspace cap counts every campaign; a campaign's own cap counts only itself
    caps: list[tuple[Cap, str | None]] = []
    if campaign.counts_for_cap:
        if config.frequency_cap:
            caps.append((config.frequency_cap, None))
        if campaign.frequency_cap:
            caps.append((campaign.frequency_cap, campaign.name))
    batch: list[dict[str, Any]] = []
    preview = _DryRunRenderer(config, campaign, now) if dry_run else None

    def flush() -> None:
        rows = _plan_batch(
            config,
            store,
            campaign,
            occurrence,
            batch,
            caps,
            events,
            window,
            ready_at,
            now,
            at,
            result,
        )
        if preview is not None:
            preview.render(batch, rows, result)
        else:
            store.retrying(lambda: _insert(store, rows))
            if on_batch is not None:
                on_batch(rows)
        batch.clear()

    for customer in stream:
        result.audience += 1
        batch.append(customer)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    if not dry_run:
        store.deliveries.finish_occurrence(campaign.name, occurrence, result.audience)
    return result


def _insert(store: Store, rows: list[Delivery]) -> None:
    """One batch of the plan, one unit of work (idempotent by its unique key as well)."""
    with store.write():
        store.deliveries.insert_deliveries(rows)


class _DryRunRenderer:
    """``run --dry-run`` renders what it plans, so template errors show before a real run."""

    def __init__(self, config: Config, campaign: Campaign, now: datetime) -> None:
        self.renderer = Renderer(config)
        self.campaign = campaign
        self.now = now
        self.survey = campaign.survey.snapshot() if campaign.survey else None

    def render(self, batch: list[dict[str, Any]], rows: list[Delivery], result: PlanResult) -> None:
        for customer, row in zip(batch, rows, strict=True):
            if row.status == Status.SKIPPED or row.channel is None:
                continue
            try:
                self.renderer.render(
                    self.campaign.template,
                    row.channel,
                    customer,
                    campaign={"name": self.campaign.name, "kind": self.campaign.kind},
                    survey={
                        **self.survey,
                        "question": localized_question(self.survey, customer.get("locale")),
                    }
                    if self.survey
                    else None,
                    now=self.now,
                    extra=json.loads(row.context) if row.context else None,
                )
            except TemplateError:
                result.planned -= 1
                if row.status == Status.DEFERRED:
                    result.deferred -= 1
                result.skipped["template_error"] = result.skipped.get("template_error", 0) + 1


def _plan_batch(
    config: Config,
    store: Store,
    campaign: Campaign,
    occurrence: str,
    batch: list[dict[str, Any]],
    caps: list[tuple[Cap, str | None]],
    events: dict[str, dict[str, Any]],
    window: Window,
    ready_at: datetime,
    now: datetime,
    at: str,
    result: PlanResult,
) -> list[Delivery]:
    ids = [c["id"] for c in batch]
    consent = store.consent.current_consent_many(ids)
    # customers with a platform user id, per channel that addresses people that way and
    # that this campaign can route to
    reachable = config.channels if "preferred" in campaign.channels else campaign.channels
    with_user_id = {
        name: set(store.customers.user_addresses(name, ids))
        for name, channel in config.channels.items()
        if name in reachable and address_kind(channel) == "user"
    }
    usage = [
        (
            cap,
            store.deliveries.cap_usage(ids, clock.iso(now - cap.period), scope, states=CAP_STATES),
        )
        for cap, scope in caps
    ]
    rows: list[Delivery] = []
    counts_for_cap = int(campaign.counts_for_cap)
    window_text = str(window)
    ready_iso = clock.iso(ready_at)  # a skipped row's not_before
    # the window's next opening, and its text, are the same for everyone in a time zone
    openings: dict[ZoneInfo, tuple[datetime, str]] = {}
    for customer in batch:
        cid = customer["id"]
        users = [name for name, known in with_user_id.items() if cid in known]
        channel, reason = route(config, campaign, customer, consent.get(cid, {}), users)
        if channel is not None:
            for cap, counts in usage:
                if counts.get(cid, 0) >= cap.count:
                    channel, reason = None, REASON_FREQUENCY_CAP
                    break
        if channel is not None:
            tz = zone_or(customer.get("timezone"), config.timezone)
            opening = openings.get(tz)
            if opening is None:
                moment = window.next_opening(ready_at, tz)
                opening = openings[tz] = (moment, clock.iso(moment))
            not_before, not_before_iso = opening
            status = Status.QUEUED if not_before <= now else Status.DEFERRED
            result.planned += 1
            if status is Status.DEFERRED:
                result.deferred += 1
        else:
            status, not_before_iso = Status.SKIPPED, ready_iso
            result.skipped[reason or "no_address"] = (
                result.skipped.get(reason or "no_address", 0) + 1
            )
        event = events.get(cid)
        rows.append(
            Delivery(
                new_delivery_id(),
                campaign.name,
                occurrence,
                cid,
                channel,
                Purpose.CAMPAIGN,
                campaign.template,
                counts_for_cap,
                window_text,
                status,
                reason,
                not_before_iso,
                json.dumps({"event": event}) if event else None,
                at,
                at,
            )
        )
    return rows
