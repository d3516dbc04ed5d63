"""Alertmanager label matchers (`name="v"`, `!=`, `=~`, `!~`), compiled once at load.

As in Alertmanager, a regex must match the whole value (it is anchored), and a
label the alert does not have matches as the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r"\s*\{?\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|!~|!=|=)\s*(.*?)\s*\}?\s*")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


class MatcherError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raise MatcherError saying what is wrong."""
    found = _MATCHER.fullmatch(text)
    if not found:
        raise MatcherError(f'expected name="value" (or !=, =~, !~), got {text!r}')
    name, op, raw = found.group(1), found.group(2), found.group(3)
    value = _unquote(raw) if raw.startswith('"') else raw
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise MatcherError(f"invalid regular expression {value!r}: {exc}") from None
    return Matcher(name, op, value, pattern)  # type: ignore[arg-type]


def _unquote(raw: str) -> str:
    if len(raw) < 2 or not raw.endswith('"'):
        raise MatcherError(f"unterminated quoted value {raw!r}")
    out: list[str] = []
    chars = iter(raw[1:-1])
    for char in chars:
        if char == '"':
            raise MatcherError(f"unescaped quote inside value {raw!r}")
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in _ESCAPES:
                raise MatcherError(f"invalid escape \\{escaped} in {raw!r}")
            out.append(_ESCAPES[escaped])
        else:
            out.append(char)
    return "".join(out)
