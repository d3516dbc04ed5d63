"""Policy problems, located in their file: `file:line:col: message`, GCC style.

Errors stop a set from loading; warnings are reported and the set loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PathKey = tuple[str | int, ...]
"""A path into a YAML document: ("routes", 0, "matchers", 1)."""
Marks = dict[PathKey, tuple[int, int]]
"""Line and column (1-based) of every key and item of a document."""


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    level: Literal["error", "warning"] = "error"
    code: str = ""
    """A short tag for problems callers treat specially ("secret": an unset secret reference)."""

    def __str__(self) -> str:
        prefix = "warning: " if self.level == "warning" else ""
        return f"{self.file}:{self.line}:{self.col}: {prefix}{self.message}"


@dataclass(frozen=True)
class Location:
    """Where one object of a policy set was written: its file, that file's marks, its path."""

    file: str
    marks: Marks
    path: PathKey

    @property
    def line(self) -> int:
        return self.problem("").line

    def problem(
        self,
        message: str,
        *,
        key: PathKey = (),
        level: Literal["error", "warning"] = "error",
        code: str = "",
    ) -> Problem:
        """A problem at `key` below this object (or at the object itself)."""
        target = (*self.path, *key)
        line, col = next(
            (
                self.marks[target[:n]]
                for n in range(len(target), -1, -1)
                if target[:n] in self.marks
            ),
            (1, 1),
        )
        return Problem(self.file, line, col, message, level, code)


class PolicyError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
