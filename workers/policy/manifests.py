"""Pre-approved manifests: policies/manifests/<name>.yaml, for `rate_limit: {apply: <name>}`.

They are reviewed in the same pull request as the routes that use them; a job
applies the manifest as the policy in force has it when it runs (never one it
carries). Each is one
YAML document of a kind alertpilot applies (MANIFEST_KINDS below),
with `metadata.name`, no `status`, and no server-owned metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from workers.policy.problems import Marks, PolicyError, Problem
from workers.policy.source import read_text, read_yaml

MANIFEST_KINDS = {  # (apiVersion, kind) -> (apiGroup, resource): what `rate_limit: {apply:}` holds
    ("v1", "ConfigMap"): ("", "configmaps"),
    ("networking.k8s.io/v1", "Ingress"): ("networking.k8s.io", "ingresses"),
}

FOLDER = "manifests"
SERVER_OWNED = ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation")


def manifest_files(directory: Path) -> list[Path]:
    folder = directory / FOLDER
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


Level = Literal["error", "warning"]


def load_manifests(
    directory: Path, namespaces: Sequence[str] = ()
) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Every manifest by name (its file name without .yaml), and the problems found.

    `namespaces`: where mitigations may act; a manifest fixed to another namespace
    would always be refused, which is worth a warning.
    """
    manifests: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for path in manifest_files(directory):
        try:
            doc, marks = read_yaml(str(path), read_text(path))
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        found = _problems(str(path), doc, marks, namespaces)
        problems.extend(found)
        if not any(p.level == "error" for p in found):
            manifests[path.stem] = doc
    return manifests, problems


def _problems(path: str, doc: Any, marks: Marks, namespaces: Sequence[str]) -> list[Problem]:
    def at(key: tuple[str, ...], message: str, level: Level = "error") -> Problem:
        line, col = next(marks[key[:n]] for n in range(len(key), -1, -1) if key[:n] in marks)
        return Problem(path, line, col, message, level)

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
    namespace = meta.get("namespace")
    if namespace is not None and namespace not in namespaces:
        message = (
            f"metadata.namespace {namespace!r} is not in mitigations.allow.namespaces "
            f"({', '.join(namespaces) or 'none'}): applying it would always be refused"
        )
        problems.append(at(("metadata", "namespace"), message, "warning"))
    return problems
