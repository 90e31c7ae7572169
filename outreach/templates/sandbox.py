"""The sandboxed Jinja environment every template runs in, with its time and size limits.

A template is untrusted input: whoever edits it must not be able to run code, read files
or stall a run. Beyond Jinja's sandbox (no ``_`` attributes, no mutation of lists and
dicts), the environment here
- loads and includes only files inside ``templates/`` (no absolute paths, ``..`` or symlinks
  that lead out);
- wraps every ``for`` loop's iterable, and checks on every call and operator, the render's
  deadline, so nested loops and recursive macros end;
- bounds every value a template makes (``limits.py``): operators, ``~``, list and dict
  literals, string methods, the filters that can grow a value, and the buffers that
  collect macro and block output, each before or right after it allocates;
- has no ``namespace()`` and no way to change a value, so nothing can grow from one loop
  iteration to the next.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    StrictUndefined,
    TemplateNotFound,
    Undefined,
    nodes,
    pass_eval_context,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from jinja2.visitor import NodeTransformer

from ..errors import RenderError
from .filters import date_filter, first_name, money_filter
from .headers import HEADER_FILTER, mark_header_values, single_line
from .limits import (
    BOUNDED_FILTERS,
    BoundedBuffer,
    bounded_concat,
    bounded_filter,
    check_binop,
    check_deadline,
    check_str_method,
    checked,
    guard,
    safe_range,
)


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


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, collecting block and macro output in a ``BoundedBuffer``."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")


class _BoundValues(NodeTransformer):
    """Routes the ways a template builds a value from others through the limits.

    ``a ~ b`` becomes ``bounded_concat``; a list, tuple or dict written with variables in
    it (``[s, s, s]``) is weighed once made. Literals of constants are as large as the
    template that holds them, and are left alone.
    """

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.Tuple(node.nodes, "load", lineno=node.lineno)
        return nodes.Filter(items, "outreach_concat", [], [], None, None, lineno=node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._weighed(self.generic_visit(node), node.items)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":
            return self.generic_visit(node)
        return self._weighed(self.generic_visit(node), node.items)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        parts = [p for pair in node.items for p in (pair.key, pair.value)]
        return self._weighed(self.generic_visit(node), parts)

    @staticmethod
    def _weighed(node: nodes.Node, parts: list[nodes.Expr]) -> nodes.Node:
        if all(isinstance(p, nodes.Const) for p in parts):
            return node
        return nodes.Filter(node, "outreach_weighed", [], [], None, None, lineno=node.lineno)


@pass_eval_context
def _concat_filter(eval_ctx: EvalContext, items: tuple[Any, ...]) -> str:
    return bounded_concat(items, eval_ctx.autoescape)


def _weighed_filter(value: Any) -> Any:
    return checked(value, "this list or dict")


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox plus time and size limits (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator
    new_buffer = staticmethod(BoundedBuffer)

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
        _BoundValues().visit(tree)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, "outreach_guard", [], [], None, None, lineno=loop.lineno
            )
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, str | bytes | list | tuple):
            return checked(result, f"the result of {operator}")
        return result

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
        check_deadline()
        target = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(target, str):
            name = getattr(__obj, "__name__", "call")
            args = tuple(check_str_method(name, target, args, kwargs))
        result = super().call(__context, __obj, *args, **kwargs)
        # a macro's output is built in memory before it is printed: check it here, or a
        # macro that calls itself twice doubles its size at every level
        if isinstance(result, str | bytes | list | tuple | dict):
            called = getattr(__obj, "name", None) or getattr(__obj, "__name__", "a call")
            return checked(result, f"the result of {called}()")
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

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
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
    for name, before in BOUNDED_FILTERS.items():
        env.filters[name] = bounded_filter(name, env.filters[name], before)
    env.filters["outreach_guard"] = guard
    env.filters["outreach_concat"] = _concat_filter
    env.filters["outreach_weighed"] = _weighed_filter
    env.filters[HEADER_FILTER] = single_line
    env.filters["first_name"] = first_name
    env.filters["date"] = date_filter
    env.filters["money"] = money_filter
    # namespace() is the only way to carry a value across loop iterations; without it
    # nothing can double itself forty times. lipsum/cycler/joiner are never messages.
    env.globals = dict(TEMPLATE_GLOBALS)
    return env
