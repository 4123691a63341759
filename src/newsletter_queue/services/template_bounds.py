"""Resource bounds for tenant-written templates: every growth path is checked *before* it
allocates.

Jinja's sandbox stops access to Python internals, not work: ``{{ "x" * 50000000 }}``,
``{{ 9 ** (9 ** 8) }}``, ``{{ ('a'*100000)|replace('a', 'b'*100000) }}``,
``{{ '%030000000d' % 1 }}``, ``{{ 'a'.ljust(30000000) }}``, ``{{ '{:>30000000}'.format(1) }}``
or a chain of ``{% set b = a ~ a ~ a … %}`` each build tens of megabytes to gigabytes in
one step, long before the rendered output is measured — and rendering runs on the
worker's event loop (under ``up``, the API's too). No library bounds this (Jinja offers
the hooks, not the limits), so ``BoundedSandbox`` does, at each hook:

- ``*`` and ``**`` (``call_binop``; intercepting them also stops Jinja from folding them
  into constants when a template compiles);
- ``%`` on a string: widths and precisions of its directives, ``*`` widths refused;
- ``~`` (the compiled ``Concat``): the sum of the parts' lengths;
- ``str.format``/``format_map`` and the ``format`` filter: numbers in the format specs,
  nested replacement fields in specs refused;
- the str methods ``ljust``, ``rjust``, ``center``, ``zfill``, ``expandtabs``,
  ``replace`` and ``join``, and the filters ``replace``, ``center``, ``indent`` and
  ``join``: their result's length, computed from the arguments;
- ``range()``: at most ``MAX_RANGE`` items; loops nested at most ``MAX_LOOP_NESTING``.

Every check also looks at the render's deadline (``deadline``, set by the renderer), so
a loop that builds values without printing any is stopped too. A refusal is a
``SecurityError`` (a ``TemplateError``): the recipient's message fails with a
``RenderError``, or the campaign with a ``ContentError`` when a constant part of the
template is refused at compile time.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable, Iterable
from functools import update_wrapper
from string import Formatter
from typing import Any

from jinja2 import nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_indent, do_join, do_replace
from jinja2.sandbox import SandboxedEnvironment

MAX_SEQUENCE = 100_000  # characters or items built by '*'
MAX_POWER_BITS = 4_096  # size of an integer built by '**'
MAX_RANGE = 1_000  # items of one range()
MAX_LOOP_NESTING = 2
MAX_STRING = 2_000_000  # characters of any one string a template builds (= output cap)

# Monotonic time by which the current render must finish (None: no render running).
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "nlq_render_deadline", default=None)

# A %-directive: flags, width, precision (the numbers that size its output).
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")
_GROWING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs",
                              "replace", "join"})


def check_size(chars: int, what: str) -> None:
    """Refuse to build a string of ``chars`` characters; also enforce the deadline."""
    if chars > MAX_STRING:
        raise SecurityError(f"{what} would build {chars} characters; at most {MAX_STRING}")
    end = deadline.get()
    if end is not None and time.monotonic() > end:
        raise SecurityError("rendering took too long")


def _percent_format(fmt: str) -> None:
    for match in _PERCENT.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise SecurityError("'%' with a '*' width or precision is not allowed")
            if number is not None:
                check_size(int(number), "'%' formatting")


def _format_specs(fmt: str, depth: int = 0) -> None:
    """Check every format spec of ``fmt`` (``str.format`` syntax) before it is used."""
    try:
        parsed = list(Formatter().parse(fmt))
    except ValueError:
        return  # a malformed string fails in format() itself, before allocating
    for _literal, field, spec, _conversion in parsed:
        if field is None or not spec:
            continue
        if "{" in spec:
            raise SecurityError("nested replacement fields in a format spec are not allowed")
        for number in _DIGITS.findall(spec):
            check_size(int(number), "a format spec")


def _str_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def _method_result(method: str, text: str, args: tuple[Any, ...]) -> int:
    """How long ``text.<method>(*args)`` would be (an upper bound)."""
    if method in ("ljust", "rjust", "center", "zfill"):
        width = args[0] if args and isinstance(args[0], int) else 0
        return max(len(text), width)
    if method == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else 8
        return len(text) + text.count("\t") * max(size, 0)
    if method == "replace":
        old, new = (str(a) for a in args[:2]) if len(args) >= 2 else ("", "")
        count = args[2] if len(args) >= 3 and isinstance(args[2], int) and args[2] >= 0 \
            else None
        hits = (len(text) + 1) if old == "" else text.count(old)
        if count is not None:
            hits = min(hits, count)
        return len(text) + hits * max(len(new) - len(old), 0)
    return 0


def _join_result(separator: str, items: Any) -> tuple[int, list[Any]]:
    listed = list(items) if isinstance(items, Iterable) else []
    if len(listed) > MAX_SEQUENCE:
        raise SecurityError(f"join of {len(listed)} items; at most {MAX_SEQUENCE}")
    total = sum(_str_len(i) for i in listed) + len(separator) * max(len(listed) - 1, 0)
    return total, listed


def bounded_join(join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
    """The compiled ``~``: the parts' total length is checked before they are joined."""
    check_size(sum(_str_len(p) for p in parts), "'~'")
    return join(parts)


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles ``a ~ b`` to ``environment.bounded_join(str_join, (a, b))``."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.bounded_join({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


