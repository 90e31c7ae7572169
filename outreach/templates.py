"""Sandboxed, per-channel, localized message rendering (SPEC §4).

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

A template is untrusted input: whoever edits it must not be able to run code, read files
or stall a run. Beyond Jinja's sandbox (no ``_`` attributes, no mutation of lists and
dicts), the environment here
- loads and includes only files inside ``templates/`` (no absolute paths, ``..`` or symlinks
  that lead out);
- wraps every ``for`` loop's iterable, and checks on every call, a per-render deadline
  (``MAX_RENDER_SECONDS``), so nested loops and recursive macros end;
- refuses operations whose result would exceed ``MAX_OUTPUT_CHARS`` before doing them
  (``'x' * 10**9``, huge widths and paddings, ``replace`` blow-ups, giant powers), and stops
  collecting output past that size;
- has no ``namespace()``, so nothing can grow from one loop iteration to the next.
Every failure becomes a ``RenderError`` naming file, line, problem and customer.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    nodes,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import missing

from . import clock
from .config import zone_or
from .errors import TemplateError
from .locales import locale_chain

if TYPE_CHECKING:
    from .config import Config

MAX_OUTPUT_CHARS = 64 * 1024
MAX_RENDER_SECONDS = 0.5
# a padding width above this is never a message, only an attack
MAX_WIDTH = 10_000
TEMPLATE_SUFFIX = ".j2"

_DEADLINE: ContextVar[float] = ContextVar("outreach_template_deadline", default=0.0)
_LOCALE_KEY = "outreach:locale"  # not a Jinja identifier, so templates cannot set it
_ZONE_KEY = "outreach:zone"
_HEADER = re.compile(r"([A-Za-z][A-Za-z-]*)[ \t]*:[ \t]*(.*)")
_BLANK_LINE = re.compile(r"\n[ \t]*(?:\n|\Z)")
# printf fields wider than MAX_WIDTH or with a computed width (%*d), and str.format specs
# likewise ({:>99999}, {:>{w}}): the only ways a format string can blow up
_WIDE_FORMAT = re.compile(
    r"""%(?:\([^)]*\))?[-+\ \#0]*(?:\d{5,}|\*|\d*\.(?:\d{5,}|\*))  # printf width/precision
    | \{[^{}]*:[^{}]*(?:\d{5,}|\{)                           # str.format spec""",
    re.VERBOSE,
)
# string methods and filters whose numeric argument is an output width or count
_WIDTH_TAKING = frozenset({"center", "ljust", "rjust", "zfill", "batch", "slice"})


class RenderError(TemplateError):
    """A template could not be found, compiled or rendered for one customer.

    ``str(err)`` is the one line for people; the parts are kept for reports and for the
    sending engine, which records the message as skipped with reason ``template_error``.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        line: int | None = None,
        customer_id: Any = None,
        hint: str = "",
    ) -> None:
        where = source or "templates"
        if line is not None:
            where += f":{line}"
        who = f" (customer {customer_id})" if customer_id is not None else ""
        super().__init__(f"{where}: {problem}{who}{'; ' + hint if hint else ''}")
        self.problem = problem
        self.hint = hint
        self.source = source
        self.line = line
        self.customer_id = customer_id

    def for_customer(self, customer_id: Any) -> RenderError:
        """This error, naming ``customer_id`` when it did not name a customer yet."""
        if self.customer_id is not None or customer_id is None:
            return self
        return RenderError(
            self.problem, source=self.source, line=self.line, customer_id=customer_id,
            hint=self.hint,
        )


@dataclass(frozen=True)
class Rendered:
    """One rendered message; ``source`` is the template file used (templates/nps/sms.j2)."""

    body: str
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    source: str = ""


class _Limit(SecurityError):
    """A template tried to use more time or output than one message may."""


class _Record(dict[str, Any]):
    """A context mapping that knows its own name, for "unknown variable customer.plann"."""

    __slots__ = ("_outreach_name",)

    def __init__(self, name: str, values: Mapping[str, Any] | None) -> None:
        super().__init__(values or ())
        self._outreach_name = name


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names the variable path and suggests a fix."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        obj = self._undefined_obj
        if obj is missing:
            return f"unknown variable {name}"
        if isinstance(obj, _Record):
            owner = obj._outreach_name
            if not obj:
                return f"unknown variable {owner}.{name} ({owner} is not set for this message)"
            close = difflib.get_close_matches(str(name), [str(k) for k in obj], 1)
            hint = (
                f"; did you mean {owner}.{close[0]}?"
                if close
                else f"; {owner} has {', '.join(sorted(map(str, obj))[:15])}"
            )
            return f"unknown variable {owner}.{name}{hint}"
        return f"{type(obj).__name__} value has no attribute {name!r}"


# --- locale, time zone ----------------------------------------------------------------


@lru_cache(maxsize=256)
def _babel_locale(tag: str | None) -> Any:
    from babel import Locale, UnknownLocaleError

    for candidate in (*locale_chain(tag), "en"):
        try:
            return Locale.parse(candidate.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    raise AssertionError("babel always knows en")


# --- filters ----------------------------------------------------------------------------


def first_name(value: Any, default: str = "") -> str:
    """The first given name of a full name: "Anna de Vries" → "Anna"; "Vries, Anna" → "Anna"."""
    if value is None:
        return default
    text = str(value).strip()
    if "," in text:
        text = text.split(",", 1)[1].strip() or text.split(",", 1)[0]
    words = text.split()
    return words[0] if words else default


def _as_datetime(value: Any, zone: ZoneInfo) -> datetime | date:
    if isinstance(value, datetime):
        aware: datetime = value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))
        return aware.astimezone(zone)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        moment: datetime = clock.parse_time(text, what="date value")
        return moment.astimezone(zone)
    raise TypeError(f"date filter needs a date or time, got {type(value).__name__}")


@pass_context
def date_filter(context: Context, value: Any, format: str = "medium") -> str:
    """A date or time in the customer's locale and time zone (Babel pattern or short…full)."""
    from babel import dates

    locale = context.get(_LOCALE_KEY) or _babel_locale(None)
    zone = context.get(_ZONE_KEY) or ZoneInfo("UTC")
    moment = _as_datetime(value, zone)
    if isinstance(moment, datetime):
        return str(dates.format_datetime(moment, format, tzinfo=zone, locale=locale))
    return str(dates.format_date(moment, format, locale=locale))


@pass_context
def money_filter(context: Context, value: Any, currency: str) -> str:
    """An amount in ``currency`` (ISO 4217) formatted for the customer's locale."""
    from babel import numbers

    locale = context.get(_LOCALE_KEY) or _babel_locale(None)
    try:
        amount = value if isinstance(value, int | float | Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"money filter needs a number, got {value!r}") from None
    return str(numbers.format_currency(amount, str(currency).upper(), locale=locale))


# --- limits -----------------------------------------------------------------------------


def _check_deadline() -> None:
    if time.perf_counter() > _DEADLINE.get():
        raise _Limit(
            f"rendering took over {MAX_RENDER_SECONDS} s (a loop that never ends?)"
        )


def _guard(iterable: Any) -> Iterator[Any]:
    """Wraps every for loop's iterable: a loop cannot outlive the render deadline."""
    for count, item in enumerate(iterable):
        if count & 63 == 0:
            _check_deadline()
        yield item


def _too_large(what: str) -> _Limit:
    return _Limit(f"{what} would make the message larger than {MAX_OUTPUT_CHARS} characters")


def _check_arguments(
    name: str, target: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Refuse a string operation before it allocates more than a message may hold."""
    values = [*args, *kwargs.values()]
    if name in _WIDTH_TAKING:
        for value in values:
            if isinstance(value, int) and abs(value) > MAX_WIDTH:
                raise _Limit(f"{name}(): a width of {value} is too large for a message")
    if not isinstance(target, str):
        return
    if name in ("format", "format_map", "%") and _WIDE_FORMAT.search(target):
        raise _too_large(f"{name} with a field wider than {MAX_WIDTH} or a computed width")
    if name == "expandtabs":
        size = len(target) * (int(values[0]) if values else 8)
        if size > MAX_OUTPUT_CHARS:
            raise _too_large("expandtabs()")
    elif name == "replace" and len(values) >= 2:
        old, new = str(values[0]), str(values[1])
        hits = target.count(old) if old else len(target) + 1
        if len(target) + hits * max(0, len(new) - len(old)) > MAX_OUTPUT_CHARS:
            raise _too_large("replace()")
    elif name == "indent" and values:
        width = values[0]
        pad = len(width) if isinstance(width, str) else int(width)
        if len(target) + (target.count("\n") + 1) * pad > MAX_OUTPUT_CHARS:
            raise _too_large("indent")


def _limited_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_arguments(name, value if isinstance(value, str) else None, args, kwargs)
        return func(value, *args, **kwargs)

    wrapper.__name__ = func.__name__
    return wrapper


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox plus time and size limits (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``customer.plan``: the record's field first, where jinja tries the attribute
        first and fails over to the item through an AttributeError on every field a
        template reads. It also makes a column called ``items`` or ``values`` mean the
        column, not the dict method."""
        if type(obj) is _Record:
            try:
                return dict.__getitem__(obj, attribute)
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, "outreach_guard", [], [], None, None, lineno=loop.lineno
            )
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_OUTPUT_CHARS
                ):
                    raise _too_large("repeating a value")
        elif operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * max(abs(left), 2).bit_length() > 4096
            ):
                raise _Limit(f"{left} ** {right} is too large a number")
        elif operator == "%" and isinstance(left, str):
            _check_arguments("%", left, right if isinstance(right, tuple) else (right,), {})
        return super().call_binop(context, operator, left, right)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        if isinstance(obj, Undefined):
            # ``cycler.__init__``: the real problem is the unknown variable, say that
            obj._fail_with_undefined_error()
        return super().unsafe_undefined(obj, attribute)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        target = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(target, str):
            _check_arguments(getattr(__obj, "__name__", "call"), target, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        # a macro's output is built in memory before it is printed: check it here, or a
        # macro that calls itself twice doubles its size at every level
        if isinstance(result, str) and len(result) > MAX_OUTPUT_CHARS:
            called = getattr(__obj, "name", None) or getattr(__obj, "__name__", "a call")
            raise _too_large(f"the result of {called}()")
        return result


class _Loader(BaseLoader):
    """Loads ``templates/…`` files only; refuses anything that would lead outside."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = root.resolve()

    def get_source(
        self, environment: Any, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        pieces = template.replace("\\", "/").split("/")
        if (
            template.startswith(("/", "\\"))
            or re.match(r"[A-Za-z]:", template)
            or any(p in ("", ".", "..") for p in pieces)
        ):
            raise TemplateNotFound(
                template,
                f"{template!r} is outside templates/; templates can include only files in "
                "the templates folder, named like _partials/footer.j2",
            )
        path = self.root.joinpath(*pieces)
        if not path.resolve().is_relative_to(self.real_root):
            raise TemplateNotFound(
                template, f"{template!r} leads outside templates/ (a link?); refused"
            )
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise TemplateNotFound(template, f"templates/{template} does not exist") from None
        except OSError as exc:
            raise TemplateNotFound(
                template, f"templates/{template}: cannot read it ({exc.strerror})"
            ) from None
        display = "templates/" + "/".join(pieces)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise RenderError(
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                source=display,
                line=line,
                hint="save the file as UTF-8",
            ) from None
        return text.removeprefix("\ufeff"), display, lambda: True


def _is_html(name: str | None) -> bool:
    # called by Jinja for every render, so plain string work, no Path
    return name is not None and ".html" in name.rpartition("/")[2]


def build_environment(root: Path) -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment of a renderer: strict, size- and time-limited."""
    env = _Environment(
        loader=_Loader(root),
        undefined=_Undefined,
        autoescape=_is_html,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )
    for name in ("center", "indent", "format", "replace", "batch", "slice"):
        env.filters[name] = _limited_filter(name, env.filters[name])
    env.filters["outreach_guard"] = _guard
    env.filters["first_name"] = first_name
    env.filters["date"] = date_filter
    env.filters["money"] = money_filter
    # namespace() is the only way to carry a value across loop iterations; without it
    # nothing can double itself forty times. lipsum/cycler/joiner are never messages.
    env.globals = {"range": safe_range, "dict": dict}
    return env


# --- rendering --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    text: Template
    html: Template | None
    email: bool
    source: str


def _channel_is_email(config: Config, channel: str) -> bool:
    from .channels import address_kind

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

    def _entry(self, name: str, channel: str, locale: str | None) -> _Entry:
        key = (name, channel, locale)
        entry = self._entries.get(key)
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
    ) -> Rendered:
        """Render template ``name`` for ``customer`` on ``channel``; RenderError on failure."""
        customer_id = customer.get("id")
        locale = customer.get("locale")
        try:
            entry = self._entry(name, channel, locale)
        except RenderError as exc:
            raise exc.for_customer(customer_id) from None
        zone = zone_or(customer.get("timezone"), self.config.timezone)
        context: dict[str, Any] = {
            "range": safe_range,
            "dict": dict,
            "customer": _Record("customer", customer),
            "campaign": _Record("campaign", campaign),
            "survey": _Record("survey", survey),
            "sender": self.config.sender_name,
            "now": (now or clock.now()).astimezone(zone),
            "unsubscribe_url": unsubscribe_url,
            _LOCALE_KEY: _babel_locale(locale),
            _ZONE_KEY: zone,
        }
        if extra:
            for key, value in extra.items():
                context[key] = _Record(key, value) if type(value) is dict else value
        text = self._run(entry.text, context, entry.source, customer_id)
        if not entry.email:
            return Rendered(body=text.strip(), source=entry.source)
        subject, preheader, body = parse_email(text, entry.source, customer_id)
        html = None
        if entry.html is not None:
            html = self._run(entry.html, context, str(entry.html.filename), customer_id).strip()
        return Rendered(
            body=body, subject=subject, preheader=preheader, html=html, source=entry.source
        )

    def _run(
        self, template: Template, context: dict[str, Any], source: str, customer_id: Any
    ) -> str:
        token = _DEADLINE.set(time.perf_counter() + MAX_RENDER_SECONDS)
        try:
            pieces: list[str] = []
            size = 0
            output = template.root_render_func(template.new_context(context, shared=True))
            # counted in batches (C-level islice/sum) so a message costs no Python per piece;
            # memory before a check is at most a batch of pieces
            while chunk := list(islice(output, 64)):
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
            _DEADLINE.reset(token)


def _wrap(exc: BaseException, source: str, customer_id: Any) -> RenderError:
    """A RenderError for an exception raised inside template code, with the template line."""
    from jinja2.exceptions import UndefinedError

    where, line = source, None
    tb = exc.__traceback__
    try:
        from jinja2.debug import rewrite_traceback_stack

        # maps generated-code frames back to template file and line
        tb = rewrite_traceback_stack().__traceback__
    except Exception:
        pass
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith("templates/"):
            where, line = filename, tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, TemplateNotFound):
        problem = f"include refused: {exc.message or exc}"
    elif isinstance(exc, _Limit):
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


def parse_email(text: str, source: str, customer_id: Any = None) -> tuple[str, str | None, str]:
    """Split rendered email text into (subject, preheader, body)."""
    text = text.lstrip("\r\n")
    blank = _BLANK_LINE.search(text)
    head, body = (text[: blank.start()], text[blank.end() :]) if blank else (text, "")
    headers: dict[str, str] = {}
    for line in head.splitlines():
        match = _HEADER.fullmatch(line.strip())
        if not match or match[1].lower() not in ("subject", "preheader"):
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
