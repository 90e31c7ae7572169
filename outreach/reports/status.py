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
from ..store import reports as sql
from ..store.consent import consent_summary
from ..store.customers import count_customers
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
    counts = count_customers(store)
    occurrences = sql.planned_occurrences(store)
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
        "consent": consent_summary(store),
        "channels": [
            {"name": c.name, "provider": c.provider} for c in ws.config.channels.values()
        ],
        "campaigns": campaigns,
        "due": due_campaigns(ws),
        "queue": sql.queue_figures(store),
        "attention": sql.attention_figures(store),
    }
