"""What a job asks for (ActionRequest) and what came of it (Outcome), plus dry run.

A dry run describes, on the timeline, the exact call the action would make.
The live handlers are chosen in workers/handlers.py; the dispatch in
workers/jobs.py and the guarantees around it are the same for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from workers.incident.record import Incident

Transition = Literal["declared", "escalated", "update", "resolved", "handoff"]
TRANSITIONS = ("declared", "escalated", "update", "resolved", "handoff")
"""handoff: a mitigation used its attempts and a person takes over (workers/handoff.py)."""
OutcomeKind = Literal["succeeded", "dry_run", "skipped", "blocked", "proposed"]

COMMUNICATION_ACTIONS = ("page", "statuspage", "notify")
MITIGATION_ACTIONS = ("scale_up", "rate_limit", "rollout_restart", "rollback")
ACTION_NAMES = COMMUNICATION_ACTIONS + MITIGATION_ACTIONS

MANIFEST_KINDS = {  # (apiVersion, kind) -> (apiGroup, resource): what `rate_limit: {apply:}` holds
    ("v1", "ConfigMap"): ("", "configmaps"),
    ("networking.k8s.io/v1", "Ingress"): ("networking.k8s.io", "ingresses"),
}

PAGERDUTY_SEVERITY = {"SEV0": "critical", "SEV1": "critical", "SEV2": "error", "SEV3": "warning"}


@dataclass(frozen=True)
class Approved:
    """What a person approved: the exact object, and what must still hold when it runs.

    The approved job acts on this object alone (never on whatever the incident's
    alerts name by then), and refuses, on the timeline, if it has changed.
    """

    proposal: str
    namespace: str
    kind: str
    """"deployment" (what restart and rollback change)."""
    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    """For a rollback: from_revision, to_revision, from_images, to_images."""

    @property
    def target(self) -> tuple[str, str]:
        return self.namespace, self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "proposal": self.proposal,
            "namespace": self.namespace,
            "kind": self.kind,
            "name": self.name,
            "facts": dict(self.facts),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Approved:
        return cls(
            proposal=str(doc["proposal"]),
            namespace=str(doc["namespace"]),
            kind=str(doc["kind"]),
            name=str(doc["name"]),
            facts=dict(doc.get("facts") or {}),
        )


@dataclass(frozen=True)
class ActionRequest:
    """The plain-JSON payload of one job: one action for one incident transition.

    `params` are the route's settings for the action (workers/params.py); what
    the run adds (attempt, note, approval) has fields of its own.
    """

    prefix: str
    incident_id: str
    action: str
    transition: Transition
    severity: str
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = True
    public: bool = False
    """The severity goes on the status page."""
    update_every: int | None = None
    """Seconds between status updates at this severity (None: no cadence)."""
    route: str = ""
    """The route whose action this is; a mitigation reads its settings in the policy in force."""
    attempt: int = 1
    """A mitigation's follow-up attempts count up from 1 (scale_up)."""
    note: str = ""
    """Why a person takes over (transition "handoff")."""
    approved: Approved | None = None
    """Set on the job an approval queued."""
    target: str = ""
    """"namespace/name" a follow-up attempt keeps to: the object attempt 1 changed."""
    job_id: str = ""
    """The RQ job running this request (set by workers/jobs.py; not part of the payload)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "incident_id": self.incident_id,
            "action": self.action,
            "transition": self.transition,
            "severity": self.severity,
            "params": dict(self.params),
            "dry_run": self.dry_run,
            "public": self.public,
            "update_every": self.update_every,
            "route": self.route,
            "attempt": self.attempt,
            "note": self.note,
            "approved": self.approved.to_json() if self.approved else None,
            "target": self.target,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ActionRequest:
        if doc.get("action") not in ACTION_NAMES:
            raise ValueError(f"unknown action, got {doc.get('action')!r}")
        if doc.get("transition") not in TRANSITIONS:
            raise ValueError(f"unknown transition, got {doc.get('transition')!r}")
        approved = doc.get("approved")
        return cls(
            prefix=str(doc["prefix"]),
            incident_id=str(doc["incident_id"]),
            action=str(doc["action"]),
            transition=doc["transition"],
            severity=str(doc["severity"]),
            params=dict(doc.get("params") or {}),
            dry_run=bool(doc.get("dry_run", True)),
            public=bool(doc.get("public", False)),
            update_every=int(doc["update_every"]) if doc.get("update_every") else None,
            route=str(doc.get("route") or ""),
            attempt=int(doc.get("attempt") or 1),
            note=str(doc.get("note") or ""),
            approved=Approved.from_json(approved) if isinstance(approved, dict) else None,
            target=str(doc.get("target") or ""),
        )


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    message: str
    details: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[ActionRequest, Incident], Outcome]


def describe(request: ActionRequest, incident: Incident, target: str | None = None) -> str:
    """The call an action would make, in words an on-call engineer reads.

    `target`: the object a mitigation resolved (route overrides, a manifest's
    object); by default the workloads the firing alerts name."""
    verb = {"declared": "open", "escalated": "update", "update": "update", "resolved": "resolve"}
    if request.action == "page":
        if request.transition == "handoff":
            note = request.note
            return f"would add a note to the PagerDuty alert with dedup_key {incident.id}: {note}"
        if request.transition == "resolved":
            return f"would resolve the PagerDuty alert with dedup_key {incident.id}"
        severity = PAGERDUTY_SEVERITY.get(request.severity, "critical")
        return (
            f"would trigger PagerDuty ({severity}) with dedup_key {incident.id}: {incident.title}"
        )
    if request.action == "statuspage":
        how = verb.get(request.transition, "update")
        return f"would {how} the Statuspage incident for {incident.title!r}"
    if request.action == "notify":
        return f"would post the {request.transition} message to chat"
    target = target or _target(incident)
    if request.transition == "resolved":
        return f"would revert {request.action} on {target}"
    return f"would apply {request.action} {request.params or ''} to {target}".replace("  ", " ")


def dry_run(request: ActionRequest, incident: Incident, target: str | None = None) -> Outcome:
    message = describe(request, incident, target)
    return Outcome("dry_run", message, {"params": dict(request.params)})


def target_of(labels: Mapping[str, str]) -> str:
    """The workload an alert points a mitigation at: `namespace/deployment` (or ingress)."""
    name = labels.get("deployment") or labels.get("ingress") or labels.get("service", "?")
    return f"{labels.get('namespace', '?')}/{name}"


def _target(incident: Incident) -> str:
    """Each workload the firing alerts name, in a stable order."""
    targets = {target_of(a.labels) for a in incident.firing}
    return ", ".join(sorted(targets)) or "no firing workload"


HANDLERS: dict[str, Handler] = {name: dry_run for name in ACTION_NAMES}
"""Every action in dry run until its adapter lands."""
