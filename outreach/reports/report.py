"""How a campaign did: figures aggregated in SQL, rendered elsewhere.

``campaign_report`` returns one plain dict (the ``report --json`` document); the terminal
view lives in the CLI and ``render_html`` turns the same dict into a self-contained page,
so every view shows the same numbers.

Definitions (the spec names the figures; these are the choices behind them):
- audience: customers the audience selected (as recorded per occurrence; else deliveries).
- planned: deliveries meant to be sent, i.e. not skipped at planning time (skips found at
  send time, ``template_error``, ``opted_out`` and ``expired``, stay in planned so the
  funnel holds).
- sent counts sent+delivered+read; delivered counts delivered+read.
- failed counts failed deliveries and messages skipped as ``template_error`` (by reason
  in ``failed_by_reason``): both were meant to go and need someone to fix something.
- opted_out: customers of the campaign with a consent revocation, on any channel, recorded
  at or after the campaign's first send.
- replied: sent deliveries after which the customer wrote, each inbound message counted
  for the latest delivery of this campaign before it; response_rate = replied / sent.
- answers: the last valid answer of each delivery; scales are keyed by score and listed in
  full (0-10, 1-5), choices in the survey's order. Free-text surveys count responses only.
- nps: % promoters (9-10) - % detractors (0-6), one decimal; csat: mean score, two decimals.
- Without ``--occurrence`` every occurrence of the campaign is counted together.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .. import clock
from ..campaigns.files import list_campaigns
from ..config import read_toml
from ..errors import NotFoundError
from ..store import SENT_STATUSES
from ..workspace import Workspace
from .output import atomic_output

FUNNEL = ("planned", "sent", "delivered", "read", "replied")
# Skips that happen at send time, after the delivery was planned.
_SEND_TIME_SKIPS = ("template_error", "opted_out", "expired")


def known_campaigns(ws: Workspace) -> list[str]:
    """Campaign files in campaigns/ and campaigns the database knows, sorted."""
    return sorted({*ws.store.reports.stored_campaigns(), *list_campaigns(ws.config)})


def _campaign_file_exists(ws: Workspace, name: str) -> bool:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return False
    return (ws.config.campaigns_dir / f"{name}.toml").is_file()


def require_campaign(ws: Workspace, name: str) -> None:
    """Raise NotFoundError unless ``name`` is a campaign file or in the database."""
    if _campaign_file_exists(ws, name) or ws.store.reports.campaign_in_store(name):
        return
    known = known_campaigns(ws)
    listing = ", ".join(known[:20]) + (" …" if len(known) > 20 else "") if known else "none yet"
    raise NotFoundError(
        f'campaign "{name}" not found in campaigns/ or the database (known: {listing}); '
        "check the name"
    )


def nps_score(scores: dict[int, int]) -> float | None:
    """Net Promoter Score from score → count: % 9-10 minus % 0-6, one decimal."""
    total = sum(scores.values())
    if not total:
        return None
    promoters = sum(n for s, n in scores.items() if s >= 9)
    detractors = sum(n for s, n in scores.items() if s <= 6)
    return round((promoters - detractors) * 100 / total, 1)


def csat_mean(scores: dict[int, int]) -> float | None:
    """Mean CSAT score from score → count, two decimals."""
    total = sum(scores.values())
    if not total:
        return None
    return round(sum(s * n for s, n in scores.items()) / total, 2)


def _pick_occurrence(ws: Workspace, campaign: str, wanted: str, known: list[str]) -> str:
    if wanted in known:
        return wanted
    if not wanted.startswith("file:"):
        as_time = clock.iso(clock.parse_time(wanted, ws.config.timezone, what="--occurrence"))
        if as_time in known:
            return as_time
    listing = ", ".join(known[-10:]) if known else "none yet"
    raise NotFoundError(
        f'campaign "{campaign}" has no occurrence "{wanted}" (occurrences: {listing}); '
        "pass one of them to --occurrence"
    )


def _survey_from_file(ws: Workspace, campaign: str) -> tuple[str | None, dict[str, Any] | None]:
    if not _campaign_file_exists(ws, campaign):
        return None, None
    data = read_toml(ws.config.campaigns_dir / f"{campaign}.toml")
    kind = data.get("kind")
    survey = data.get("survey") if kind == "survey" else None
    return (str(kind) if kind else None), (survey if isinstance(survey, dict) else None)


def _answers(
    survey: dict[str, Any] | None, rows: list[tuple[str | None, int | None, int]]
) -> tuple[dict[str, int], dict[int, int]]:
    kind = (survey or {}).get("type")
    scores: dict[int, int] = {}
    for _, score, n in rows:
        if score is not None:
            scores[score] = scores.get(score, 0) + n
    if kind in ("nps", "csat"):
        low, high = (0, 10) if kind == "nps" else (1, 5)
        answers = {str(s): scores.get(s, 0) for s in range(low, high + 1)}
        for s, n in sorted(scores.items()):  # out-of-scale scores are still shown
            answers.setdefault(str(s), n)
        return answers, scores
    if kind == "text":
        return {}, scores
    counted: dict[str, int] = {}
    for answer, _, n in rows:
        key = "" if answer is None else str(answer)
        counted[key] = counted.get(key, 0) + n
    order: list[str] = []
    if kind == "choice":
        order = [str(c) for c in (survey or {}).get("choices") or []]
    elif kind == "yes_no":
        order = ["yes", "no"]
    answers = {key: counted.pop(key, 0) for key in order}
    answers.update(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))
    return answers, scores


def campaign_report(ws: Workspace, campaign: str, occurrence: str | None = None) -> dict[str, Any]:
    """Every figure `report` shows (README "Exports and reports"), for a campaign or occurrence."""
    require_campaign(ws, campaign)
    store = ws.store
    occs = store.reports.occurrences(campaign)
    names = [o["occurrence"] for o in occs]
    if occurrence is not None:
        occurrence = _pick_occurrence(ws, campaign, occurrence, names)
        occs = [o for o in occs if o["occurrence"] == occurrence]
    if occs:
        kind, survey = occs[-1]["kind"], occs[-1]["survey"]
    else:
        kind, survey = _survey_from_file(ws, campaign)
    figures = store.reports.delivery_figures(campaign, occurrence)
    status = figures["by_status"]
    skipped: dict[str, int] = dict(figures["skipped"])
    total = sum(status.values())
    planned = total - sum(n for r, n in skipped.items() if r not in _SEND_TIME_SKIPS)
    # a message whose template failed for its customer was meant to go and did not: a
    # failure to fix, not a skip by a rule
    failed_by_reason: dict[str, int] = dict(figures["failed"])
    template_errors = skipped.pop("template_error", 0)
    if template_errors:
        failed_by_reason["template_error"] = template_errors
    sent = sum(status.get(s, 0) for s in SENT_STATUSES)
    first_sent = figures["first_sent"]
    replied = (
        store.reports.replied_deliveries(campaign, occurrence, first_sent) if first_sent else 0
    )
    recorded_audience = sum(o["audience"] or 0 for o in occs)
    report: dict[str, Any] = {
        "campaign": campaign,
        "kind": kind,
        "occurrence": occurrence,
        "occurrences": names if occurrence is None else [occurrence],
        "generated_at": clock.iso(clock.now()),
        "first_sent_at": first_sent,
        "audience": recorded_audience or total,
        "planned": planned,
        "sent": sent,
        "delivered": status.get("delivered", 0) + status.get("read", 0),
        "read": status.get("read", 0),
        "failed": status.get("failed", 0) + template_errors,
        "failed_by_reason": failed_by_reason,
        "bounced": status.get("bounced", 0),
        "deferred": status.get("deferred", 0),
        "queued": status.get("queued", 0) + status.get("sending", 0),
        "unknown": status.get("unknown", 0),
        "skipped": skipped,
        "opted_out": store.reports.opted_out_after(campaign, occurrence, first_sent)
        if first_sent
        else 0,
        "replied": replied,
        "response_rate": round(replied / sent, 4) if sent else 0,
    }
    if kind == "survey" or survey:
        rows = store.reports.survey_answers(campaign, occurrence)
        answers, scores = _answers(survey, rows)
        stype = (survey or {}).get("type")
        report["survey"] = {
            "question": (survey or {}).get("question"),
            "type": stype,
            "choices": list((survey or {}).get("choices") or []),
        }
        report["responses"] = sum(n for _, _, n in rows)
        report["answers"] = answers
        if stype == "nps":
            report["nps"] = nps_score(scores)
            report["nps_groups"] = {
                "promoters": sum(n for s, n in scores.items() if s >= 9),
                "passives": sum(n for s, n in scores.items() if 7 <= s <= 8),
                "detractors": sum(n for s, n in scores.items() if s <= 6),
            }
        elif stype == "csat":
            report["csat"] = csat_mean(scores)
    return report


# -- HTML ---------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2330;
margin:2rem auto;max-width:56rem;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:2rem 0 .6rem}
.meta{color:#5b6475;font-size:.9rem}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin-top:1rem}
.card{border:1px solid #dde2ea;border-radius:8px;padding:.5rem .8rem;min-width:7rem}
.card b{display:block;font-size:1.35rem}.card span{color:#5b6475;font-size:.8rem}
.bars{display:grid;grid-template-columns:minmax(6rem,max-content) 1fr 5rem;gap:.3rem .7rem;
align-items:center}
.track{background:#eef1f6;border-radius:4px;height:1.1rem}
.fill{background:#3867d6;border-radius:4px;height:100%}
.fill.answer{background:#20bf6b}.num{text-align:right;font-variant-numeric:tabular-nums}
table{border-collapse:collapse}td,th{padding:.25rem .8rem .25rem 0;text-align:left}
td.num{text-align:right}.score{font-size:2rem;font-weight:600}
"""


