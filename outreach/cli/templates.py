"""outreach templates check | render: compile, try and preview message templates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .options import JsonOption, workspace
from .output import console, note, plural, print_json, print_table

if TYPE_CHECKING:
    from ..campaigns.files import Campaign
    from ..config import Config

# the commands of `outreach templates`: its help is in cli/__init__.py, where the root
# reads it without importing this module
app = typer.Typer()


@app.command(
    "check",
    epilog="Example: outreach templates check nps --sample 5",
)
def check(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Templates to check (folder names in templates/); default: all."),
    ] = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            min=1,
            max=1000,
            help="Render each template for this many customers from the database (built-in "
            "sample customers when there are none).",
        ),
    ] = 3,
    as_json: JsonOption = False,
) -> None:
    """Compile every template and render it per channel; exit 4 on any error.

    Shows per template and channel: errors, SMS encoding (GSM-7 or UCS-2) and segments,
    length, subject length (warning over 78) and the WhatsApp limit (4096).
    """
    from ..errors import TemplateError
    from ..templates.checks import check_workspace

    ws = workspace(ctx)
    results, samples = check_workspace(ws.config, ws.store, names or None, sample)
    errors = len(dict.fromkeys(p for r in results for p in r.errors))
    if as_json:
        print_json([r.as_dict() for r in results])
    else:
        if samples:
            note("No customers in the database yet: rendered for built-in sample customers.")
        rows = [
            {
                "template": r.template,
                "channel": r.channel,
                "languages": "built-in: en, nl" if r.builtin else _languages(r.sources),
                "html": "yes" if any(".html" in s for s in r.sources) else "",
                "ok": "error" if r.errors else ("warning" if r.warnings else "ok"),
                "sms": f"{r.encoding}, {r.segments} seg" if r.encoding else "",
                "length": r.max_length or "",
                "subject": r.max_subject if r.max_subject is not None else "",
            }
            for r in results
        ]
        print_table(
            rows,
            ["template", "channel", "languages", "html", "ok", "sms", "length", "subject"],
            headers=[
                "template",
                "channel",
                "languages",
                "HTML",
                "result",
                "SMS",
                "length",
                "subject",
            ],
        )
        # a file shared by several channels (default.j2, an include) is named once
        for problem in dict.fromkeys(p for r in results for p in r.errors):
            note(f"error: {problem}")
        for warning in dict.fromkeys(w for r in results for w in r.warnings):
            note(f"warning: {warning}")
        fallbacks: dict[str, list[str]] = {}
        for r in results:
            if r.builtin:
                fallbacks.setdefault(r.channel, []).append(r.template)
        for channel, replies in fallbacks.items():
            note(
                f"{channel}: no {', '.join(replies)} template; the built-in text (English, "
                f"Dutch) answers; add templates/NAME/{channel}.j2 for your own"
            )
    if errors:
        pairs = sum(1 for r in results if r.errors)
        raise TemplateError(
            f"{plural(errors, 'template error')} "
            f"in {plural(pairs, 'template/channel pair')}; fix the files named above"
        )
    if not as_json:
        note(f"{len(results)} template/channel pairs checked, no errors.")


@app.command(
    "render",
    epilog="Example: outreach templates render nps --customer c001 --channel sms",
)
def render(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template name (a folder in templates/).")],
    customer: Annotated[str, typer.Option("--customer", help="Id of the customer to render for.")],
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel",
            help="Channel to render for (default: the customer's preferred channel, else the "
            "first configured one).",
        ),
    ] = None,
    campaign: Annotated[
        str | None,
        typer.Option(
            "--campaign",
            metavar="NAME",
            help="Render with this campaign's name, kind and survey question (translated "
            "for the customer), as a real send would (default: the campaign that uses the "
            "template, if one does; else sample values).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print one rendered message, with the real context of the campaign that sends it."""
    from ..templates.checks import preview

    ws = workspace(ctx)
    used_by = _campaign_of(ws.config, name, campaign)
    result = preview(ws.config, ws.store, name, customer, channel, used_by)
    if as_json:
        print_json(result.as_dict())
        return
    message = result.message
    context = f"campaign {result.campaign}" if result.campaign else "sample campaign values"
    note(f"{message.source} for customer {result.customer_id} on {result.channel} ({context})")
    out = []
    if message.subject is not None:
        out.append(f"Subject: {message.subject}")
    if message.preheader:
        out.append(f"Preheader: {message.preheader}")
    if out:
        out.append("")
    out.append(message.body)
    console.print("\n".join(out), markup=False, highlight=False)
    if message.html is not None:
        note(f"(and an HTML alternative of {len(message.html)} characters; see --json)")
    if result.encoding:
        note(
            f"SMS: {result.encoding}, {result.segments} segment"
            f"{'s' if result.segments != 1 else ''}, {len(message.body)} characters"
        )


def _campaign_of(config: Config, template: str, name: str | None) -> Campaign | None:
    """The campaign named, else the campaign that sends ``template`` (one of its own name
    first), or whose survey follows up with it; broken campaign files are left to `run` and
    `templates check` to report."""
    from ..campaigns.files import list_campaigns, load_campaign
    from ..errors import OutreachError

    if name is not None:
        return load_campaign(config, name)
    names = sorted(list_campaigns(config), key=lambda n: n != template)
    follows: Campaign | None = None
    for candidate in names:
        try:
            loaded = load_campaign(config, candidate)
        except OutreachError:
            continue
        if loaded.template == template:
            return loaded
        if follows is None and loaded.survey is not None and loaded.survey.follow_up == template:
            follows = loaded
    return follows


def _languages(sources: list[str]) -> str:
    """templates/nps/sms.j2, templates/nps/sms.nl.j2 → "default, nl"."""
    tags: dict[str, None] = {}
    for source in sources:
        parts = source.rsplit("/", 1)[-1].removesuffix(".j2").split(".")[1:]
        tags[next((p for p in parts if p != "html"), "default")] = None
    return ", ".join(tags)
