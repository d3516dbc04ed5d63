"""One policy file read: bounded in size, parsed as YAML, every key and item located.

Policy files, manifests and policy test cases all come through here, so a file
written to hurt is refused before it costs much, at the line:col at fault:

- More than MAX_FILE_BYTES. PyYAML reads about 180 KB a second; 10,000 routes
  take 1.5 MB.
- Aliases (`*name`). An alias shares the node its anchor names, so nine lines
  of them make 9^9 paths ("billion laughs") that locating keys, validation and
  `<<:` merges would each walk: 2.5 s and 512 MiB for six levels, ten times
  that per level more. Nothing shipped uses one; anchors alone are harmless
  (and `<<:` can only merge a mapping written in place).
- Nesting deeper than MAX_DEPTH: a policy needs about ten levels.
- Integers over MAX_INT_CHARS: YAML 1.1 reads `1:2:3` as base 60, which takes
  time quadratic in its length (0.8 s for 80 KB).
- Scalars that do not construct (`2001-02-30`, a 5,000-digit integer) are
  reported at their line, not raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workers.policy.problems import Marks, PathKey, PolicyError, Problem

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 50
MAX_INT_CHARS = 100


def read_bytes(path: Path) -> bytes:
    """The file's bytes; PolicyError past MAX_FILE_BYTES (read no further than that)."""
    with path.open("rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        message = (
            f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the most a policy file may be"
        )
        raise PolicyError([Problem(str(path), 1, 1, message)])
    return data


def read_text(path: Path) -> str:
    """The file's text; PolicyError if it is too large or not UTF-8."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([Problem(str(path), 1, 1, f"not UTF-8 text ({exc.reason})")]) from None


def read_yaml(path: str, text: str) -> tuple[Any, Marks]:
    """One YAML document and the line:col of each of its keys and items."""
    try:
        reader = _Reader(text)
        try:
            node = reader.get_single_node()
            data = reader.construct_document(node) if node is not None else None
        finally:
            reader.dispose()
    except _Refused as exc:
        raise PolicyError([Problem(path, exc.line, exc.col, exc.message)]) from None
    except RecursionError:  # MAX_DEPTH comes first; kept should the stack be smaller
        raise PolicyError([Problem(path, 1, 1, "invalid YAML: nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = Problem(path, line, col, f"invalid YAML: {getattr(exc, 'problem', exc)}")
        raise PolicyError([problem]) from None
    marks: Marks = {}
    if node is not None:
        _collect_marks(node, (), marks)
    return data, marks


class _Refused(Exception):
    """What the reader will not take, at its mark."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.line: int = mark.line + 1 if mark else 1
        self.col: int = mark.column + 1 if mark else 1


class _Reader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases, deep nesting and long integers."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            message = f"YAML aliases (*{event.anchor}) are not allowed in policy files"
            raise _Refused(message, event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        is_int = node.tag == "tag:yaml.org,2002:int"
        if is_int and isinstance(node.value, str) and len(node.value) > MAX_INT_CHARS:
            message = f"an integer of {len(node.value):,} characters (at most {MAX_INT_CHARS})"
            raise _Refused(message, node.start_mark)
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # `2001-02-30`; int() past 4,300 digits
            raise _Refused(f"invalid value: {exc}", node.start_mark) from None


def _collect_marks(node: yaml.Node, path: PathKey, marks: Marks) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            _collect_marks(value_node, child, marks)
            marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_marks(item, (*path, index), marks)
