"""Load a policy directory: YAML files -> validated, compiled `Policy`.

Every problem is reported as `file:line:col: message`, pointing at the key or
item at fault, and all problems of a set are reported together. A set with any
problem is never returned half-loaded. Each file is read by `source.py`, which
bounds what a hostile one can cost (size, aliases, nesting).
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from workers.policy.checks import Draft, check, message_templates
from workers.policy.engine import Policy, compile_policy
from workers.policy.manifests import FOLDER, load_manifests, manifest_files
from workers.policy.model import (
    BUDGET,
    Action,
    DefaultRoute,
    Guardrails,
    PolicyFile,
    Route,
    Severity,
)
from workers.policy.problems import Location, Marks, PathKey, PolicyError, Problem
from workers.policy.regex import Budget
from workers.policy.runbooks import FOLDER as RUNBOOKS
from workers.policy.runbooks import load_runbooks, runbook_files
from workers.policy.source import read_bytes, read_text, read_yaml

__all__ = [
    "KUSTOMIZATION",
    "Marks",
    "PathKey",
    "PolicyError",
    "Problem",
    "load_policy",
    "policy_files",
    "read_yaml",
    "validation_problem",
]


@dataclass(frozen=True)
class _Loaded:
    path: str
    doc: PolicyFile
    marks: Marks


KUSTOMIZATION = "kustomization.yaml"
"""Not a policy file: the kustomize Component that ships the directory (`deploy policies`)."""


def policy_files(directory: Path) -> list[Path]:
    """The YAML files of a set, in name order (which is also route order)."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and p.is_file() and p.name != KUSTOMIZATION
    )


def read_policy_files(directory: Path) -> tuple[dict[Path, str], str]:
    """Every policy file's text, and the content hash of the whole set.

    The hash covers names and contents, so `/readyz` and hot reload can tell
    two sets apart without parsing them.
    """
    if not directory.is_dir():
        raise PolicyError([Problem(str(directory), 0, 0, "policy directory not found")])
    texts = {path: read_text(path) for path in policy_files(directory)}
    digest = hashlib.sha256()
    for path, text in texts.items():
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
    for path in manifest_files(directory):  # a changed manifest is a changed set
        digest.update(f"{FOLDER}/{path.name}".encode() + b"\0" + read_bytes(path) + b"\0")
    for path in runbook_files(directory):  # and so is a changed runbook
        digest.update(f"{RUNBOOKS}/{path.name}".encode() + b"\0" + read_bytes(path) + b"\0")
    return texts, digest.hexdigest()


def load_policy(directory: Path, *, env: Mapping[str, str] | None = None) -> Policy:
    """The validated set; with `env`, unset secret references become warnings."""
    texts, content_hash = read_policy_files(directory)
    if not texts:
        raise PolicyError([Problem(str(directory), 0, 0, "no .yaml policy files")])
    problems: list[Problem] = []
    loaded: list[_Loaded] = []
    budget = Budget()  # one for the whole set: a large regex counts wherever it is
    for path, text in texts.items():
        result = _load_file(str(path), text, problems, budget)
        if result is not None:
            loaded.append(result)
    if problems:  # a file that did not load would only add follow-on errors below
        raise PolicyError(problems)
    policy = _assemble(loaded, str(directory), problems, content_hash, env)
    if problems or policy is None:
        raise PolicyError(problems)
    return policy


def _load_file(path: str, text: str, problems: list[Problem], budget: Budget) -> _Loaded | None:
    try:
        data, marks = read_yaml(path, text)
    except PolicyError as exc:
        problems.extend(exc.problems)
        return None
    try:
        doc = PolicyFile.model_validate(data or {}, context={BUDGET: budget})
        return _Loaded(path, doc, marks)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(validation_problem(path, marks, tuple(error["loc"]), error))
        return None


_MODELS: dict[tuple[type | str, ...], type[BaseModel]] = {
    (): PolicyFile,
    ("severities", str): Severity,
    ("routes", int): Route,
    ("default",): DefaultRoute,
    ("routes", int, "actions", int): Action,
    ("default", "actions", int): Action,
}


def _did_you_mean(key: str, parent: PathKey) -> str:
    shape = tuple(p if isinstance(p, str) and p in _FIELDS else type(p) for p in parent)
    model = _MODELS.get(shape)
    if model is None:
        return ""
    names = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(key, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


_FIELDS = {"severities", "routes", "default", "actions"}


def validation_problem(path: str, marks: Marks, loc: PathKey, error: Any) -> Problem:
    """A pydantic error, located at the key it is about."""
    # pydantic puts validator names (e.g. "function-after[...]") into loc; drop them.
    loc = tuple(p for p in loc if isinstance(p, int) or not str(p).startswith("function-"))
    at = next((marks[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in marks), (1, 1))
    where = ".".join(str(p) for p in loc if p != "continue_")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}{_did_you_mean(str(loc[-1]), loc[:-1])}"
    return Problem(path, at[0], at[1], f"{where}: {message}" if where else message)


def _assemble(
    loaded: list[_Loaded],
    directory: str,
    problems: list[Problem],
    content_hash: str,
    env: Mapping[str, str] | None,
) -> Policy | None:
    severities: dict[str, Severity] = {}
    routes: list[Route] = []
    default: DefaultRoute | None = None
    guardrails: Guardrails | None = None
    where: dict[str, Location] = {}
    for item in loaded:
        if item.doc.mitigations is not None:
            at = Location(item.path, item.marks, ("mitigations",))
            if guardrails is not None:
                problems.append(at.problem("mitigations is already set in another file"))
            guardrails = item.doc.mitigations
        for name, severity in item.doc.severities.items():
            at = Location(item.path, item.marks, ("severities", name))
            if name in severities:
                problems.append(at.problem(f"duplicate severity {name!r}"))
            severities[name] = severity
            where[f"severity:{name}"] = at
        for index, route in enumerate(item.doc.routes):
            at = Location(item.path, item.marks, ("routes", index))
            if any(r.name == route.name for r in routes):
                problems.append(at.problem(f"duplicate route {route.name!r}", key=("name",)))
            routes.append(route)
            where[f"route:{route.name}"] = at
        if item.doc.default is not None:
            at = Location(item.path, item.marks, ("default",))
            if default is not None:
                problems.append(at.problem(f"default is already set in {where['default'].file}"))
            default = item.doc.default
            where["default"] = at
    if not severities:
        problems.append(Problem(directory, 0, 0, "no severities defined"))
    if default is None:
        problems.append(Problem(directory, 0, 0, "no `default` route in any policy file"))
        return None
    guard = guardrails or Guardrails()
    manifests, found = load_manifests(Path(directory), guard.allow.namespaces)
    runbooks, more = load_runbooks(Path(directory))
    found += more
    present = {path.stem for path in runbook_files(Path(directory))}  # broken ones too
    for route in routes:
        if route.runbook is not None and route.runbook not in present:
            at = where[f"route:{route.name}"]
            known = ", ".join(sorted(present)) or "none"
            message = f"no runbook {route.runbook!r} in {RUNBOOKS}/ (known: {known})"
            found.append(at.problem(message, key=("runbook",)))
    found += check(Draft(severities, routes, default, where, manifests, guard), env)
    found += message_templates(Path(directory))
    problems.extend(p for p in found if p.level == "error")
    if any(p.level == "error" for p in problems):
        return None
    policy = compile_policy(severities, routes, default, content_hash)
    warnings = tuple(p for p in found if p.level == "warning")
    return replace(
        policy, warnings=warnings, guardrails=guard, manifests=manifests, runbooks=runbooks
    )
