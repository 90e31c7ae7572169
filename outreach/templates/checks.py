"""`templates check` and `templates render`: try every template with sample data.

``render.py`` renders; this module only drives it for the CLI's checks. It compiles
each template file and renders every locale variant per configured channel for real or
built-in sample customers, and reports length limits (SMS segments, WhatsApp's 4,096
characters, long subjects) and files no channel uses. It is separate because none of this
runs while sending: a run needs only the ``Renderer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import clock
from ..channels import medium
from ..errors import RenderError, UsageError
from .builtin import BUILTIN_TEXTS
from .render import TEMPLATE_SUFFIX, Rendered, Renderer

if TYPE_CHECKING:
    from ..campaigns.files import Campaign
    from ..config import Config
    from ..store import Store

SUBJECT_LIMIT = 78
WHATSAPP_LIMIT = 4096


SAMPLE_CUSTOMERS: tuple[dict[str, Any], ...] = (
    {
        "id": "sample-en",
        "name": "Alex Morgan",
        "email": "alex@example.com",
        "phone": "+447700900123",
        "preferred_channel": None,
        "locale": "en-GB",
        "timezone": "Europe/London",
        "plan": "pro",
        "country": "GB",
    },
    {
        "id": "sample-nl",
        "name": "Anna de Vries",
        "email": "anna@example.nl",
        "phone": "+31612345678",
        "preferred_channel": None,
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
        "plan": "basic",
        "country": "NL",
    },
    {
        "id": "sample-be",
        "name": "Lotte Peeters",
        "email": "lotte@example.be",
        "phone": "+32470123456",
        "preferred_channel": None,
        "locale": "nl-BE",
        "timezone": "Europe/Brussels",
        "plan": "pro",
        "country": "BE",
    },
)


class _SampleEvent(dict[str, Any]):
    """Sample ``event`` data: known fields get realistic values, any other a placeholder."""

    def __missing__(self, key: str) -> str:
        return f"sample-{key}"


def sample_extra(config: Config, now: datetime) -> dict[str, Any]:
    """The ``extra`` values campaigns and replies pass, with sample data, for check/render."""
    return {
        "event": _SampleEvent(
            order_id="A-1042",
            tracking_url="https://track.example.com/A-1042",
            carrier="PostNL",
            ticket_id="T-7731",
        ),
        "next_opening": config.business_hours.next_opening(
            now + timedelta(hours=14), config.timezone
        ),
        "help_text": config.help_text,
    }


def sample_campaign(name: str) -> dict[str, Any]:
    kind = "survey" if name in ("nps", "csat") else "notification"
    return {"name": f"sample-{name}", "kind": kind}


def sample_survey(name: str, sender: str) -> dict[str, Any]:
    if name.startswith("csat"):
        return {
            "question": f"How satisfied are you with the help you got from {sender}?",
            "type": "csat",
            "choices": [],
        }
    return {
        "question": f"How likely are you to recommend {sender} to a friend?",
        "type": "nps",
        "choices": [],
    }


@dataclass
class TemplateCheck:
    """What `templates check` found for one template on one channel."""

    template: str
    channel: str
    sources: list[str] = field(default_factory=list)
    renders: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoding: str | None = None
    segments: int | None = None
    max_length: int = 0
    max_subject: int | None = None
    builtin: bool = False  # the workspace has no file: the built-in text is used

    def as_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "channel": self.channel,
            "sources": self.sources,
            "builtin": self.builtin,
            "renders": self.renders,
            "errors": self.errors,
            "warnings": self.warnings,
            "encoding": self.encoding,
            "segments": self.segments,
            "max_length": self.max_length,
            "max_subject_length": self.max_subject,
        }


def channel_medium(config: Config, channel: str) -> str:
    """``email``, ``whatsapp``, ``sms`` or ``other``: which length rules apply."""
    return medium(config.channel(channel))


def template_names(config: Config) -> list[str]:
    """Every template folder (folders starting with _ hold shared partials)."""
    root = config.templates_dir
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def check_templates(
    config: Config,
    customers: Sequence[Mapping[str, Any]],
    names: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[TemplateCheck]:
    """Compile every template file and render it per channel for ``customers``.

    Every locale variant is rendered (the customers' locale is set to it), so that a file
    no sample customer would pick is still checked.
    """
    renderer = Renderer(config)
    moment = now or clock.now()
    all_names = template_names(config)
    for name in names or ():
        if name not in all_names:
            raise RenderError(
                f'no template "{name}": templates/{name}/ does not exist',
                hint=f"known: {', '.join(all_names) or 'none'}",
            )
    results: list[TemplateCheck] = []
    extra = sample_extra(config, moment)
    partials = (
        [
            p.relative_to(config.templates_dir).as_posix()
            for p in sorted(config.templates_dir.glob("_*/**/*.j2"))
        ]
        if config.templates_dir.is_dir()
        else []
    )
    for partial in partials:
        result = TemplateCheck(
            template=partial.split("/")[0], channel="-", sources=[f"templates/{partial}"]
        )
        try:
            renderer.compile(partial)
        except RenderError as exc:
            result.errors.append(str(exc))
        if result.errors:
            results.append(result)
    for name in names or all_names:
        files = renderer.files(name)
        used: set[str] = set()
        for channel in config.channels:
            checked = _check_channel(renderer, name, channel, files, customers, extra, moment)
            if checked is not None:
                used.update(s.rsplit("/", 1)[1] for s in checked.sources)
                results.append(checked)
        for file in sorted(files - used):
            result = TemplateCheck(
                template=name, channel=file.split(".")[0], sources=[f"templates/{name}/{file}"]
            )
            try:
                renderer.compile(f"{name}/{file}")
                if ".html" not in file:
                    result.warnings.append(
                        f"templates/{name}/{file}: no configured channel uses it"
                    )
            except RenderError as exc:
                result.errors.append(str(exc))
            if result.errors or result.warnings:
                results.append(result)
    if not names:
        results += _check_builtin(renderer, customers, extra, moment)
    return results


def _check_builtin(
    renderer: Renderer,
    customers: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    now: datetime,
) -> list[TemplateCheck]:
    """A row per (reply, channel) that falls back to the built-in text, rendered in each
    of its languages, so the check shows which channels answer STOP, START, HELP and out of
    hours with outreach's own words."""
    results = []
    for channel in renderer.config.channels:
        for name in BUILTIN_TEXTS:
            if not renderer.uses_builtin(name, channel):
                continue
            result = TemplateCheck(template=name, channel=channel, builtin=True)
            for language in BUILTIN_TEXTS[name]:
                for customer in customers[:1]:
                    try:
                        msg = renderer.render(
                            name, channel, {**customer, "locale": language}, now=now, extra=extra
                        )
                    except RenderError as exc:
                        result.errors.append(str(exc))
                        continue
                    result.sources.append(msg.source)
                    result.renders += 1
                    result.max_length = max(result.max_length, len(msg.body))
            results.append(result)
    return results


def _variant_locales(files: Iterable[str], channel: str) -> list[str | None]:
    locales: list[str | None] = [None]
    for file in sorted(files):
        parts = file[: -len(TEMPLATE_SUFFIX)].split(".")
        if parts[0] in (channel, "default") and len(parts) > 1:
            tag = parts[2] if parts[1] == "html" and len(parts) > 2 else parts[1]
            if tag != "html" and tag not in locales:
                locales.append(tag)
    return locales


def _check_channel(
    renderer: Renderer,
    name: str,
    channel: str,
    files: frozenset[str],
    customers: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    now: datetime,
) -> TemplateCheck | None:
    config = renderer.config
    medium = channel_medium(config, channel)
    result = TemplateCheck(template=name, channel=channel)
    campaign = sample_campaign(name)
    survey = sample_survey(name, config.sender_name)
    worst = -1
    seen: set[tuple[str | None, int | None, str]] = set()
    variants = _variant_locales(files, channel)
    for variant in variants:
        if not renderer.exists(name, channel, variant):
            continue
        for customer in customers:
            person = dict(customer)
            if len(variants) > 1:
                # render each language file, not only those the sample customers would pick
                person["locale"] = variant
            try:
                entry = renderer._entry(name, channel, person.get("locale"))
                for source in (entry.source, entry.html.filename if entry.html else None):
                    if source and source not in result.sources:
                        result.sources.append(str(source))
                msg = renderer.render(
                    name,
                    channel,
                    person,
                    campaign=campaign,
                    survey=survey,
                    unsubscribe_url="https://example.com/unsubscribe/sample",
                    now=now,
                    extra=extra,
                )
            except RenderError as exc:
                # one line per problem, not one per sample customer
                key = (exc.source, exc.line, exc.problem)
                if key not in seen:
                    seen.add(key)
                    result.errors.append(str(exc))
                continue
            result.renders += 1
            result.max_length = max(result.max_length, len(msg.body))
            if medium == "sms":
                encoding, segments = sms_segments(msg.body)
                if segments > worst:
                    worst, result.encoding, result.segments = segments, encoding, segments
            if medium == "whatsapp" and len(msg.body) > WHATSAPP_LIMIT:
                problem = (
                    f"{msg.source}: body is {len(msg.body)} characters; WhatsApp allows "
                    f"{WHATSAPP_LIMIT}"
                )
                if problem not in result.errors:
                    result.errors.append(problem)
            if msg.subject is not None:
                result.max_subject = max(result.max_subject or 0, len(msg.subject))
                if len(msg.subject) > SUBJECT_LIMIT:
                    warning = (
                        f"{msg.source}: subject is {len(msg.subject)} characters (over "
                        f"{SUBJECT_LIMIT}; mail clients cut it)"
                    )
                    if warning not in result.warnings:
                        result.warnings.append(warning)
            if medium == "email" and msg.html is None and any(".html" in f for f in files):
                warning = f"{msg.source}: no HTML in this language; customers get text only"
                if warning not in result.warnings:
                    result.warnings.append(warning)
    if not result.sources and not result.errors:
        return None
    return result


def check_workspace(
    config: Config, store: Store, names: Sequence[str] | None, sample: int
) -> tuple[list[TemplateCheck], bool]:
    """`templates check`: real customers from the store, else built-in samples.

    Returns the results and whether built-in sample customers were used.
    """
    customers = list(store.customers.select_customers(None, limit=sample))
    if customers:
        return check_templates(config, customers, names), False
    return check_templates(config, SAMPLE_CUSTOMERS[:sample] or SAMPLE_CUSTOMERS[:1], names), True


@dataclass(frozen=True)
class Preview:
    """`templates render`: one message for one customer, with its SMS encoding."""

    template: str
    channel: str
    customer_id: str
    message: Rendered
    encoding: str | None = None
    segments: int | None = None
    campaign: str | None = None  # whose values filled the context; None: sample values

    def as_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "channel": self.channel,
            "customer_id": self.customer_id,
            "campaign": self.campaign,
            "source": self.message.source,
            "subject": self.message.subject,
            "preheader": self.message.preheader,
            "body": self.message.body,
            "html": self.message.html,
            "encoding": self.encoding,
            "segments": self.segments,
        }


