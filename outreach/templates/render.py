"""Sandboxed, per-channel, localized message rendering.

A ``Renderer`` is built once per run. It owns one ``ImmutableSandboxedEnvironment`` with
``StrictUndefined``, an index of the files of each ``templates/NAME/`` folder (listed once)
and the compiled templates it resolved, so that rendering one message is dictionary
lookups plus running already-compiled code: no file I/O and no environment per message.

Lookup for ``render("nps", "sms", customer)`` of a ``nl-BE`` customer tries
``sms.nl-BE.j2``, ``sms.nl.j2``, ``sms.j2``, then ``default.nl-BE.j2``, ``default.nl.j2``,
``default.j2``. On a channel that addresses people by email the rendered text starts with
header lines (``Subject:`` required, ``Preheader:`` optional) and a blank line;
``email.html[.LOCALE].j2`` (also accepted: ``email.LOCALE.html.j2``) is the HTML
alternative, autoescaped. The HTML is only used when it is in the language of the text: a
Dutch text never travels with an English HTML part.

The environment and its limits are in ``sandbox.py``. Every failure becomes a
``RenderError`` naming file, line, problem and customer.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from jinja2 import Template, TemplateNotFound, TemplateSyntaxError
from jinja2.debug import rewrite_traceback_stack
from jinja2.exceptions import SecurityError, UndefinedError

from .. import clock
from ..channels import address_kind
from ..config import zone_or
from ..errors import RenderError
from ..locales import locale_chain
from .builtin import BUILTIN_TEXTS, LANGUAGE_NAMES, builtin_language
from .filters import LOCALE_KEY, ZONE_KEY, babel_locale
from .limits import BUDGET, MAX_OUTPUT_CHARS, MAX_RENDER_SECONDS, MAX_SPENT, Limit
from .sandbox import TEMPLATE_GLOBALS, Record, build_environment

if TYPE_CHECKING:
    from ..config import Config

TEMPLATE_SUFFIX = ".j2"
_HEADER = re.compile(r"([A-Za-z][A-Za-z-]*)[ \t]*:[ \t]*(.*)")
_BLANK_LINE = re.compile(r"\n[ \t]*(?:\n|\Z)")


@dataclass(frozen=True)
class Rendered:
    """One rendered message; ``source`` is the template file used (templates/nps/sms.j2)."""

    body: str
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    source: str = ""


@dataclass(frozen=True)
class _Entry:
    text: Template
    html: Template | None
    email: bool
    source: str
    builtin: bool = False  # one of BUILTIN_TEXTS: the workspace has no file for it


def _channel_is_email(config: Config, channel: str) -> bool:
    return address_kind(config.channel(channel)) == "email"


class Renderer:
    """Renders templates of one workspace; build once per run, call ``render`` per message."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = config.templates_dir
        self.env = build_environment(self.root)
        self._files: dict[str, frozenset[str]] = {}
        self._entries: dict[tuple[str, str, str | None], _Entry] = {}
        self._email: dict[str, bool] = {}

    # lookup

    def files(self, name: str) -> frozenset[str]:
        """The file names in ``templates/NAME/`` (listed once)."""
        found = self._files.get(name)
        if found is None:
            folder = self.root / name
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name:
                found = frozenset()
            else:
                try:
                    found = frozenset(
                        p.name for p in folder.iterdir() if p.name.endswith(TEMPLATE_SUFFIX)
                    )
                except OSError:
                    found = frozenset()
            self._files[name] = found
        return found

    def candidates(self, channel: str, locale: str | None) -> list[str]:
        """Every file name the lookup tries, most specific first."""
        chain = locale_chain(locale)
        out: list[str] = []
        for base in (channel, "default"):
            out += [f"{base}.{tag}{TEMPLATE_SUFFIX}" for tag in chain]
            out.append(f"{base}{TEMPLATE_SUFFIX}")
        return out

    def _find(self, name: str, channel: str, locale: str | None) -> tuple[str, str | None]:
        files = self.files(name)
        candidates = self.candidates(channel, locale)
        for file in candidates:
            if file in files:
                parts = file[: -len(TEMPLATE_SUFFIX)].split(".", 1)
                return file, (parts[1] if len(parts) > 1 else None)
        looked = ", ".join(f"templates/{name}/{f}" for f in candidates)
        if not (self.root / name).is_dir():
            problem = f'no template "{name}": templates/{name}/ does not exist'
        else:
            problem = f'no template "{name}" for channel {channel}'
        raise RenderError(
            f"{problem}; looked for {looked}", hint=f"create templates/{name}/{channel}.j2"
        )

    def _html_file(self, name: str, channel: str, text_locale: str | None) -> str | None:
        """The HTML alternative in exactly the text's language (never English under Dutch)."""
        files = self.files(name)
        if text_locale is None:
            wanted: tuple[str, ...] = (f"{channel}.html{TEMPLATE_SUFFIX}",)
        else:
            wanted = (
                f"{channel}.html.{text_locale}{TEMPLATE_SUFFIX}",
                f"{channel}.{text_locale}.html{TEMPLATE_SUFFIX}",
            )
        return next((f for f in wanted if f in files), None)

    def exists(self, name: str, channel: str, locale: str | None = None) -> bool:
        """Does a template resolve for this name, channel and locale?"""
        try:
            self._find(name, channel, locale)
        except RenderError:
            return False
        return True

    def is_email(self, channel: str) -> bool:
        """Does ``channel`` address people by email (so templates carry a Subject)?"""
        known = self._email.get(channel)
        if known is None:
            known = self._email[channel] = _channel_is_email(self.config, channel)
        return known

    def compile(self, relative: str, customer_id: Any = None) -> Template:
        """The compiled template ``NAME/FILE`` (cached by the environment)."""
        try:
            return self.env.get_template(relative)
        except TemplateSyntaxError as exc:
            raise RenderError(
                f"syntax error: {exc.message}",
                source=exc.filename or f"templates/{relative}",
                line=exc.lineno,
                customer_id=customer_id,
            ) from None
        except TemplateNotFound as exc:
            raise RenderError(str(exc.message or exc), source=f"templates/{relative}") from None

    def uses_builtin(self, name: str, channel: str) -> bool:
        """Does ``name`` on ``channel`` fall back to its built-in text (no file for it)?"""
        return name in BUILTIN_TEXTS and not self.exists(name, channel)

    def _builtin_entry(self, name: str, channel: str, locale: str | None) -> _Entry:
        language = builtin_language(name, locale)
        try:
            text = self.env.from_string(BUILTIN_TEXTS[name][language])
        except TemplateSyntaxError as exc:  # a bug here, not in the workspace
            raise RenderError(f"built-in {name}: {exc.message}") from None
        return _Entry(
            text=text,
            html=None,
            email=self.is_email(channel),
            source=f"built-in {name} ({LANGUAGE_NAMES[language]})",
            builtin=True,
        )

    def _entry(self, name: str, channel: str, locale: str | None) -> _Entry:
        key = (name, channel, locale)
        entry = self._entries.get(key)
        if entry is None and name in BUILTIN_TEXTS and not self.exists(name, channel, locale):
            entry = self._entries[key] = self._builtin_entry(name, channel, locale)
        if entry is None:
            file, matched = self._find(name, channel, locale)
            email = self.is_email(channel)
            html_file = self._html_file(name, channel, matched) if email else None
            entry = _Entry(
                text=self.compile(f"{name}/{file}"),
                html=self.compile(f"{name}/{html_file}") if html_file else None,
                email=email,
                source=f"templates/{name}/{file}",
            )
            self._entries[key] = entry
        return entry

    # rendering

    def render(
        self,
        name: str,
        channel: str,
        customer: Mapping[str, Any],
        *,
        campaign: Mapping[str, Any] | None = None,
        survey: Mapping[str, Any] | None = None,
        unsubscribe_url: str | None = None,
        now: datetime | None = None,
        extra: Mapping[str, Any] | None = None,
        reply_subject: str | None = None,
    ) -> Rendered:
        """Render template ``name`` for ``customer`` on ``channel``; RenderError on failure.

        ``reply_subject`` is the subject of an email that answers another (``Re: …``): a
        template without a ``Subject:`` line (a ``default.j2`` for every channel) gets it,
        instead of failing as an email without subject."""
        customer_id = customer.get("id")
        locale = customer.get("locale")
        try:
            entry = self._entry(name, channel, locale)
        except RenderError as exc:
            raise exc.for_customer(customer_id) from None
        zone = zone_or(customer.get("timezone"), self.config.timezone)
        context: dict[str, Any] = {
            "customer": Record("customer", customer),
            "campaign": Record("campaign", campaign),
            "survey": Record("survey", survey),
            "sender": self.config.sender_name,
            "now": (now or clock.now()).astimezone(zone),
            "unsubscribe_url": unsubscribe_url,
            LOCALE_KEY: babel_locale(locale),
            ZONE_KEY: zone,
        }
        # added after, not unpacked first ({**TEMPLATE_GLOBALS, ...}): that builds the
        # literal as a second dict and merges it, 1 % of a render (cachegrind)
        context.update(TEMPLATE_GLOBALS)
        if extra:
            for key, value in extra.items():
                context[key] = Record(key, value) if type(value) is dict else value
        text = self._run(entry.text, context, entry.source, customer_id)
        if not entry.email:
            return Rendered(body=text.strip(), source=entry.source)
        if entry.builtin:
            reply_subject = reply_subject or self.config.sender_name
        subject, preheader, body = parse_email(
            text, entry.source, customer_id, default_subject=reply_subject
        )
        html = None
        if entry.html is not None:
            html = self._run(entry.html, context, str(entry.html.filename), customer_id).strip()
        return Rendered(
            body=body, subject=subject, preheader=preheader, html=html, source=entry.source
        )

    def _run(
        self, template: Template, context: dict[str, Any], source: str, customer_id: Any
    ) -> str:
        token = BUDGET.set([time.perf_counter() + MAX_RENDER_SECONDS, MAX_SPENT])
        try:
            pieces: list[str] = []
            size = 0
            output = template.root_render_func(template.new_context(context, shared=True))
            # counted in batches (C-level islice/sum) so a message costs no Python per piece;
            # memory before a check is at most a batch of pieces
            while chunk := list(islice(output, 16)):
                size += sum(map(len, chunk))
                if size > MAX_OUTPUT_CHARS:
                    raise RenderError(
                        f"output is over {MAX_OUTPUT_CHARS} characters",
                        source=source,
                        customer_id=customer_id,
                        hint="a loop that repeats too often?",
                    )
                pieces += chunk
            return "".join(pieces)
        except RenderError as exc:
            raise exc.for_customer(customer_id) from None
        except TemplateSyntaxError as exc:  # an include that does not compile
            raise RenderError(
                f"syntax error: {exc.message}",
                source=exc.filename or source,
                line=exc.lineno,
                customer_id=customer_id,
            ) from None
        except (Exception, RecursionError) as exc:
            raise _wrap(exc, source, customer_id) from None
        finally:
            BUDGET.reset(token)