@pass_eval_context
def _replace_filter(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None
                    ) -> str:
    text = str(s)
    args: tuple[Any, ...] = (old, new) if count is None else (old, new, count)
    check_size(_method_result("replace", text, args), "replace")
    return do_replace(eval_ctx, s, old, new, count)


def _center_filter(value: str, width: int = 80) -> str:
    check_size(max(len(str(value)), width if isinstance(width, int) else 0), "center")
    return do_center(value, width)


def _indent_filter(s: str, width: int | str = 4, first: bool = False, blank: bool = False
                   ) -> str:
    text = str(s)
    pad_len = len(width) if isinstance(width, str) else (width if isinstance(width, int) else 0)
    check_size(len(text) + (text.count("\n") + 1) * max(pad_len, 0), "indent")
    return do_indent(s, width, first, blank)


@pass_eval_context
def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    if attribute is None:
        total, listed = _join_result(str(d), value)
        check_size(total, "join")
        value = listed
    return do_join(eval_ctx, value, d, attribute)  # type: ignore[no-any-return]


def _format_filter(value: str, *args: Any, **kwargs: Any) -> str:
    _percent_format(str(value))
    from jinja2.filters import do_format

    return do_format(value, *args, **kwargs)


def _bounded_range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise SecurityError(f"range() of {len(items)} items; at most {MAX_RANGE}")
    return items


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with every growth path bounded (see the module docstring)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.filters.update(replace=_replace_filter, center=_center_filter,
                            indent=_indent_filter, join=_join_filter,
                            format=_format_filter)
        self.bounded_join = bounded_join

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (isinstance(seq, str | list | tuple) and isinstance(n, int)
                        and len(seq) * n > MAX_SEQUENCE):
                    raise SecurityError(f"'*' would build {len(seq) * n} items; at most "
                                        f"{MAX_SEQUENCE}")
        elif (operator == "**" and isinstance(left, int) and isinstance(right, int)
              and right > 0 and max(abs(left), 2).bit_length() * right > MAX_POWER_BITS):
            raise SecurityError(f"'**' result too large (over {MAX_POWER_BITS} bits)")
        elif operator == "%" and isinstance(left, str):
            _percent_format(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            _format_specs(fmt)
            return wrapped(*args, **kwargs)

        return update_wrapper(checked, wrapped)

    def call(__self, __context: Any, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name in _GROWING_METHODS:
            if name == "join":
                total, listed = _join_result(owner, args[0] if args else ())
                check_size(total, "join")
                args = (listed, *args[1:])
            else:
                check_size(_method_result(name, owner, args), name)
        return super().call(__context, __obj, *args, **kwargs)
