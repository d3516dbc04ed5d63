"""The mitigation tests' bench: the app on a policy of routes and guardrails, with the stand-in
Kubernetes API, Redis and the queue it runs against; and the alerts and routes they post.

The `mitigation` fixture in tests/conftest.py hands out a MitigationBench. This module builds on
tests/conftest.py's helpers, so conftest imports it only inside that fixture.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import fixture, timeline, write_policy
from tests.support.kube_standin import KubeStandIn
from webhook.app import create_app
from workers.config import Settings


def route(actions: str, severity: str = "SEV2") -> str:
    """A policy with the one route api-latency (HighLatency) and its `actions` (flow YAML)."""
    return f"""\
routes:
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: {severity}
    actions: {actions}
"""


ROUTES = route("[{scale_up: {by: 4, max_replicas: 20}}]")
GUARDRAILS = {
    "mitigations": {
        "dry_run": False,
        "allow": {"namespaces": ["production"], "workloads": ["api", "api-canary"]},
        "max_replicas": 50,
        "max_factor": 3,
        "cooldown": "10m",
        "attempts_per_incident": 2,
        "budget_per_hour": 20,
    }
}


@dataclass(frozen=True)
class MitigationBench:
    """What a mitigation test runs against; `app()` is alertpilot on a policy of its choosing."""

    kube: KubeStandIn
    redis: Redis
    queue: Queue
    settings: Settings
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    """Points the worker (ALERTPILOT_POLICIES_DIR) at the policy `app()` writes."""

    def app(
        self,
        routes: str = ROUTES,
        manifests: dict[str, str] | None = None,
        **guardrails: Any,
    ) -> FlaskClient:
        """The app on a policy of `routes`, GUARDRAILS changed by `guardrails`, and
        `manifests` (name -> YAML) in policies/manifests."""
        directory = write_policy(self.tmp_path / "policies", routes)
        doc = copy.deepcopy(GUARDRAILS)
        doc["mitigations"].update(guardrails)
        (directory / "20-mitigations.yaml").write_text(yaml.safe_dump(doc))
        for name, text in (manifests or {}).items():
            (directory / "manifests").mkdir(exist_ok=True)
            (directory / "manifests" / f"{name}.yaml").write_text(text)
        self.monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
        changed = replace(self.settings, policies_dir=directory, dry_run=False)
        return create_app(changed, redis=self.redis, registry=CollectorRegistry()).test_client()


def latency(deployment: str = "api", namespace: str = "production") -> dict[str, Any]:
    """One firing HighLatency alert on `namespace`/`deployment`, with a fingerprint of its own."""
    doc = copy.deepcopy(fixture("firing-two-alerts.json"))
    doc["alerts"] = [doc["alerts"][0]]
    doc["alerts"][0]["labels"] |= {"deployment": deployment, "namespace": namespace}
    doc["groupKey"] = f'{{}}:{{deployment="{deployment}"}}'
    doc["alerts"][0]["fingerprint"] = hashlib.sha256(
        f"{namespace}/{deployment}".encode()
    ).hexdigest()[:16]
    return doc


def resolved(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with every alert, and the group, resolved."""
    done = copy.deepcopy(doc)
    for alert in done["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-27T00:30:00Z"
    done["status"] = "resolved"
    return done


def entries(app: FlaskClient, incident_id: str, action: str) -> list[dict[str, Any]]:
    """The incident's timeline entries about `action`."""
    return [e for e in timeline(app, incident_id) if e.get("action") == action]
