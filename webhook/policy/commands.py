"""The `alertpilot policy ...` commands, as functions of their arguments and output streams."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel

from webhook.payload import PayloadError, parse
from webhook.policy.diff import DiffError, corpus, diff, load_base
from webhook.policy.explain import explain
from webhook.policy.testing import run_policy_tests
from workers.policy.loader import load_policy
from workers.policy.model import PolicyFile
from workers.policy.problems import PolicyError
from workers.policy.runbooks import Runbook

SCHEMA_ID = "https://alertpilot.dev/schemas/policy.json"
RUNBOOK_SCHEMA_ID = "https://alertpilot.dev/schemas/runbook.json"

__all__ = ["explain_alerts", "policy_diff", "run_policy_tests", "schema", "validate"]


def validate(
    directory: Path, out: TextIO, err: TextIO, *, env: Mapping[str, str] | None = None
) -> int:
    try:
        policy = load_policy(directory, env=env)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        print(f"{len(exc.problems)} error(s) in {directory}", file=err)
        return 1
    for warning in policy.warnings:
        print(warning, file=err)
    print(
        f"{directory}: OK ({len(policy.severities)} severities, {len(policy.routes)} routes, "
        f"{len(policy.warnings)} warnings, hash {policy.content_hash[:12]})",
        file=out,
    )
    return 0


def parse_labels(text: str) -> dict[str, str]:
    """`alertname=HighLatency,service=payments` -> a label set."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--labels: expected name=value[,name=value...], got {part!r}")
        labels[name.strip()] = value.strip().strip('"')
    if not labels:
        raise ValueError("--labels: no labels given")
    return labels


def explain_alerts(
    directory: Path,
    out: TextIO,
    err: TextIO,
    *,
    labels: Mapping[str, str] | None = None,
    notification: Path | None = None,
    dry_run: bool = True,
) -> int:
    try:
        policy = load_policy(directory)
    except PolicyError as exc:
        print(exc, file=err)
        return 1
    if labels is not None:
        print(explain(policy, labels, dry_run=dry_run), file=out)
        return 0
    assert notification is not None
    try:
        parsed = parse(json.loads(notification.read_text()))
    except (OSError, ValueError, PayloadError) as exc:
        print(f"{notification}: not an Alertmanager notification: {exc}", file=err)
        return 1
    for alert in parsed.alerts:
        text = explain(
            policy,
            alert.labels,
            annotations=alert.annotations,
            group_key=parsed.group_key,
            dry_run=dry_run,
        )
        print(text, file=out)
    return 0


def policy_diff(
    base: str,
    directory: Path,
    out: TextIO,
    err: TextIO,
    *,
    replay: Path | None = None,
    fail_on_change: bool = False,
    committed: Path | None = None,
) -> int:
    """`committed`: where a git ref `base` is read when `directory` is in no repository."""
    try:
        head = load_policy(directory)
        old = load_base(base, directory, committed=committed)
        samples = corpus(directory, replay)
    except (PolicyError, DiffError) as exc:
        print(exc, file=err)
        return 2
    report, changed = diff(old, head, samples)
    print(report, file=out)
    return 1 if changed and fail_on_change else 0


def schema(kind: str = "policy") -> str:
    """JSON Schema of one policy file (or, `kind` "runbook", of one runbooks/ file), from
    the model the loader validates with."""
    models: dict[str, tuple[type[BaseModel], str, str]] = {
        "policy": (PolicyFile, SCHEMA_ID, "alertpilot policy file"),
        "runbook": (Runbook, RUNBOOK_SCHEMA_ID, "alertpilot runbook (policies/runbooks/)"),
    }
    model, schema_id, title = models[kind]
    doc = model.model_json_schema(by_alias=True)
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, **doc}
    doc["title"] = title
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
