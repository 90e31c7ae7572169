"""``outreach status``: the state of a workspace at a glance.

One dict with customers, consent per channel, channels, campaigns and what is due, the
delivery queue, and conversations waiting for a person. Every figure is one aggregate
query, so status stays instant on a large workspace.

Which occurrences are due comes from the campaign planner (``campaigns.due_occurrences``).
A broken campaign file is reported in ``due.error`` instead of failing: status is what one
runs to find out what is wrong, so it must not fail for the same reason.
"""

from __future__ import annotations

from typing import Any

from .. import clock
from ..campaigns.files import list_campaigns
from ..campaigns.schedule import due_occurrences
from ..errors import OutreachError
from ..workspace import Workspace


def due_campaigns(ws: Workspace) -> dict[str, Any]:
    """What ``run --due`` would plan now: each campaign's due (or missed) occurrences."""
    try:
        due = [
            {"campaign": item.campaign.name, "occurrence": item.occurrence, "missed": item.missed}
            for item in due_occurrences(ws.config, ws.store, clock.now())
        ]
    except OutreachError as exc:
        return {"available": True, "occurrences": [], "error": str(exc)}
    return {"available": True, "occurrences": due, "error": None}


def workspace_status(ws: Workspace) -> dict[str, Any]:
    """Customers, consent, channels, campaigns and what is due, queue, attention."""
    store = ws.store
    counts = store.customers.count_customers()
    occurrences = store.reports.planned_occurrences()
    files = list_campaigns(ws.config)
    campaigns = [
        {
            "name": name,
            "file": name in files,
            "occurrences_planned": int(occurrences.get(name, {}).get("planned") or 0),
            "occurrences_missed": int(occurrences.get(name, {}).get("missed") or 0),
            "last_occurrence": occurrences.get(name, {}).get("last"),
        }
        for name in sorted(set(files) | set(occurrences))
    ]
    return {
        "workspace": str(ws.root),
        "now": clock.iso(clock.now()),
        "customers": counts["customers"],
        "unverified_contacts": counts["unverified_contacts"],
        "consent": store.consent.consent_summary(),
        "channels": [{"name": c.name, "provider": c.provider} for c in ws.config.channels.values()],
        "campaigns": campaigns,
        "due": due_campaigns(ws),
        "queue": store.reports.queue_figures(),
        "attention": store.reports.attention_figures(),
    }
