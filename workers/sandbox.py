"""The Jinja2 sandbox every template of a policy renders in: chat messages, route
parameters over labels, runbook steps and their offline check.

Jinja2's own sandbox keeps a template from reaching Python's internals; it does not
bound arithmetic, and its compiler folds constant expressions: `{{ 9**(9**9) }}` in a
policy file would hang the loader, or a worker, at compile time. Here `**` and `*` are
evaluated by `call_binop` (intercepted operators are not folded), which refuses a
power or a repetition past a few kilobytes as a SecurityError, a TemplateError like
any other a template raises.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader, StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_BITS = 4096
"""Of an integer power: `2**4096` is far beyond any number a message or a query needs."""
MAX_REPEAT = 10_000
"""Items (characters) of a repeated string or list: `"-" * 80` is fine."""


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError("a power too large for a template")
        if operator == "*" and _too_long_repeat(left, right):
            raise SecurityError(f"a repetition longer than {MAX_REPEAT} in a template")
        return super().call_binop(context, operator, left, right)


def _too_big_power(base: Any, exponent: Any) -> bool:
    if not isinstance(base, (int, float)) or not isinstance(exponent, (int, float)):
        return False
    if isinstance(base, float) or isinstance(exponent, float):
        return abs(exponent) > MAX_BITS  # floats overflow to an error, but not slowly
    return abs(base) > 1 and exponent > 0 and base.bit_length() * exponent > MAX_BITS


def _too_long_repeat(left: Any, right: Any) -> bool:
    for items, times in ((left, right), (right, left)):
        if isinstance(items, (str, list, tuple)) and isinstance(times, int):
            return len(items) * times > MAX_REPEAT
    return False


def document(
    directory: Path | None, name: str, built_in: str, filters: dict[str, Callable[..., Any]]
) -> Sandbox:
    """The environment of a Markdown document teams may change (the postmortem draft,
    the on-call handoff): their template `name` in `directory` over the built-in copy,
    strict, block tags on lines of their own, and the document's own `filters`."""
    loaders: list[Any] = [DictLoader({name: built_in})]
    if directory is not None and directory.is_dir():
        loaders.insert(0, FileSystemLoader(str(directory)))
    env = Sandbox(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(filters)
    return env