def _bars(rows: list[tuple[str, int]], top: int, css: str = "") -> str:
    out = ['<div class="bars">']
    for label, n in rows:
        # a non-zero count always shows a sliver, a zero none
        width = 0.0 if not top or n <= 0 else max(0.5, 100 * n / top)
        out.append(
            f"<div>{html.escape(label)}</div>"
            f'<div class="track"><div class="fill {css}" style="width:{width:.1f}%"></div></div>'
            f'<div class="num">{n:,}</div>'
        )
    out.append("</div>")
    return "".join(out)


def _table(rows: dict[str, int], head: str) -> str:
    if not rows:
        return "<p class=meta>none</p>"
    body = "".join(
        f'<tr><td>{html.escape(str(k))}</td><td class="num">{v:,}</td></tr>'
        for k, v in rows.items()
    )
    return f"<table><tr><th>{html.escape(head)}</th><th>count</th></tr>{body}</table>"


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page (inline CSS, CSS bars, no external assets)."""
    e = html.escape
    name = str(report["campaign"])
    count = len(report["occurrences"])
    when = report["occurrence"] or (
        f"{count} occurrence{'' if count == 1 else 's'}" if count else "not sent yet"
    )
    # a provider without receipts (the outbox, SMTP) never reports delivered or read:
    # unknown, not an empty bar
    receipts = int(report["delivered"]) + int(report["read"]) > 0
    funnel = [
        (step, int(report[step]))
        for step in FUNNEL
        if receipts or step not in ("delivered", "read")
    ]
    cards = [
        ("audience", f"{report['audience']:,}"),
        ("sent", f"{report['sent']:,}"),
        ("replied", f"{report['replied']:,}"),
        ("response rate", f"{report['response_rate'] * 100:.1f}%"),
        ("failed", f"{report['failed']:,}"),
        ("skipped", f"{sum(report['skipped'].values()):,}"),
        ("deferred", f"{report['deferred']:,}"),
        ("opted out", f"{report['opted_out']:,}"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Campaign report: {e(name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Campaign report: {e(name)}</h1>",
        f'<div class="meta">{e(str(report["kind"] or "campaign"))} · {e(str(when))} · '
        f"generated {e(report['generated_at'])}</div>",
        '<div class="cards">',
        *(f"<div class=card><b>{v}</b><span>{e(k)}</span></div>" for k, v in cards),
        "</div>",
        "<h2>Delivery funnel</h2>",
        _bars(funnel, int(report["planned"])),
        ""
        if receipts
        else (
            "<p class=meta>delivered, read: unknown (no delivery receipts from these channels)</p>"
        ),
        "<h2>Failures by reason</h2>",
        _table(report["failed_by_reason"], "reason"),
        "<h2>Skipped by reason</h2>",
        _table(report["skipped"], "reason"),
    ]
    survey = report.get("survey")
    if survey is not None:
        parts.append("<h2>Answers</h2>")
        if survey.get("question"):
            parts.append(f"<p>{e(str(survey['question']))}</p>")
        answers: dict[str, int] = report["answers"]
        if answers:
            parts.append(_bars(list(answers.items()), max(answers.values()), "answer"))
        parts.append(f'<p class="meta">{report["responses"]:,} valid answers</p>')
        if "nps" in report:
            score = "-" if report["nps"] is None else f"{report['nps']:+.1f}"
            groups = report["nps_groups"]
            parts.append(
                f'<div class="score">NPS {score}</div><p class="meta">'
                f"{groups['promoters']:,} promoters · {groups['passives']:,} passives · "
                f"{groups['detractors']:,} detractors</p>"
            )
        if "csat" in report:
            score = "-" if report["csat"] is None else f"{report['csat']:.2f}"
            parts.append(f'<div class="score">CSAT {score} / 5</div>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(report: dict[str, Any], path: Path) -> None:
    """Write ``render_html(report)`` to ``path``, whole or not at all."""
    with atomic_output(path, what="--html") as out:
        out.write(render_html(report))
