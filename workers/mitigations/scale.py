"""scale_up: more replicas for a Deployment, through the scale subresource, or through
the minReplicas of the HorizontalPodAutoscaler that targets it (scaling under an
HPA is undone by the HPA within seconds).

It never scales down, never beyond the route's `max_replicas`, the policy's
ceiling or `max_factor` times the current count. While the incident keeps
firing it tries again once the cooldown has passed, until the attempt cap hands
the incident to a person (`repeat: false` on the route: one attempt). The
revert puts back the count from before the first attempt, if the object still
holds what alertpilot set last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.actions import ActionRequest, Outcome, action_params, dry_run
from workers.enqueue import RUN_ACTION, enqueue_once
from workers.guardrails import Guard
from workers.incidents import Incident
from workers.keys import Keys
from workers.mitigations.common import (
    Cluster,
    applied,
    record,
    recorded,
    refused,
    reverted,
    target,
    target_lock,
    to_revert,
)

FOLLOW_UP_MARGIN = 1
"""Seconds after the cooldown ends that the next attempt runs."""


def scale_up(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    guard = Guard.from_params(request.params)
    if request.transition == "resolved":
        return _revert(request, incident, cluster, guard)
    where = target(incident, request.params, "deployment")
    blocked = refused(request, incident, cluster, guard, where)
    if blocked is not None:
        return blocked
    if guard.dry_run:
        return dry_run(request, incident)
    with target_lock(cluster, Keys(request.prefix), where):
        outcome = _scale(request, incident, cluster, guard, where)
    if outcome.kind == "succeeded" and request.params.get("repeat", True) is not False:
        _follow_up(request, cluster, guard)
    return outcome


def _scale(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    guard: Guard,
    where: tuple[str, str],
) -> Outcome:
    namespace, name = where
    if cluster.redis.exists(Keys(request.prefix).cooldown("scale_up", namespace, name)):
        return Outcome("blocked", f"{namespace}/{name} is cooling down after the last scale_up")
    kube = cluster.kube()
    current = kube.read_scale(namespace, name).replicas
    hpa = kube.hpa_for(namespace, name)
    if hpa is not None:
        current = max(current, hpa[1])
    desired = _desired(action_params(request), current, guard)
    if desired <= current:
        message = f"{namespace}/{name} already has {current} replicas; never scales down"
        return Outcome("skipped", message)
    if hpa is not None:
        kube.set_hpa_min(namespace, hpa[0], desired)
        change = {"object": "hpa", "name": hpa[0], "deployment": name, "after": desired}
    else:
        kube.set_replicas(namespace, name, desired)
        change = {"object": "scale", "name": name, "after": desired}
    earlier = recorded(cluster, request, incident)  # an earlier attempt: keep its "before"
    before = int(earlier["before"]) if earlier else (hpa[1] if hpa is not None else current)
    doc = {"namespace": namespace, **{k: str(v) for k, v in change.items()}}
    doc["before"] = str(before)
    record(cluster, request, incident, doc)
    applied(cluster, request, incident, guard, f"{namespace}/{name}")
    via = f" (HPA {hpa[0]} minReplicas)" if hpa is not None else ""
    return Outcome("succeeded", f"scaled {namespace}/{name} from {current} to {desired}{via}", doc)


def _follow_up(request: ActionRequest, cluster: Cluster, guard: Guard) -> None:
    """The next attempt, after the cooldown: it finds the incident resolved (and does
    nothing), or still firing (and scales again), or the attempt cap reached."""
    attempt = int(request.params.get("attempt", 1)) + 1
    payload = request.to_json()
    payload["params"] = {**request.params, "attempt": attempt}
    job_id = f"{request.incident_id}-attempt{attempt}-{request.action}"
    when = datetime.now(UTC) + timedelta(seconds=guard.cooldown_seconds + FOLLOW_UP_MARGIN)
    enqueue_once(cluster.queue, RUN_ACTION, payload, job_id, when)


def _revert(request: ActionRequest, incident: Incident, cluster: Cluster, guard: Guard) -> Outcome:
    """Put back what scale_up changed, if the object still holds what alertpilot set."""
    found = to_revert(request, incident, cluster, guard)
    if isinstance(found, Outcome):
        return found
    namespace, name = found["namespace"], found["name"]
    before, after = int(found["before"]), int(found["after"])
    kube = cluster.kube()
    if found["object"] == "hpa":
        hpa = kube.hpa_for(namespace, found.get("deployment", name))
        now = hpa[1] if hpa else None
    else:
        now = kube.read_scale(namespace, name).replicas
    if now != after:
        message = (
            f"left {namespace}/{name} alone: it holds {now}, not the {after} alertpilot set "
            "(a person changed it since)"
        )
        return Outcome("skipped", message)
    if found["object"] == "hpa":
        kube.set_hpa_min(namespace, name, before)
    else:
        kube.set_replicas(namespace, name, before)
    reverted(cluster, request, incident)
    return Outcome("succeeded", f"reverted {namespace}/{name} from {after} to {before}")


def _desired(params: Mapping[str, Any], current: int, guard: Guard) -> int:
    if "to" in params:
        wanted = int(params["to"])
    elif "factor" in params:
        wanted = math.ceil(current * float(params["factor"]))
    else:
        wanted = current + int(params.get("by", 1))
    caps = [guard.max_replicas, math.floor(max(current, 1) * guard.max_factor)]
    if "max_replicas" in params:
        caps.append(int(params["max_replicas"]))
    return min(wanted, *caps)
