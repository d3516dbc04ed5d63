"""The alerts of one Alertmanager notification, as the receiver parsed them
(webhook/payload.py): what incident transitions are decided from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str | None
    """None while firing: Alertmanager sends Go's zero time then."""
    generator_url: str
    fingerprint: str


@dataclass(frozen=True)
class Notification:
    version: str
    group_key: str
    status: Status
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: tuple[Alert, ...]


def target_of(labels: Mapping[str, str]) -> str:
    """The workload an alert points a mitigation at: `namespace/deployment` (or ingress)."""
    name = labels.get("deployment") or labels.get("ingress") or labels.get("service", "?")
    return f"{labels.get('namespace', '?')}/{name}"
