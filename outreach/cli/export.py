"""outreach export replies|conversations and outreach report CAMPAIGN."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ..errors import local_write_error
from .options import JsonOption, workspace
from .output import console, note, plural, print_json


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    json = "json"


CampaignFilter = Annotated[
    str | None,
    typer.Option("--campaign", help="Only messages of this campaign (see the README)."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="From this time on (inclusive): 2026-11-01, '2026-11-01 09:00', an ISO time, "
        "or relative: 7d, 12h. Without a zone: workspace time zone.",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="Up to this time (exclusive); same forms as --since."),
]
FormatOption = Annotated[
    ExportFormat | None,
    typer.Option(
        "--format",
        help="csv (spreadsheet-safe), jsonl or json. Default: from the --output suffix, else csv.",
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write to this file (complete or not at all) instead of stdout.",
        dir_okay=False,
    ),
]

ExcelOption = Annotated[
    bool,
    typer.Option(
        "--excel",
        help="Start the CSV with a UTF-8 byte order mark, so that Excel shows accented "
        "names right (other tools do not need it).",
    ),
]

export_app = typer.Typer(
    help="Stream reply logs and transcripts as CSV, JSON lines or JSON.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the export group and the report command to the root app."""
    app.add_typer(export_app, name="export")
    app.command(
        "report",
        epilog="Example: outreach report nps --html nps.html",
    )(report)


def _run_export(
    ctx: typer.Context,
    kind: Literal["replies", "conversations"],
    campaign: str | None,
    since: str | None,
    until: str | None,
    fmt: ExportFormat | None,
    output: Path | None,
    excel: bool,
) -> None:
    from ..reports.export import export, format_for, make_filter

    ws = workspace(ctx)
    flt = make_filter(ws, campaign, since, until)
    chosen = format_for(fmt.value if fmt else None, output)
    try:
        count = export(ws, kind, flt, chosen, output=output, stdout=sys.stdout, excel=excel)
        if output is None:
            sys.stdout.flush()  # a full disk under stdout shows here, not at exit
    except BrokenPipeError:
        # `outreach export replies | head`: the reader has all it wanted. Point stdout at
        # devnull so that the interpreter's final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except OSError as exc:
        known = local_write_error(exc, "standard output") if output is None else None
        if known is None:
            raise
        # what is still buffered cannot be written either: drop it, not fail again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise known from None
    if output is not None:
        what = plural(count, "reply", "replies") if kind == "replies" else plural(count, "message")
        note(f"Exported {what} to {output}.")


@export_app.command("replies", epilog="Example: outreach export replies --since 7d -o replies.csv")
def export_replies(
    ctx: typer.Context,
    campaign: CampaignFilter = None,
    since: SinceOption = None,
    until: UntilOption = None,
    fmt: FormatOption = None,
    output: OutputOption = None,
    excel: ExcelOption = False,
) -> None:
    """One row per inbound message: received_at, customer, channel, campaign, question,
    answer, text, conversation_id, message_id, provider_message_id, kind, details."""
    _run_export(ctx, "replies", campaign, since, until, fmt, output, excel)


@export_app.command(
    "conversations",
    epilog="Example: outreach export conversations --campaign nps --format jsonl",
)
def export_conversations(
    ctx: typer.Context,
    campaign: CampaignFilter = None,
    since: SinceOption = None,
    until: UntilOption = None,
    fmt: FormatOption = None,
    output: OutputOption = None,
    excel: ExcelOption = False,
) -> None:
    """One row per message, both directions, ordered by conversation then time."""
    _run_export(ctx, "conversations", campaign, since, until, fmt, output, excel)


def report(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="Campaign name (campaigns/NAME.toml).")],
    occurrence: Annotated[
        str | None,
        typer.Option(
            "--occurrence",
            help="Only this occurrence (its time, e.g. 2026-12-01T09:00:00Z); "
            "default: all occurrences together.",
        ),
    ] = None,
    as_json: JsonOption = False,
    html_file: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write a self-contained HTML report to this file.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """How a campaign did: funnel, failures and skips by reason, replies, answers, NPS/CSAT."""
    from ..reports.report import campaign_report, write_html

    data = campaign_report(workspace(ctx), campaign, occurrence)
    if html_file is not None:
        write_html(data, html_file)
    if as_json:
        print_json(data)
    else:
        render_report(data)
    if html_file is not None:
        note(f"Wrote {html_file}.")