def _wrap(exc: BaseException, source: str, customer_id: Any) -> RenderError:
    """A RenderError for an exception raised inside template code, with the template line."""
    where, line = source, None
    tb = exc.__traceback__
    # maps generated-code frames back to template file and line
    with contextlib.suppress(Exception):
        tb = rewrite_traceback_stack().__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith("templates/"):
            where, line = filename, tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, TemplateNotFound):
        problem = f"include refused: {exc.message or exc}"
    elif isinstance(exc, Limit):
        problem = f"limit: {exc}"
    elif isinstance(exc, SecurityError):
        problem = f"sandbox violation: {exc}"
    elif isinstance(exc, UndefinedError):
        problem = str(exc)
    elif isinstance(exc, RecursionError):
        problem = "recursion too deep (a macro that calls itself without end?)"
    else:
        problem = f"{type(exc).__name__}: {exc}"
    return RenderError(problem, source=where, line=line, customer_id=customer_id)


def parse_email(
    text: str, source: str, customer_id: Any = None, *, default_subject: str | None = None
) -> tuple[str, str | None, str]:
    """Split rendered email text into (subject, preheader, body); text without header
    lines is all body under ``default_subject`` when one is given."""
    text = text.lstrip("\r\n")
    blank = _BLANK_LINE.search(text)
    head, body = (text[: blank.start()], text[blank.end() :]) if blank else (text, "")
    headers: dict[str, str] = {}
    for line in head.splitlines():
        match = _HEADER.fullmatch(line.strip())
        if not match or match[1].lower() not in ("subject", "preheader"):
            if not headers and default_subject:
                return default_subject, None, text.strip()
            if not headers:
                raise RenderError(
                    "missing Subject: header",
                    source=source,
                    line=1,
                    customer_id=customer_id,
                    hint="start the file with Subject: …, optionally Preheader: …, then a "
                    "blank line and the text",
                )
            what = f"unknown header {match[1]}:" if match else "no blank line"
            raise RenderError(
                f"{what} after the headers",
                source=source,
                customer_id=customer_id,
                hint="headers are Subject: and Preheader:, then a blank line, then the text",
            )
        headers[match[1].lower()] = match[2].strip()
    subject = headers.get("subject")
    if not subject:
        raise RenderError(
            "missing Subject: header" if subject is None else "the Subject: is empty",
            source=source,
            line=1,
            customer_id=customer_id,
            hint="start the file with Subject: …, then a blank line and the text",
        )
    return subject, headers.get("preheader") or None, body.strip()
