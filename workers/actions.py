"""What an action is (Action), what came of a run (Outcome), plus dry run.

A dry run describes, on the timeline, the exact call the action would make.
The live handlers are chosen in workers/handlers.py; the dispatch in
workers/jobs/dispatch.py and the guarantees around it are the same for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from workers.incident.alerts import target_of
from workers.incident.record import Incident
from workers.jobs.contract import (
    ACTION_NAMES,
    ActionRequest,
)
from workers.params import Params

OutcomeKind = Literal["succeeded", "dry_run", "skipped", "blocked", "proposed"]

PAGERDUTY_SEVERITY = {"SEV0": "critical", "SEV1": "critical", "SEV2": "error", "SEV3": "warning"}


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    message: str
    details: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[ActionRequest, Incident], Outcome]

Reach = TypeVar("Reach")
"""What an action reaches while it runs: the vendors (communication) or the cluster."""


@dataclass(frozen=True)
class Action(Generic[Reach]):
    """One action, declared once in its own module and listed in workers/handlers.py.

    `params`: its route settings (workers/params.py), the model policy validation and
    the JSON Schema use too; the run state (attempt, approval, note) travels beside
    them in the `ActionRequest`. `run` handles every transition of the incident but
    the end of one that changed something: that is `revert`'s, which runs even after
    dry run was switched on (it puts back only what was really changed). An action
    without `revert` (the communication actions) runs `run` for "resolved" too.
    """

    name: str
    params: type[Params]
    run: Callable[[ActionRequest, Incident, Reach], Outcome]
    revert: Callable[[ActionRequest, Incident, Reach], Outcome] | None = None


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


def _target(incident: Incident) -> str:
    """Each workload the firing alerts name, in a stable order."""
    targets = {target_of(a.labels) for a in incident.firing}
    return ", ".join(sorted(targets)) or "no firing workload"


HANDLERS: dict[str, Handler] = {name: dry_run for name in ACTION_NAMES}
"""Every action in dry run until its adapter lands."""