def preview(
    config: Config,
    store: Store,
    name: str,
    customer_id: str,
    channel: str | None = None,
    campaign: Campaign | None = None,
) -> Preview:
    """Render ``name`` for one stored customer on ``channel`` (default: their preferred one).

    With ``campaign``, its name, kind and survey (the question in the customer's language)
    fill the context, as in a real send; otherwise they are sample data, as in `templates
    check`. Event values are always sample data.
    """
    customer = store.customers.require_customer(customer_id)
    if channel is None:
        preferred = customer.get("preferred_channel")
        channel = preferred if preferred in config.channels else next(iter(config.channels), None)
        if channel is None:
            raise UsageError("no channel is configured in outreach.toml; add [channels.NAME]")
    config.channel(channel)
    now = clock.now()
    context = sample_campaign(name)
    survey: dict[str, Any] | None = sample_survey(name, config.sender_name)
    if campaign is not None:
        from ..campaigns.files import localized_question

        context = {"name": campaign.name, "kind": campaign.kind}
        survey = None
        if campaign.survey is not None:
            snapshot = campaign.survey.snapshot()
            survey = {**snapshot, "question": localized_question(snapshot, customer.get("locale"))}
    message = Renderer(config).render(
        name,
        channel,
        customer,
        campaign=context,
        survey=survey,
        unsubscribe_url="https://example.com/unsubscribe/sample",
        now=now,
        extra=sample_extra(config, now),
    )
    encoding = segments = None
    if channel_medium(config, channel) == "sms":
        encoding, segments = sms_segments(message.body)
    return Preview(
        name,
        channel,
        customer_id,
        message,
        encoding,
        segments,
        campaign.name if campaign is not None else None,
    )


# --- SMS segments -----------------------------------------------------------------------

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def sms_segments(text: str) -> tuple[str, int]:
    """("GSM-7" | "UCS-2", segments): 160/153 GSM-7 septets, or 70/67 UCS-2 units.

    Extension-table characters take two septets and astral characters (most emoji) two
    UTF-16 units; neither is split across segments, as handsets do.
    """
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        widths = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return "GSM-7", _segments(widths, 160, 153)
    widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return "UCS-2", _segments(widths, 70, 67)


def _segments(widths: Sequence[int], single: int, part: int) -> int:
    total = sum(widths)
    if total == 0:
        return 0
    if total <= single:
        return 1
    count, used = 1, 0
    for width in widths:
        if used + width > part:
            count, used = count + 1, 0
        used += width
    return count
