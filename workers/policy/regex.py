"""Every regular expression the policy code applies, compiled by RE2.

Alertmanager compiles `=~` and `!~` with Go's regexp, which is RE2: matching
takes time linear in the value, whatever the pattern. Python's `re`
backtracks: one `(a+)+$` in a policy took 51 s of CPU on a 31-character label
value, doubling with each character. RE2 refuses what it cannot match in
linear time (backreferences, lookaround), and so does Go.

Memory is bounded as well. A compiled pattern and its DFA cache get a budget
(RE2's `max_mem`) that starts at 8 KiB and doubles only while RE2 says the
program does not fit, so each pattern's memory stays in proportion to its
program: with RE2's flat 8 MiB default, 300 matchers like `.*a.{20}` grew
their DFA caches by 923 MiB against one 100,000-character value. A pattern
whose program does not fit in 1 MiB (about 56,000 instructions; `.{1000}`
takes 8,000) is refused, and a `Budget` bounds the sum over a set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

FIRST_MEMORY = 8 * 1024
MAX_MEMORY = 1024 * 1024
"""RE2's `max_mem` for one pattern: its program and DFA cache, at most."""
MAX_SET_SIZE = 500_000
"""RE2 instructions all of a set's regexes may take together (10,000 routes of
`svc-1|svc-2` take 100,000). It bounds their memory, DFA caches included: the
worst shape measured (51,000 one-letter patterns) held 68 MiB, and 2,800 of
`.*a.{20}` grew by nothing against a hostile value. It bounds loading too: a
pattern refused as too large spent 10-20 ms compiling, and counts as TOO_LARGE."""
TOO_LARGE = 60_000
"""What a pattern refused as too large costs of the budget: a little more than
the largest program that fits in MAX_MEMORY."""


class RegexError(ValueError):
    """A pattern RE2 does not accept; the message is RE2's reason."""

    def __init__(self, reason: str, *, size: int = 0) -> None:
        super().__init__(reason)
        self.size = size
        """Instructions RE2 compiled before it refused the pattern (TOO_LARGE or 0)."""


@dataclass
class Budget:
    """RE2 instructions left to one set's regexes, spent as they are compiled.

    A set is loaded with one; once it is spent the rest of the set's regexes
    are not compiled at all (the set will not load), so a file of thousands of
    large patterns costs what MAX_SET_SIZE does, not thousands of compiles.
    """

    left: int = MAX_SET_SIZE

    def spend(self, size: int) -> None:
        self.left -= size

    @property
    def spent(self) -> bool:
        return self.left < 0


@dataclass(frozen=True)
class Regex:
    pattern: str
    compiled: Any = field(repr=False, compare=False)

    def fullmatch(self, text: str) -> bool:
        """Whether all of `text` matches, as Alertmanager's `^(?:pattern)$`.

        Text goes in as UTF-8 bytes: RE2's own str path re-counts characters
        after each match (twice the cost), and `surrogatepass` keeps a lone
        surrogate (a policy test case can hold one) from raising here.
        """
        return self.compiled.fullmatch(text.encode("utf-8", "surrogatepass")) is not None

    def groups(self, text: str) -> tuple[str, ...] | None:
        """The groups of a full match, or None; only for a pattern compiled with `capture`."""
        found = self.compiled.fullmatch(text)
        return None if found is None else tuple(found.groups(""))

    @property
    def size(self) -> int:
        """RE2's program size, in instructions: what the pattern costs per character."""
        return int(self.compiled.programsize)


def compile_regex(pattern: str, *, capture: bool = False) -> Regex:
    """`pattern` in RE2 syntax as Go accepts it; RegexError says why not.

    Without `capture` RE2 answers only whether the text matches, which lets it
    use its DFA. `\\C` (any byte) is RE2's and not Go's, so it is refused too.
    """
    if _any_byte(pattern):
        raise RegexError(r"invalid escape sequence: \C")
    memory = FIRST_MEMORY
    while True:
        try:
            return Regex(pattern, re2.compile(pattern, _options(memory, capture)))
        except re2.error as exc:
            reason = _reason(exc)
            too_large = reason.startswith("pattern too large")
            if not too_large or memory >= MAX_MEMORY:
                raise RegexError(reason, size=TOO_LARGE if too_large else 0) from None
        memory *= 2


def _options(memory: int, capture: bool) -> Any:
    options = re2.Options()
    options.max_mem = memory
    options.never_capture = not capture
    options.log_errors = False  # RE2 would also print every refused pattern to stderr
    return options


def _reason(exc: Exception) -> str:
    """RE2 gives its reason as bytes (b'missing ): (')."""
    reason = exc.args[0] if exc.args else ""
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    if text.startswith("pattern too large"):
        return f"pattern too large (its RE2 program needs over {MAX_MEMORY // 2**20} MiB)"
    if text.startswith(("invalid perl operator", "invalid escape sequence")):
        return f"{text} (RE2 syntax, as in Alertmanager: no lookaround, no backreferences)"
    return text


def _any_byte(pattern: str) -> bool:
    r"""Whether `pattern` uses `\C`, outside a `\Q...\E` literal."""
    position = 0
    while position < len(pattern) - 1:
        if pattern[position] != "\\":
            position += 1
        elif pattern[position + 1] == "C":
            return True
        elif pattern[position + 1] == "Q":
            end = pattern.find("\\E", position + 2)
            position = len(pattern) if end < 0 else end + 2
        else:
            position += 2
    return False
