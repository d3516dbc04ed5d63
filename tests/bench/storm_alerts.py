"""The storm's notifications and policy set (tests/bench/storm.py).

Notifications are built as Alertmanager sends them: the group's whole state,
`groupLabels` and `commonLabels` the group's labels, a fingerprint per alert that
stays the same from one notification of the group to the next.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.bench.harness import REPO

STARTS_AT = "2026-12-01T00:00:00Z"
SEV0_ROUTE = """\
# Bench only (tests/bench/storm.py): the shipped set maps nothing to SEV0.
routes:
  - name: bench-outage
    matchers: ['alertname="BenchOutage"']
    severity: SEV0
    incident_key: "outage/{{ labels.service }}"
    actions: [page, notify]
"""


def notification(
    group_key: str, labels: dict[str, str], alerts: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """A firing notification of `group_key`; `alerts`: each alert's own labels by fingerprint."""
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "alertpilot",
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": {"summary": "p95 latency above 2s for 5m"},
        "externalURL": "http://alertmanager.bench:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {**labels, **own},
                "annotations": {"summary": "p95 latency above 2s for 5m"},
                "startsAt": STARTS_AT,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fingerprint,
            }
            for fingerprint, own in alerts.items()
        ],
    }


def storm_group(group: int, alerts: int) -> dict[str, Any]:
    """Group `group` with its first `alerts` alerts (api-latency: SEV2)."""
    service = f"storm{group}"
    labels = {"alertname": "HighLatency", "service": service}
    per_alert = {"namespace": "production", "deployment": "api", "severity": "page"}
    members = {f"{group:06x}{i:06x}": {**per_alert, "instance": f"pod-{i}"} for i in range(alerts)}
    return notification(f'{{}}:{{alertname="HighLatency", service="{service}"}}', labels, members)


def outage(service: str) -> dict[str, Any]:
    """One BenchOutage alert of `service` (the bench-only SEV0 route)."""
    labels = {"alertname": "BenchOutage", "service": service}
    alert = {"namespace": "production", "severity": "page", "instance": "lb-0"}
    group_key = f'{{}}:{{alertname="BenchOutage", service="{service}"}}'
    return notification(group_key, labels, {f"outage{service}": alert})


def policies(directory: Path) -> Path:
    """The shipped policies plus the bench's SEV0 route, in `directory`."""
    target = directory / "policies"
    shutil.copytree(REPO / "policies", target, ignore=shutil.ignore_patterns("tests"))
    (target / "50-bench-outage.yaml").write_text(SEV0_ROUTE)
    return target
