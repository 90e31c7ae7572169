"""The sandboxed Jinja environment every template runs in, with its time and size limits.

A template is untrusted input: whoever edits it must not be able to run code, read files
or stall a run. Beyond Jinja's sandbox (no ``_`` attributes, no mutation of lists and
dicts), the environment here
- loads and includes only files inside ``templates/`` (no absolute paths, ``..`` or symlinks
  that lead out);
- wraps every ``for`` loop's iterable, and checks on every call, a per-render deadline
  (``MAX_RENDER_SECONDS``, set by the renderer in ``DEADLINE``), so nested loops and
  recursive macros end;
- refuses operations whose result would exceed ``MAX_OUTPUT_CHARS`` before doing them
  (``'x' * 10**9``, huge widths and paddings, ``replace`` blow-ups, giant powers);
- has no ``namespace()``, so nothing can grow from one loop iteration to the next.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateNotFound, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import missing

from ..errors import RenderError
from .filters import date_filter, first_name, money_filter
from .headers import HEADER_FILTER, mark_header_values, single_line

MAX_OUTPUT_CHARS = 64 * 1024
MAX_RENDER_SECONDS = 0.5
# a padding width above this is never a message, only an attack
MAX_WIDTH = 10_000

DEADLINE: ContextVar[float] = ContextVar("outreach_template_deadline", default=0.0)
# printf fields wider than MAX_WIDTH or with a computed width (%*d), and str.format specs
# likewise ({:>99999}, {:>{w}}): the only ways a format string can blow up
_WIDE_FORMAT = re.compile(
    r"""%(?:\([^)]*\))?[-+\ \#0]*(?:\d{5,}|\*|\d*\.(?:\d{5,}|\*))  # printf width/precision
    | \{[^{}]*:[^{}]*(?:\d{5,}|\{)                           # str.format spec""",
    re.VERBOSE,
)
# string methods and filters whose numeric argument is an output width or count
_WIDTH_TAKING = frozenset({"center", "ljust", "rjust", "zfill", "batch", "slice"})


class Limit(SecurityError):
    """A template tried to use more time or output than one message may."""


class Record(dict[str, Any]):
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
        if isinstance(obj, Record):
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


def _check_deadline() -> None:
    if time.perf_counter() > DEADLINE.get():
        raise Limit(
            f"rendering took over {MAX_RENDER_SECONDS} s (a loop that never ends?)"
        )


def _guard(iterable: Any) -> Iterator[Any]:
    """Wraps every for loop's iterable: a loop cannot outlive the render deadline."""
    for count, item in enumerate(iterable):
        if count & 63 == 0:
            _check_deadline()
        yield item


def _too_large(what: str) -> Limit:
    return Limit(f"{what} would make the message larger than {MAX_OUTPUT_CHARS} characters")


def _check_arguments(
    name: str, target: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Refuse a string operation before it allocates more than a message may hold."""
    values = [*args, *kwargs.values()]
    if name in _WIDTH_TAKING:
        for value in values:
            if isinstance(value, int) and abs(value) > MAX_WIDTH:
                raise Limit(f"{name}(): a width of {value} is too large for a message")
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
        if type(obj) is Record:
            try:
                return dict.__getitem__(obj, attribute)
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        if not _is_html(name):
            mark_header_values(tree)
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
                raise Limit(f"{left} ** {right} is too large a number")
        elif operator == "%" and isinstance(left, str):
            _check_arguments("%", left, right if isinstance(right, tuple) else (right,), {})
        return super().call_binop(context, operator, left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # A class's methods are unbound: ``dict.update(customer, …)`` would change any
        # mapping it is handed, which the sandbox's check of bound methods never sees.
        if isinstance(obj, type):
            return False
        return super().is_safe_attribute(obj, attr, value)

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


def new_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    """``dict(a=1)`` in a template: a new mapping, which the sandbox keeps read-only.

    Not the ``dict`` type itself, whose unbound methods (``dict.update(customer, …)``)
    would let a template change the data it was given and carry state between loop
    passes and renders.
    """
    return dict(*args, **kwargs)


# what every template may call, also put in each render's context
TEMPLATE_GLOBALS: dict[str, Any] = {"range": safe_range, "dict": new_dict}


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
    env.filters[HEADER_FILTER] = single_line
    env.filters["first_name"] = first_name
    env.filters["date"] = date_filter
    env.filters["money"] = money_filter
    # namespace() is the only way to carry a value across loop iterations; without it
    # nothing can double itself forty times. lipsum/cycler/joiner are never messages.
    env.globals = dict(TEMPLATE_GLOBALS)
    return env
