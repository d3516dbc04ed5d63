"""scale_up: more replicas for a Deployment, through the scale subresource, or through
the minReplicas of the HorizontalPodAutoscaler that targets it (scaling under an
HPA is undone by the HPA within seconds).

It never scales down, never beyond the route's `max_replicas`, the policy's
ceiling, `max_factor` times the current count or the HPA's maxReplicas. While
the incident keeps firing it tries again once the cooldown has passed; a
follow-up that cannot act, and the attempt cap, hand the incident to a person
(`repeat: false` on the route: one attempt). The revert puts back the count
from before alertpilot's attempts, if the object still holds what it set last.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from datetime import timedelta
from typing import Any

from workers.actions import Action, Outcome
from workers.guardrails import Guard
from workers.handoff import hand_off
from workers.incident import clock
from workers.incident.record import Incident
from workers.jobs.contract import RUN_ACTION, ActionRequest, action_job_id, enqueue
from workers.mitigations.common import Cluster, guarded, held, in_force, intent, target
from workers.mitigations.record import recorded, remembered, revert_lock, reverted, to_revert
from workers.params import ScaleUpParams

FOLLOW_UP_MARGIN = 1
"""Seconds after the cooldown ends that the next attempt runs."""


def _scale_up(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    now = in_force(request, incident, cluster)
    if isinstance(now, Outcome):
        return now
    request, guard = now.request, now.guard
    params = ScaleUpParams.model_validate(request.params)
    if request.attempt > 1 and not params.repeat:
        return Outcome("skipped", "repeat is off in the policy in force: no follow-up attempt")
    where = _where(request, incident)
    if isinstance(where, Outcome):
        return where
    scale = functools.partial(_scale, request, incident, cluster, guard, where)
    outcome = guarded(now, incident, cluster, where, scale)
    follow_up = request.attempt > 1
    if outcome.kind == "succeeded" and params.repeat:
        _next_attempt(request, cluster, guard, where)
    elif follow_up and "handed_off" not in outcome.details and outcome.kind != "succeeded":
        # Still firing after an attempt, and scaling cannot help any more: a person decides.
        note = f"scale_up stopped: {outcome.message}"
        outcome.details["handed_off"] = hand_off(cluster.queue, request, incident, note)
    return outcome


def _scale(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    guard: Guard,
    where: tuple[str, str],
) -> Outcome:
    namespace, name = where
    kube = cluster.kube()
    scale = kube.read_scale(namespace, name)
    hpa = kube.hpa_for(namespace, name)

    def decide() -> dict[str, Any]:
        current = max(scale.replicas, hpa.min_replicas) if hpa else scale.replicas
        desired = _desired(ScaleUpParams.model_validate(request.params), current, guard)
        if hpa is not None:
            desired = min(desired, hpa.max_replicas)
        return {"current": current, "desired": desired}

    # A rerun of this job repeats the first run's decision: scaling to the same
    # count again changes nothing, so a lost answer never scales twice.
    decided = intent(cluster, request, decide)
    current, desired = int(decided["current"]), int(decided["desired"])
    if desired <= current:
        message = f"{namespace}/{name} has {current} replicas; the caps allow no more"
        return Outcome("skipped", message)
    now = hpa.min_replicas if hpa is not None else scale.replicas
    if now > desired:  # raised by someone else since this job decided: never lower it
        return Outcome("skipped", f"{namespace}/{name} is at {now} already; never scales down")
    if hpa is not None:
        change = {"object": "hpa", "name": hpa.name, "deployment": name}
    else:
        change = {"object": "scale", "name": name}
    earlier = recorded(cluster, request, incident)
    # Revert to the count before alertpilot's first attempt, unless someone changed it
    # since alertpilot's last one: then what they set is what the revert restores.
    keep = (
        earlier and earlier.get("object") == change["object"] and int(earlier["after"]) == current
    )
    before = int(earlier["before"]) if keep else current
    doc = {"namespace": namespace, **change, "before": str(before), "after": str(desired)}
    with remembered(cluster, request, incident, doc):
        if hpa is not None:
            kube.set_hpa_min(hpa, namespace, desired)
        elif scale.replicas != desired:
            kube.set_replicas(namespace, name, desired, scale.resource_version)
    via = f" (HPA {hpa.name} minReplicas)" if hpa is not None else ""
    return Outcome("succeeded", f"scaled {namespace}/{name} from {current} to {desired}{via}", doc)


def _where(request: ActionRequest, incident: Incident) -> tuple[str, str] | Outcome:
    """Attempt 1 picks the deployment the firing alerts name first; a follow-up keeps to
    the one attempt 1 scaled (the incident has one revert record per action)."""
    if not request.target:
        return target(incident, request.params, "deployment")
    namespace, _, name = request.target.partition("/")
    return held(request, incident, (namespace, name), "deployment", "attempt 1 scaled")


def _next_attempt(
    request: ActionRequest, cluster: Cluster, guard: Guard, where: tuple[str, str]
) -> None:
    """The next attempt, after the cooldown, on the same deployment: it finds the incident
    resolved (and does nothing), or still firing (and scales again), or the attempt cap
    reached."""
    attempt = request.attempt + 1
    payload = replace(request, attempt=attempt, target="/".join(where)).to_json()
    job_id = action_job_id(request.incident_id, f"attempt{attempt}", request.action)
    when = clock.now() + timedelta(seconds=guard.cooldown_seconds + FOLLOW_UP_MARGIN)
    enqueue(cluster.queue, RUN_ACTION, payload, job_id, at=when)


def _revert(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    """Put back what scale_up changed, if the object still holds what alertpilot set."""
    found = to_revert(request, incident, cluster)
    if isinstance(found, Outcome):
        return found
    namespace, name = found["namespace"], found.get("deployment", found["name"])
    before, after = int(found["before"]), int(found["after"])
    kube = cluster.kube()
    with revert_lock(cluster, request, (namespace, name)):
        if found["object"] == "hpa":
            hpa = kube.hpa_for(namespace, name)
            what = f"HPA {namespace}/{found['name']} minReplicas"
            if hpa is None or hpa.name != found["name"] or hpa.min_replicas != after:
                return _left_alone(what, hpa.min_replicas if hpa else None, after)
            kube.set_hpa_min(hpa, namespace, before)
        else:
            scale = kube.read_scale(namespace, name)
            what = f"{namespace}/{name}"
            if scale.replicas != after:
                return _left_alone(what, scale.replicas, after)
            kube.set_replicas(namespace, name, before, scale.resource_version)
    reverted(cluster, request, incident)
    return Outcome("succeeded", f"reverted {what} from {after} to {before}")


def _left_alone(what: str, now: int | None, after: int) -> Outcome:
    message = f"left {what} alone: it holds {now}, not the {after} alertpilot set"
    return Outcome("skipped", message + " (a person changed it since)")


def _desired(params: ScaleUpParams, current: int, guard: Guard) -> int:
    if params.to is not None:
        wanted = params.to
    elif params.factor is not None:
        wanted = math.ceil(current * params.factor)
    else:
        wanted = current + (params.by or 1)
    caps = [guard.max_replicas, math.floor(max(current, 1) * guard.max_factor)]
    if params.max_replicas is not None:
        caps.append(params.max_replicas)
    return min(wanted, *caps)


SCALE_UP = Action("scale_up", ScaleUpParams, run=_scale_up, revert=_revert)
