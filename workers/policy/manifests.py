"""Pre-approved manifests: policies/manifests/<name>.yaml, for `rate_limit: {apply: <name>}`.

They are reviewed in the same pull request as the routes that use them and
travel inside the job (the set that matched is the set that acts). Each is one
YAML document of a kind alertpilot applies (workers.actions.MANIFEST_KINDS),
with `metadata.name`, no `status`, and no server-owned metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.actions import MANIFEST_KINDS
from workers.policy.problems import Marks, PolicyError, Problem

FOLDER = "manifests"
SERVER_OWNED = ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation")


def manifest_files(directory: Path) -> list[Path]:
    folder = directory / FOLDER
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


Reader = Callable[[str, str], tuple[Any, Marks]]


def load_manifests(
    directory: Path, read_yaml: Reader
) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Every manifest by name (its file name without .yaml), and the problems found."""
    manifests: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for path in manifest_files(directory):
        try:
            doc, marks = read_yaml(str(path), path.read_text(encoding="utf-8"))
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        except UnicodeDecodeError as exc:
            problems.append(Problem(str(path), 1, 1, f"not UTF-8 text ({exc.reason})"))
            continue
        found = _problems(str(path), doc, marks)
        problems.extend(found)
        if not found:
            manifests[path.stem] = doc
    return manifests, problems


def _problems(path: str, doc: Any, marks: Marks) -> list[Problem]:
    def at(key: tuple[str, ...], message: str) -> Problem:
        line, col = next(marks[key[:n]] for n in range(len(key), -1, -1) if key[:n] in marks)
        return Problem(path, line, col, message)

    if not isinstance(doc, dict):
        return [Problem(path, 1, 1, "a manifest is one Kubernetes object (a mapping)")]
    kind = (doc.get("apiVersion"), doc.get("kind"))
    if kind not in MANIFEST_KINDS:
        known = ", ".join(f"{k} ({v})" for v, k in MANIFEST_KINDS)
        return [at(("kind",), f"kind: alertpilot applies {known}; not {kind[1]} ({kind[0]})")]
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return [at(("metadata",), "metadata.name: required")]
    problems = [
        at(("metadata", field), f"metadata.{field}: set by the API server, not by a manifest")
        for field in SERVER_OWNED
        if field in meta
    ]
    if "status" in doc:
        problems.append(at(("status",), "status: set by the API server, not by a manifest"))
    return problems
