"""Load a policy directory: YAML files -> validated, compiled `Policy`.

Every problem is reported as `file:line:col: message`, pointing at the key or
item at fault, and all problems of a set are reported together. A set with any
problem is never returned half-loaded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from webhook.policy.engine import TEMPLATES, Policy, compile_policy
from webhook.policy.model import NAME_PATTERN, DefaultRoute, PolicyFile, Route, Severity

PathKey = tuple[str | int, ...]
Marks = dict[PathKey, tuple[int, int]]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PolicyError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class _Loaded:
    path: str
    doc: PolicyFile
    marks: Marks


def policy_files(directory: Path) -> list[Path]:
    """The YAML files of a set, in name order (which is also route order)."""
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_policy(directory: Path) -> Policy:
    if not directory.is_dir():
        raise PolicyError([Problem(str(directory), 0, 0, "policy directory not found")])
    files = policy_files(directory)
    if not files:
        raise PolicyError([Problem(str(directory), 0, 0, "no .yaml policy files")])
    problems: list[Problem] = []
    loaded: list[_Loaded] = []
    digest = hashlib.sha256()
    for path in files:
        text = path.read_text(encoding="utf-8")
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        result = _load_file(str(path), text, problems)
        if result is not None:
            loaded.append(result)
    policy = _assemble(loaded, str(directory), problems, digest.hexdigest())
    if problems or policy is None:
        raise PolicyError(problems)
    return policy


def _load_file(path: str, text: str, problems: list[Problem]) -> _Loaded | None:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(path, line, col, f"invalid YAML: {getattr(exc, 'problem', exc)}"))
        return None
    marks: Marks = {}
    if node is not None:
        _collect_marks(node, (), marks)
    try:
        return _Loaded(path, PolicyFile.model_validate(data or {}), marks)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(_problem(path, marks, tuple(error["loc"]), error))
        return None


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


def _problem(path: str, marks: Marks, loc: PathKey, error: Any) -> Problem:
    # pydantic puts validator names (e.g. "function-after[...]") into loc; drop them.
    loc = tuple(p for p in loc if isinstance(p, int) or not str(p).startswith("function-"))
    at = next((marks[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in marks), (1, 1))
    where = ".".join(str(p) for p in loc if p != "continue_")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
    return Problem(path, at[0], at[1], f"{where}: {message}" if where else message)


def _assemble(
    loaded: list[_Loaded], directory: str, problems: list[Problem], content_hash: str
) -> Policy | None:
    severities: dict[str, Severity] = {}
    routes: list[Route] = []
    default: DefaultRoute | None = None
    default_at: str | None = None
    where: dict[str, tuple[str, Marks, PathKey]] = {}
    for item in loaded:
        for name, severity in item.doc.severities.items():
            if name in severities:
                problems.append(_at(item, ("severities", name), f"duplicate severity {name!r}"))
            severities[name] = severity
            where[f"severity:{name}"] = (item.path, item.marks, ("severities", name))
        for index, route in enumerate(item.doc.routes):
            if any(r.name == route.name for r in routes):
                problems.append(
                    _at(item, ("routes", index, "name"), f"duplicate route {route.name!r}")
                )
            routes.append(route)
            where[f"route:{route.name}"] = (item.path, item.marks, ("routes", index))
        if item.doc.default is not None:
            if default is not None:
                problems.append(_at(item, ("default",), f"default is already set in {default_at}"))
            default, default_at = item.doc.default, item.path
            where["default"] = (item.path, item.marks, ("default",))
    _check_severity_names(severities, where, directory, problems)
    if default is None:
        problems.append(Problem(directory, 0, 0, "no `default` route in any policy file"))
        return None
    _check_references(severities, routes, default, where, problems)
    if problems:
        return None
    return compile_policy(severities, routes, default, content_hash)


def _check_severity_names(
    severities: dict[str, Severity],
    where: dict[str, tuple[str, Marks, PathKey]],
    directory: str,
    problems: list[Problem],
) -> None:
    for name in severities:
        if not re.fullmatch(NAME_PATTERN, name):
            path, marks, loc = where[f"severity:{name}"]
            problems.append(
                _mark(path, marks, loc, f"severity name {name!r}: letters, digits, _ and - only")
            )
    if not severities:
        problems.append(Problem(directory, 0, 0, "no severities defined"))


def _check_references(
    severities: dict[str, Severity],
    routes: list[Route],
    default: DefaultRoute,
    where: dict[str, tuple[str, Marks, PathKey]],
    problems: list[Problem],
) -> None:
    checks: list[tuple[str, Route | DefaultRoute]] = [(f"route:{r.name}", r) for r in routes]
    checks.append(("default", default))
    for ref, route in checks:
        path, marks, loc = where[ref]
        if route.severity not in severities:
            known = ", ".join(severities) or "none"
            message = f"unknown severity {route.severity!r} (defined: {known})"
            problems.append(_mark(path, marks, (*loc, "severity"), message))
        if route.incident_key:
            try:
                TEMPLATES.parse(route.incident_key)
            except TemplateSyntaxError as exc:
                message = f"incident_key: template error: {exc.message}"
                problems.append(_mark(path, marks, (*loc, "incident_key"), message))


def _at(item: _Loaded, loc: PathKey, message: str) -> Problem:
    return _mark(item.path, item.marks, loc, message)


def _mark(path: str, marks: Marks, loc: PathKey, message: str) -> Problem:
    line, col = marks.get(loc, (1, 1))
    return Problem(path, line, col, message)
