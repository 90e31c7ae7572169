"""``outreach status``: the state of a workspace at a glance (SPEC §8).

One dict with customers, consent per channel, channels, campaigns and what is due, the
delivery queue, and conversations waiting for a person. Every figure is one aggregate
query, so status stays instant on a large workspace.

Which occurrences are due comes from the campaign planner (``campaigns.due_occurrences``).
It is looked up at run time so that status keeps working, and says so, in a build where
the planner is missing or a campaign file is broken: status is what one runs to find out
what is wrong, so it must not fail for the same reason.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import clock
from .errors import OutreachError
from .store import reports as sql
from .store.consent import consent_summary
from .store.customers import count_customers
from .workspace import Workspace


def _planner() -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("outreach.campaigns")
    except ImportError:
        return None
    found = getattr(module, "due_occurrences", None)
    return found if callable(found) else None


def _as_due(item: Any) -> dict[str, Any]:
    """(name, datetime) tuples or the planner's Due objects → one JSON-ready shape."""
    if isinstance(item, tuple):
        name, when = item[0], item[1]
        missed = False
    else:
        campaign = item.campaign
        name = getattr(campaign, "name", campaign)
        when, missed = item.occurrence, bool(getattr(item, "missed", False))
    occurrence = clock.iso(when) if isinstance(when, datetime) else str(when)
    return {"campaign": str(name), "occurrence": occurrence, "missed": missed}


def due_campaigns(ws: Workspace) -> dict[str, Any]:
    """What ``run --due`` would plan now; ``available`` is false without a planner."""
    planner = _planner()
    if planner is None:
        return {"available": False, "occurrences": [], "error": None}
    try:
        params = inspect.signature(planner).parameters
        # The brief's planner takes the workspace; the planning module's takes its parts.
        items = planner(ws) if len(params) == 1 else planner(ws.config, ws.store, clock.now())
        due = [_as_due(item) for item in items]
    except OutreachError as exc:
        return {"available": True, "occurrences": [], "error": str(exc)}
    return {"available": True, "occurrences": due, "error": None}


def workspace_status(ws: Workspace) -> dict[str, Any]:
    """Customers, consent, channels, campaigns and what is due, queue, attention."""
    store = ws.store
    counts = count_customers(store)
    occurrences = sql.planned_occurrences(store)
    from .campaigns import list_campaigns

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
