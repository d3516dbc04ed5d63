"""rollout_restart and rollback: changes to a Deployment's pods that need a person's
approval unless the route says `approval: auto`.

Without approval the worker only proposes the exact change (timeline and the
job's answer); `alertpilot actions approve <id>` or the API runs it. Neither is
reverted after the incident: a restart has nothing to undo, and undoing a
rollback would bring the bad release back (roll forward with a fix instead).
"""

from __future__ import annotations

from collections.abc import Callable

from workers.actions import Action, Outcome
from workers.guardrails import Guard, seconds
from workers.incident import clock, timeline
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.kube import Revision
from workers.mitigations.common import (
    Cluster,
    act,
    approved_target,
    in_force,
    intent,
    proposal,
    stopped,
    stored_intent,
    target,
)
from workers.params import RollbackParams, RolloutRestartParams


def _restart(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    """Restart the pods, as `kubectl rollout restart` does (a restartedAt annotation)."""
    ready = _ready(request, incident, cluster)
    if isinstance(ready, Outcome):
        return ready
    request, guard, where = ready
    namespace, name = where
    proposed = proposal(request, cluster, f"rollout restart of {namespace}/{name}", where)
    if proposed is not None:
        return proposed

    def restart() -> Outcome:
        # A rerun sends the first run's timestamp again: one restart, however many runs.
        at = intent(cluster, request, lambda: {"at": timeline.utcnow()})["at"]
        cluster.kube().restart(namespace, name, at)
        return Outcome("succeeded", f"restarted {namespace}/{name} (rollout restart)")

    return act(request, incident, cluster, guard, where, restart)


def _rollback(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    """Back to the previous revision, as `kubectl rollout undo` does, and only when the
    current one rolled out within `changed_within` (default 1h)."""
    ready = _ready(request, incident, cluster)
    if isinstance(ready, Outcome):
        return ready
    request, guard, where = ready
    namespace, name = where
    current, revisions = cluster.kube().revisions(namespace, name)
    sent = stored_intent(cluster, request)
    if sent is not None and sent["from"] != current:
        # A run of this job sent its rollback, then died or lost the answer, and the
        # deployment has moved on since (that rollback, or a newer rollout): not again.
        message = f"{namespace}/{name} left revision {sent['from']} already"
        return Outcome("skipped", message + "; the rollback is not sent twice")
    latest = next((r for r in revisions if r.number == current), None)
    earlier = [r for r in revisions if r.number < current]
    if latest is None or not earlier:
        return Outcome("skipped", f"{namespace}/{name} has no earlier revision to roll back to")
    window = RollbackParams.model_validate(request.params).changed_within
    age = (clock.now() - latest.created).total_seconds()
    if age > seconds(window, default=3600):
        message = (
            f"{namespace}/{name} revision {current} rolled out {_ago(age)} ago, "
            f"not within {window}: no rollback"
        )
        return Outcome("skipped", message)
    to = earlier[-1]
    facts = {
        "from_revision": current,
        "to_revision": to.number,
        "from_images": latest.images,
        "to_images": to.images,
    }
    if request.approved is not None and request.approved.facts != facts:
        was = request.approved.facts
        message = (
            f"{namespace}/{name} would now go from revision {current} ({latest.images}) to "
            f"{to.number} ({to.images}), not from {was.get('from_revision')} "
            f"({was.get('from_images')}) to {was.get('to_revision')} ({was.get('to_images')}) "
            "as approved; nothing done"
        )
        return Outcome("blocked", message)
    change = _change(where, current, latest, to)
    proposed = proposal(request, cluster, change, where, **facts)
    if proposed is not None:
        return proposed

    def roll_back() -> Outcome:
        # Sending it again from the same revision is safe: its patch tests the revision.
        intent(cluster, request, lambda: {"from": current, "to": to.number})
        cluster.kube().roll_back(namespace, name, current=current, to=to)
        return Outcome("succeeded", f"rolled back {change.removeprefix('rollback of ')}")

    return act(request, incident, cluster, guard, where, roll_back)


def _ready(
    request: ActionRequest, incident: Incident, cluster: Cluster
) -> tuple[ActionRequest, Guard, tuple[str, str]] | Outcome:
    """The request and guardrails as the policy in force has them, and the deployment to
    change; or what stops the change (the policy, the approval, a guardrail, dry run)."""
    now = in_force(request, incident, cluster)
    if isinstance(now, Outcome):
        return now
    where = _where(now.request, incident)
    if isinstance(where, Outcome):
        return where
    stop = stopped(now.request, incident, cluster, now.guard, where)
    return stop if stop is not None else (now.request, now.guard, where)


def _where(request: ActionRequest, incident: Incident) -> tuple[str, str] | Outcome:
    """The approved object once approved (never re-chosen from the alerts), else the
    first the firing alerts name."""
    if request.approved is not None:
        return approved_target(request, incident)
    return target(incident, request.params, "deployment")


def _change(where: tuple[str, str], current: int, now: Revision, to: Revision) -> str:
    namespace, name = where
    return (
        f"rollback of {namespace}/{name} from revision {current} ({now.images}) "
        f"to revision {to.number} ({to.images})"
    )


def _ago(age: float) -> str:
    hours, minutes = int(age // 3600), int(age % 3600 // 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _nothing_to_revert(why: str) -> Callable[[ActionRequest, Incident, Cluster], Outcome]:
    return lambda request, incident, cluster: Outcome("skipped", why)


ROLLOUT_RESTART = Action(
    "rollout_restart",
    RolloutRestartParams,
    run=_restart,
    revert=_nothing_to_revert("a restart has nothing to revert"),
)
ROLLBACK = Action(
    "rollback",
    RollbackParams,
    run=_rollback,
    revert=_nothing_to_revert("a rollback is not reverted: roll forward with a fixed release"),
)