# -- terminal rendering ---------------------------------------------------------------

_BLOCKS = " ▏▎▍▌▋▊▉█"


def _bar(value: int, top: int, width: int = 30) -> str:
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value * width * 8 / top))
    full, part = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[part] if part else "")


def _pct(value: int, of: int) -> str:
    return f"{value * 100 / of:.1f}%" if of else "-"


def render_report(data: dict[str, Any]) -> None:
    """The report for people: summary, funnel, reasons, answers as bars, NPS/CSAT."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from ..reports.report import FUNNEL

    occurrences = len(data["occurrences"])
    when = data["occurrence"] or (
        plural(occurrences, "occurrence") if occurrences else "not sent yet"
    )
    sent, replied = int(data["sent"]), int(data["replied"])
    console.print(
        f"[bold]{escape(data['campaign'])}[/bold] ({escape(data['kind'] or 'campaign')}, "
        f"{escape(when)}): "
        f"audience {data['audience']:,}, deferred {data['deferred']:,}, "
        f"queued {data['queued']:,}, unknown {data['unknown']:,}, "
        f"opted out {data['opted_out']:,}, response rate {_pct(replied, sent)} "
        f"({replied:,} replied of {sent:,} sent)"
    )
    planned = int(data["planned"])
    # one base for every share, the same as the response rate's: the messages sent. A
    # provider without receipts (the outbox, SMTP) never reports delivered or read: that
    # is unknown, not 0 %.
    receipts = int(data["delivered"]) + int(data["read"]) > 0
    funnel = Table(title="Delivery funnel", header_style="bold", title_justify="left")
    funnel.add_column("step", no_wrap=True)
    funnel.add_column("count", justify="right", no_wrap=True)
    funnel.add_column("of sent", justify="right", no_wrap=True)
    funnel.add_column("", style="blue", no_wrap=True)
    for step in FUNNEL:
        n = int(data[step])
        if step in ("delivered", "read") and not receipts:
            funnel.add_row(step, "unknown", "", "(no delivery receipts)")
            continue
        share = "" if step == "planned" else _pct(n, sent)
        funnel.add_row(step, f"{n:,}", share, _bar(n, planned))
    console.print(funnel)
    for title, rows in (
        (f"Failed: {data['failed']:,}", data["failed_by_reason"]),
        (f"Skipped: {sum(data['skipped'].values()):,}", data["skipped"]),
    ):
        if not rows:
            continue
        table = Table(title=title, header_style="bold", title_justify="left")
        table.add_column("reason", overflow="fold")
        table.add_column("count", justify="right")
        for reason, n in rows.items():
            table.add_row(Text(str(reason)), f"{n:,}")
        console.print(table)
    survey = data.get("survey")
    if survey is None:
        return
    answers: dict[str, int] = data["answers"]
    if answers:
        top = max(answers.values())
        total = sum(answers.values())
        chart = Table(
            title=Text(f"Answers: {survey.get('question') or ''}"),
            header_style="bold",
            title_justify="left",
        )
        chart.add_column("answer", overflow="fold")
        chart.add_column("count", justify="right")
        chart.add_column("share", justify="right")
        chart.add_column("", style="green", no_wrap=True)
        for answer, n in answers.items():
            chart.add_row(Text(answer), f"{n:,}", _pct(n, total), _bar(n, top))
        console.print(chart)
    console.print(f"{data['responses']:,} valid answers.")
    if "nps" in data:
        groups = data["nps_groups"]
        score = "-" if data["nps"] is None else f"{data['nps']:+.1f}"
        console.print(
            f"[bold]NPS {score}[/bold] ({groups['promoters']:,} promoters, "
            f"{groups['passives']:,} passives, {groups['detractors']:,} detractors)"
        )
    if "csat" in data:
        score = "-" if data["csat"] is None else f"{data['csat']:.2f}"
        console.print(f"[bold]CSAT {score}[/bold] / 5 (mean score)")
