"""Kubernetes RBAC for the mitigations, written from a policy: in each namespace of
`mitigations.allow.namespaces`, a Role and a RoleBinding to alertpilot's ServiceAccount
in the namespace alertpilot runs in. Nothing for alertpilot's own namespace: it needs none.

The verbs are those of deploy/components/mitigation-target, exactly what workers/kube.py
calls (tests check both against every call of every action and revert). On top, this
names the objects where the policy fixes them:

- `allow.workloads` set and `allow.labels` empty: deployments, their scale and ingresses
  are limited to those names (the guardrails refuse any other target anyway).
- `allow.labels` set (or both empty: any object): no names. RBAC cannot select by label,
  so the Role covers every deployment and ingress of the namespace and the worker's
  allowlist check is what keeps it to the labelled ones.
- configmaps are only ever touched as pre-approved manifests (policies/manifests), so
  they are limited to the names of the ConfigMap manifests that can land in the
  namespace, and get no rule at all without one.
- ReplicaSets and HorizontalPodAutoscalers are found by listing, so they cannot be named;
  so are the pods and Warning events a runbook's `workload_status` step reads.

A server-side apply that creates an object is authorized as `create` of that name, so
names bound creates too. Regenerate after changing the allowlist or the manifests, and
only once the reverts of earlier changes have run (a revert needs the old names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from workers.policy import Policy

ROLE = "alertpilot-mitigations"
SERVICE_ACCOUNT = "alertpilot"
LABELS = {
    "app.kubernetes.io/name": "alertpilot",
    "app.kubernetes.io/component": "mitigations",
    "app.kubernetes.io/part-of": "alertpilot",
}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Rule:
    """What the worker does to one resource."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    named: bool
    """Limited to the allowlist's names when the policy fixes them."""
    manifests_only: bool = False
    """Touched only as a pre-approved manifest: limited to the manifests' names."""


RULES = (
    # The on-call handoff's recent rollouts: every deployment of the namespace (a list
    # cannot be limited to names).
    Rule("apps", "deployments", ("list",), named=False),
    Rule("apps", "deployments", ("get", "patch"), named=True),
    Rule("apps", "deployments/scale", ("get", "update"), named=True),
    Rule("apps", "replicasets", ("list",), named=False),
    Rule("autoscaling", "horizontalpodautoscalers", ("list", "patch"), named=False),
    Rule("networking.k8s.io", "ingresses", ("get", "patch", "create", "delete"), named=True),
    Rule("", "configmaps", ("get", "patch", "create", "delete"), named=True, manifests_only=True),
    # Runbooks' workload_status: the pods of a deployment and recent Warning events.
    Rule("", "pods", ("list",), named=False),
    Rule("", "events", ("list",), named=False),
)


def render(policy: Policy, *, namespace: str) -> str:
    """The objects of `objects()` as one YAML stream for `kubectl apply -f -`."""
    found = objects(policy, namespace=namespace)
    head = (
        "# Mitigation RBAC for alertpilot (ServiceAccount "
        f"{namespace}/{SERVICE_ACCOUNT}), written by `alertpilot deploy rbac`\n"
        "# from the policy's mitigations.allow; see docs/mitigations.md.\n"
    )
    if not found:
        return head + "# mitigations.allow.namespaces is empty: nothing to grant.\n"
    return head + yaml.safe_dump_all(found, sort_keys=False, explicit_start=True)


def objects(policy: Policy, *, namespace: str) -> list[dict[str, Any]]:
    """A Role and a RoleBinding per allowed namespace, in the policy's order.

    `namespace` is the one alertpilot runs in: its ServiceAccount is the subject.
    """
    if not _DNS_LABEL.match(namespace):
        raise ValueError(f"namespace must be a DNS label (a-z, 0-9, -), got {namespace!r}")
    found: list[dict[str, Any]] = []
    for target in dict.fromkeys(policy.guardrails.allow.namespaces):
        meta = {"name": ROLE, "namespace": target, "labels": dict(LABELS)}
        found.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": _rules(policy, target),
            }
        )
        found.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {**meta, "labels": dict(LABELS)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
                "subjects": [
                    {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
                ],
            }
        )
    return found


def _rules(policy: Policy, target: str) -> list[dict[str, Any]]:
    allow = policy.guardrails.allow
    fixed = sorted(set(allow.workloads)) if allow.workloads and not allow.labels else None
    configmaps = sorted(
        {
            str(doc["metadata"]["name"])
            for doc in policy.manifests.values()
            if (doc.get("apiVersion"), doc.get("kind")) == ("v1", "ConfigMap")
            and doc["metadata"].get("namespace") in (None, target)
            and (fixed is None or doc["metadata"]["name"] in fixed)
        }
    )
    rules = []
    for rule in RULES:
        names = configmaps if rule.manifests_only else fixed if rule.named else None
        if rule.manifests_only and not names:
            continue
        doc: dict[str, Any] = {
            "apiGroups": [rule.group],
            "resources": [rule.resource],
            "verbs": list(rule.verbs),
        }
        if names is not None:
            doc["resourceNames"] = list(names)  # a copy: no YAML anchors
        rules.append(doc)
    return rules
