"""Alertmanager label matchers (`name="v"`, `!=`, `=~`, `!~`), compiled once at load.

As in Alertmanager, a regex must match the whole value (it is anchored), and a
label the alert does not have matches as the empty string. Regexes are RE2
(`regex.py`), as Go's are, so a match takes time linear in the value. One
difference is deliberate: Alertmanager compiles `^(?:` + value + `)$`, so
`a)|(b` compiles there (to "starts with a, or ends with b"); here a pattern
must be a regex on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from workers.policy.regex import Regex, RegexError, compile_regex

Op = Literal["=", "!=", "=~", "!~"]
# Our own grammar runs on policy text too, so it is RE2 as well: under Python's
# `re` its lazy value and trailing `\s*` took 100 s on a 8,000-character matcher.
_MATCHER = compile_regex(
    r"\s*\{?\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|!~|!=|=)\s*(.*?)\s*\}?\s*", capture=True
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


class MatcherError(ValueError):
    def __init__(self, message: str, *, size: int = 0) -> None:
        super().__init__(message)
        self.size = size
        """What compiling its regex cost before it was refused, in RE2 instructions."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    pattern: Regex | None = field(default=None, compare=False)
    """Compiled from `value` for `=~` and `!~`."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual)
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raise MatcherError saying what is wrong."""
    if not text.isascii() and not _is_unicode(text):
        raise MatcherError(f"not valid Unicode (lone surrogate) in {text!r}")
    found = _MATCHER.groups(text)
    if not found:
        raise MatcherError(f'expected name="value" (or !=, =~, !~), got {text!r}')
    name, op, raw = found
    value = _unquote(raw) if raw.startswith('"') else raw
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = compile_regex(value)
        except RegexError as exc:
            message = f"invalid regular expression {value!r}: {exc}"
            raise MatcherError(message, size=exc.size) from None
    return Matcher(name, op, value, pattern)  # type: ignore[arg-type]


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
