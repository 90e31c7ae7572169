"""What one render may spend: time, the size of each value it makes, and all of them together.

A template is a small program, and a few characters of it can ask for gigabytes
(``{{ [[0]*65536]*65536 }}``) or for a value that doubles at every ``{% set %}``. Checking
the output after the fact is too late: the memory is gone before the message is. So every
place where a template makes a value is bounded, before the allocation where the size can
be known in advance, right after it where it cannot (an operation then allocates at most a
small multiple of one value):

- one value weighs at most ``MAX_VALUE``; ``weight`` is about ``len(str(value))``, counted
  through lists, tuples and dicts (``[s, s, s]`` weighs three times ``s``), so printing or
  joining any value is bounded too;
- every value larger than ``_SMALL`` that a render makes is charged to the render's
  budget (``MAX_SPENT``), which bounds what it can hold at once in variables, macro
  frames and loops; small values are not counted, so ordinary templates pay nothing;
- a filter takes at most ``MAX_ITEMS`` items from an iterator, and numbers stay under
  ``MAX_INT_BITS``;
- the budget also carries the render's deadline (``MAX_RENDER_SECONDS``), checked in every
  loop, call and operator.

``sandbox.py`` calls these checks from the environment's hooks; ``render.py`` sets a
fresh budget in ``BUDGET`` for each render.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextvars import ContextVar
from itertools import islice
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import _PassArg
from markupsafe import Markup

MAX_OUTPUT_CHARS = 64 * 1024
MAX_VALUE = MAX_OUTPUT_CHARS
MAX_SPENT = 16 * MAX_OUTPUT_CHARS
MAX_ITEMS = 10_000
MAX_INT_BITS = 4096
MAX_RENDER_SECONDS = 0.5
# a padding width above this is never a message, only an attack
MAX_WIDTH = 10_000
_SMALL = 256

# printf fields wider than MAX_WIDTH or with a computed width (%*d), and str.format specs
# likewise ({:>99999}, {:>{w}}): the only ways a format field alone can blow up
_WIDE_FORMAT = re.compile(
    r"""%(?:\([^)]*\))?[-+\ \#0]*(?:\d{5,}|\*|\d*\.(?:\d{5,}|\*))  # printf width/precision
    | \{[^{}]*:[^{}]*(?:\d{5,}|\{)                           # str.format spec""",
    re.VERBOSE,
)
# string methods and filters whose numeric argument is an output width or count
_WIDTH_TAKING = frozenset({"center", "ljust", "rjust", "zfill", "batch", "slice"})


class Limit(SecurityError):
    """A template tried to use more time or memory than one message may."""


# A render's budget: [deadline (perf_counter), characters it may still make]. A list, not
# a class: one is made per message, and a list literal costs a fifth of an instance.
Budget = list[float]
_DEADLINE, _LEFT = 0, 1

# None outside a render (Jinja folding constants at compile time): nothing may be spent
BUDGET: ContextVar[Budget | None] = ContextVar("outreach_template_budget", default=None)


def check_deadline() -> None:
    budget = BUDGET.get()
    if budget is None or time.perf_counter() > budget[_DEADLINE]:
        raise Limit(f"rendering took over {MAX_RENDER_SECONDS} s (a loop that never ends?)")


def charge(size: int) -> None:
    budget = BUDGET.get()
    if budget is None:
        raise Limit("a large value outside a render")
    budget[_LEFT] -= size
    if budget[_LEFT] < 0:
        raise Limit(f"the template made over {MAX_SPENT:,} characters of values for one message")


def too_large(what: str) -> Limit:
    return Limit(f"{what} would be too large for a message (over {MAX_VALUE:,} characters)")


def weight(value: Any, cap: int = MAX_VALUE) -> int:
    """About ``len(str(value))``; counting stops once it passes ``cap``."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, dict):
        items: Iterable[Any] = (x for pair in value.items() for x in pair)
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 32  # floats, dates, ranges, generators: short when printed
    total = 2
    for item in items:
        total += weight(item, cap - total) + 2
        if total > cap:
            break
    return total


def checked(value: Any, what: str) -> Any:
    """``value``, just made: refused past MAX_VALUE, charged when it is large."""
    size = len(value) if isinstance(value, str | bytes) else weight(value)
    if size > _SMALL:
        if size > MAX_VALUE:
            raise too_large(what)
        charge(size)
    return value


def take_items(value: Any, what: str) -> Any:
    """An iterable a filter will walk: sized ones as they are, others read up to MAX_ITEMS."""
    if isinstance(value, str | Mapping):
        return value
    if isinstance(value, Sized):
        if len(value) > MAX_ITEMS:
            raise Limit(f"{what}: {len(value):,} items are too many for a message")
        return value
    if not isinstance(value, Iterable):
        return value
    items = list(islice(value, MAX_ITEMS + 1))
    if len(items) > MAX_ITEMS:
        raise Limit(f"{what}: over {MAX_ITEMS:,} items are too many for a message")
    return items


def guard(iterable: Any) -> Iterator[Any]:
    """Wraps every for loop's iterable: a loop cannot outlive the render deadline."""
    for count, item in enumerate(iterable):
        if count & 63 == 0:
            check_deadline()
        yield item


def safe_range(*args: int) -> range:
    """``range`` for templates: lazy, so only its length (for loops) is bounded here."""
    rng = range(*args)
    if len(rng) > 10 * MAX_ITEMS:
        raise Limit(f"range of {len(rng):,} numbers is too long for a message")
    return rng


# --- operators --------------------------------------------------------------------------


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left OPERATOR right`` before it allocates more than one value may hold."""
    check_deadline()
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, str | bytes | list | tuple)
                and isinstance(times, int)
                and times > 1
                and weight(seq, MAX_VALUE // times + 1) * times > MAX_VALUE
            ):
                raise too_large("repeating a value")
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            raise Limit("multiplying these numbers gives too large a number")
    elif operator == "+":
        if (
            isinstance(left, str | bytes | list | tuple)
            and isinstance(right, str | bytes | list | tuple)
            and weight(left) + weight(right) > MAX_VALUE
        ):
            raise too_large("joining these values")
    elif operator == "**":
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * max(abs(left), 2).bit_length() > MAX_INT_BITS
        ):
            raise Limit(f"{left} ** {right} is too large a number")
    elif operator == "%" and isinstance(left, str):
        check_format("%", left, right if isinstance(right, tuple) else (right,), {})


def check_format(name: str, template: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """``%``, ``format`` and ``format_map``: no wide fields, and fields times the largest
    value bounded."""
    if _WIDE_FORMAT.search(template):
        raise too_large(f"{name} with a field wider than {MAX_WIDTH} or a computed width")
    values: list[Any] = [*args, *kwargs.values()]
    for value in args:
        if isinstance(value, Mapping):  # '%(a)s' % {...} and format_map({...})
            values.extend(value.values())
    fields = template.count("%" if name == "%" else "{")
    if fields and values:
        largest = max(weight(v) for v in values)
        if len(template) + fields * largest > MAX_VALUE:
            raise too_large(f"{name} with {fields} fields")


def check_str_method(
    name: str, target: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Sequence[Any]:
    """Refuse a string method before it allocates; returns the arguments to call it with."""
    values = [*args, *kwargs.values()]
    if name in _WIDTH_TAKING:
        check_widths(name, values)
    elif name in ("format", "format_map"):
        check_format(name, target, args, kwargs)
    elif name == "expandtabs":
        if len(target) * (int(values[0]) if values else 8) > MAX_VALUE:
            raise too_large("expandtabs()")
    elif name == "replace" and len(values) >= 2:
        old, new = str(values[0]), str(values[1])
        hits = target.count(old) if old else len(target) + 1
        if len(target) + hits * max(0, len(new) - len(old)) > MAX_VALUE:
            raise too_large("replace()")
    elif name == "join" and args:
        items = take_items(args[0], "join()")
        size = len(target) * max(len(items) - 1, 0) + sum(weight(i) for i in items)
        if size > MAX_VALUE:
            raise too_large("join()")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        widest = max((weight(v) for v in args[0].values()), default=1)
        if len(target) * widest > MAX_VALUE:
            raise too_large("translate()")
    return args


def check_widths(name: str, values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and abs(value) > MAX_WIDTH:
            raise Limit(f"{name}(): a width of {value} is too large for a message")


# --- filters ----------------------------------------------------------------------------


def _indent_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    text, width = str(args[0]), args[1] if len(args) > 1 else kwargs.get("width", 4)
    pad = len(width) if isinstance(width, str) else int(width)
    if len(text) + (text.count("\n") + 1) * pad > MAX_VALUE:
        raise too_large("indent")
    return args


def _format_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    check_format("format", str(args[0]), args[1:], kwargs)
    return args


def _replace_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    check_str_method("replace", str(args[0]), args[1:3], {})
    return args


def _width_before(name: str) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
    def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        check_widths(name, [*args[1:], *kwargs.values()])
        return (take_items(args[0], name), *args[1:])

    return before


def _join_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    items = take_items(args[0], "join")
    separator = args[1] if len(args) > 1 else kwargs.get("d", "")
    size = len(str(separator)) * max(len(items) - 1, 0) + sum(weight(i) for i in items)
    if size > MAX_VALUE:
        raise too_large("join")
    return (items, *args[1:])


def _wordwrap_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    text = str(args[0])
    width = args[1] if len(args) > 1 else kwargs.get("width", 79)
    wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring")
    lines = len(text) // max(int(width), 1) + 1
    if len(text) + lines * len(str(wrap or "\n")) > MAX_VALUE:
        raise too_large("wordwrap")
    return args


def _tojson_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    check_widths("tojson", [*args[1:], *kwargs.values()])  # indent=10**6 on every line
    return args


def _urlize_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    # target= and rel= are written into every link: at most one link per 4 characters
    text = str(args[0])
    extra = sum(len(str(v)) for v in (*args[2:], *kwargs.values()) if isinstance(v, str))
    if len(text) * 3 + (len(text) // 4 + 1) * extra > MAX_VALUE:
        raise too_large("urlize")
    return args


def _sum_before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    items = take_items(args[0], "sum")
    start = args[2] if len(args) > 2 else kwargs.get("start", 0)
    if not isinstance(start, int | float):
        # each + copies what came before: n items cost n times the result
        total = sum(weight(i) for i in items) + weight(start)
        if total > MAX_VALUE or total * len(items) > 100 * MAX_VALUE:
            raise too_large("sum")
    return (items, *args[1:])


def _items_before(name: str) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
    def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        return (take_items(args[0], name), *args[1:])

    return before


_Before = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
# Jinja's filters that can make a value larger than the one they are given (or read an
# iterator to its end); the rest (default, length, first_name, trim, …) return at most
# what they got and run unwrapped.
BOUNDED_FILTERS: dict[str, _Before | None] = {
    "batch": _width_before("batch"),
    "slice": _width_before("slice"),
    "center": _width_before("center"),
    "indent": _indent_before,
    "format": _format_before,
    "replace": _replace_before,
    "join": _join_before,
    "wordwrap": _wordwrap_before,
    "sum": _sum_before,
    "tojson": _tojson_before,
    "urlize": _urlize_before,
    **{
        name: _items_before(name)
        for name in (
            "list",
            "sort",
            "unique",
            "reverse",
            "groupby",
            "dictsort",
            "last",
            "min",
            "max",
            "random",
        )
    },
    **dict.fromkeys(
        (
            "string",
            "pprint",
            "escape",
            "e",
            "forceescape",
            "urlencode",
            "xmlattr",
            "upper",
            "lower",
            "title",
            "capitalize",
            "truncate",
            "filesizeformat",
        )
    ),
}


def bounded_filter(
    name: str, func: Callable[..., Any], before: _Before | None
) -> Callable[..., Any]:
    """``func`` with its value (and arguments) checked before, and its result after."""
    skip = 0 if _PassArg.from_obj(func) is None else 1  # context/environment comes first
    what = f"the {name} filter"

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_deadline()  # weighing a result costs up to MAX_VALUE steps: not 64 per loop check
        if before is not None:
            args = (*args[:skip], *before(args[skip:], kwargs))
        return checked(func(*args, **kwargs), what)

    return wrapper


def bounded_concat(items: tuple[Any, ...], markup: bool) -> str:
    """``a ~ b ~ c``: the pieces are turned to text one by one and counted before joining."""
    check_deadline()
    pieces = []
    size = 0
    for item in items:
        text = item if isinstance(item, str) else str(item)
        size += len(text)
        if size > MAX_VALUE:
            raise too_large("joining these values with ~")
        pieces.append(text)
    if markup and any(hasattr(p, "__html__") for p in pieces):
        joined: str = Markup("").join(pieces)  # escapes the pieces that are not markup
        size = len(joined)
        if size > MAX_VALUE:
            raise too_large("joining these values with ~")
    else:
        joined = "".join(pieces)
    if size > _SMALL:
        charge(size)
    return joined


class BoundedBuffer(list[str]):
    """The output of a macro, call, filter or set block, collected before it is returned."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, piece: str) -> None:
        self._count(len(piece))
        super().append(piece)

    def extend(self, pieces: Iterable[str]) -> None:
        pieces = tuple(pieces)
        self._count(sum(map(len, pieces)))
        super().extend(pieces)

    def _count(self, size: int) -> None:
        self.size += size
        if self.size > MAX_VALUE:
            raise too_large("the output of this block or macro")
        if size > _SMALL:
            charge(size)
