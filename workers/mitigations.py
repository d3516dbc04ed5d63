"""Mitigations on Kubernetes. This release: scale_up, behind the guardrails.

scale_up raises a Deployment's replicas through the scale subresource, or
the minReplicas of the HorizontalPodAutoscaler that targets it (scaling under
an HPA is undone by the HPA within seconds). It never scales down, never
beyond the route's `max_replicas`, the policy's ceiling or `max_factor`
times the current count, and records what it changed for the revert.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import LockError

from workers import approvals, guardrails, timeline
from workers.actions import ActionRequest, Outcome, action_params, dry_run
from workers.errors import PermanentError, TransientError
from workers.guardrails import Guard
from workers.incidents import Incident
from workers.keys import Keys, text
from workers.kube import Kubernetes


@dataclass(frozen=True)
class Cluster:
    redis: Redis
    env: Mapping[str, str]
    kube: Callable[[], Kubernetes]
    """Built on first use: a job refused by a guardrail never needs the API server."""


def scale_up(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    keys = Keys(request.prefix)
    guard = Guard.from_params(request.params)
    if request.transition == "resolved":
        return _revert(request, incident, cluster, guard)
    namespace, name = _target(incident)
    blocked = _refused(cluster, keys, guard, incident, "scale_up", namespace, name)
    if blocked is not None:
        return blocked
    if guard.dry_run:
        return dry_run(request, incident)
    # One change to a workload at a time, whichever incident or worker asks.
    lock = cluster.redis.lock(keys.target_lock(namespace, name), timeout=120, blocking_timeout=30)
    if not lock.acquire():
        raise TransientError(f"{namespace}/{name} is being changed by another job")
    try:
        return _scale(request, incident, cluster, guard, namespace, name)
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def _scale(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    guard: Guard,
    namespace: str,
    name: str,
) -> Outcome:
    keys = Keys(request.prefix)
    if cluster.redis.exists(keys.cooldown("scale_up", namespace, name)):
        return Outcome("blocked", f"{namespace}/{name} is cooling down after the last scale_up")
    kube = cluster.kube()
    current = kube.read_scale(namespace, name).replicas
    desired = _desired(action_params(request), current, guard)
    if desired <= current:
        message = f"{namespace}/{name} already has {current} replicas; never scales down"
        return Outcome("skipped", message)
    hpa = kube.hpa_for(namespace, name)
    if hpa is not None:
        hpa_name, hpa_min = hpa
        kube.set_hpa_min(namespace, hpa_name, desired)
        change = {
            "object": "hpa",
            "name": hpa_name,
            "deployment": name,
            "before": hpa_min,
            "after": desired,
        }
    else:
        kube.set_replicas(namespace, name, desired)
        change = {"object": "scale", "name": name, "before": current, "after": desired}
    record = {"namespace": namespace, **{k: str(v) for k, v in change.items()}}
    stored: Mapping[Any, Any] = record  # redis-py's mapping type is invariant in its keys
    cluster.redis.hset(keys.mitigation(incident.id, "scale_up"), mapping=stored)
    target = f"{namespace}/{name}"
    guardrails.applied(
        cluster.redis, keys, guard, incident_id=incident.id, action="scale_up", target=target
    )
    via = f" (HPA {change['name']} minReplicas)" if hpa is not None else ""
    return Outcome("succeeded", f"scaled {target} from {current} to {desired}{via}", record)


def _revert(request: ActionRequest, incident: Incident, cluster: Cluster, guard: Guard) -> Outcome:
    """Put back what scale_up changed, if the object still holds what alertpilot set."""
    keys = Keys(request.prefix)
    record = _to_revert(request, incident, cluster, guard)
    if isinstance(record, Outcome):
        return record
    namespace, name = record["namespace"], record["name"]
    before, after = int(record["before"]), int(record["after"])
    kube = cluster.kube()
    if record["object"] == "hpa":
        found = kube.hpa_for(namespace, record.get("deployment", name))
        now = found[1] if found else None
    else:
        now = kube.read_scale(namespace, name).replicas
    if now != after:
        message = (
            f"left {namespace}/{name} alone: it holds {now}, not the {after} alertpilot set "
            "(a person changed it since)"
        )
        return Outcome("skipped", message)
    if record["object"] == "hpa":
        kube.set_hpa_min(namespace, name, before)
    else:
        kube.set_replicas(namespace, name, before)
    cluster.redis.delete(keys.mitigation(incident.id, "scale_up"))
    return Outcome("succeeded", f"reverted {namespace}/{name} from {after} to {before}")


def _to_revert(
    request: ActionRequest, incident: Incident, cluster: Cluster, guard: Guard
) -> dict[str, str] | Outcome:
    """What the mitigation recorded, or why there is nothing to revert now."""
    keys = Keys(request.prefix)
    raw = cluster.redis.hgetall(keys.mitigation(incident.id, request.action))
    record = {text(k): text(v) for k, v in raw.items()}
    if not record:
        return Outcome("skipped", f"nothing to revert: {request.action} changed nothing")
    stop = guardrails.paused(cluster.redis, keys, cluster.env)
    if stop is not None:
        return Outcome("blocked", f"mitigations are paused: {stop}; revert not done")
    if guard.dry_run:
        return dry_run(request, incident)
    return record


def _refused(
    cluster: Cluster,
    keys: Keys,
    guard: Guard,
    incident: Incident,
    action: str,
    namespace: str,
    name: str,
) -> Outcome | None:
    """The guardrails' refusal as a 'blocked' outcome, or None when the action may go ahead."""
    reason = guardrails.refuse(
        cluster.redis,
        keys,
        guard,
        env=cluster.env,
        incident_id=incident.id,
        action=action,
        namespace=namespace,
        name=name,
    )
    return None if reason is None else Outcome("blocked", reason, {"target": f"{namespace}/{name}"})


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


def _target(incident: Incident) -> tuple[str, str]:
    firing = sorted(incident.firing, key=lambda a: a.fingerprint)
    for alert in firing:
        if alert.labels.get("namespace") and alert.labels.get("deployment"):
            return alert.labels["namespace"], alert.labels["deployment"]
    raise PermanentError("no firing alert names a namespace and deployment to scale")


def rollout_restart(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    """Restart a Deployment's pods, as `kubectl rollout restart` does.

    Needs approval unless the route says `approval: auto`: without it the
    worker only proposes the change. Nothing to revert after resolve.
    """
    if request.transition == "resolved":
        return Outcome("skipped", "a restart has nothing to revert")
    namespace, name = _target(incident)
    keys = Keys(request.prefix)
    guard = Guard.from_params(request.params)
    approved = bool(request.params.get("approved"))
    if not approved and request.params.get("approval", "required") != "auto":
        payload = request.to_json()
        payload["params"] = {**request.params, "approved": True}
        expires = int(request.params.get("approval_expires_seconds", approvals.DEFAULT_EXPIRY))
        change = f"rollout restart of {namespace}/{name}"
        proposal = approvals.propose(cluster.redis, keys, payload, change, expires=expires)
        message = (
            f"proposed {change}; approve within {expires // 60}m: "
            f"alertpilot actions approve {proposal}"
        )
        return Outcome("proposed", message, {"proposal": proposal})
    blocked = _refused(cluster, keys, guard, incident, "rollout_restart", namespace, name)
    if blocked is not None:
        return blocked
    if guard.dry_run:
        return dry_run(request, incident)
    cluster.kube().restart(namespace, name, timeline.utcnow())
    target = f"{namespace}/{name}"
    guardrails.applied(
        cluster.redis, keys, guard, incident_id=incident.id, action="rollout_restart", target=target
    )
    return Outcome("succeeded", f"restarted {target} (rollout restart)")


RPS = "nginx.ingress.kubernetes.io/limit-rps"
CONNECTIONS = "nginx.ingress.kubernetes.io/limit-connections"


def rate_limit(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    """ingress-nginx rate limiting through annotations; put back after the incident.

    Parameters: `rps`, `connections` (either or both), `ingress` (default: the
    alert's `ingress` label, else its deployment's name).
    """
    keys = Keys(request.prefix)
    guard = Guard.from_params(request.params)
    if request.transition == "resolved":
        return _restore_annotations(request, incident, cluster, guard)
    namespace, name = _ingress_target(incident, request.params)
    blocked = _refused(cluster, keys, guard, incident, "rate_limit", namespace, name)
    if blocked is not None:
        return blocked
    if guard.dry_run:
        return dry_run(request, incident)
    wanted = {
        key: str(request.params[param])
        for key, param in ((RPS, "rps"), (CONNECTIONS, "connections"))
        if param in request.params
    }
    if not wanted:
        raise PermanentError("rate_limit needs rps or connections")
    kube = cluster.kube()
    before = kube.ingress_annotations(namespace, name)
    kube.annotate_ingress(namespace, name, dict(wanted))
    record = {"namespace": namespace, "name": name, "set": json.dumps(wanted)}
    record["before"] = json.dumps({k: before.get(k) for k in wanted})
    stored: Mapping[Any, Any] = record
    cluster.redis.hset(keys.mitigation(incident.id, "rate_limit"), mapping=stored)
    target = f"{namespace}/{name}"
    guardrails.applied(
        cluster.redis, keys, guard, incident_id=incident.id, action="rate_limit", target=target
    )
    limits = ", ".join(f"{k.rsplit('/', 1)[1]}={v}" for k, v in wanted.items())
    return Outcome("succeeded", f"rate limited ingress {target} ({limits})")


def _restore_annotations(
    request: ActionRequest, incident: Incident, cluster: Cluster, guard: Guard
) -> Outcome:
    keys = Keys(request.prefix)
    record = _to_revert(request, incident, cluster, guard)
    if isinstance(record, Outcome):
        return record
    namespace, name = record["namespace"], record["name"]
    wanted, before = json.loads(record["set"]), json.loads(record["before"])
    kube = cluster.kube()
    now = kube.ingress_annotations(namespace, name)
    if any(now.get(k) != v for k, v in wanted.items()):
        message = f"left ingress {namespace}/{name} alone: its limits were changed since"
        return Outcome("skipped", message)
    kube.annotate_ingress(namespace, name, before)
    cluster.redis.delete(keys.mitigation(incident.id, "rate_limit"))
    return Outcome("succeeded", f"removed the rate limit from ingress {namespace}/{name}")


def _ingress_target(incident: Incident, params: Mapping[str, Any]) -> tuple[str, str]:
    firing = sorted(incident.firing, key=lambda a: a.fingerprint)
    for alert in firing:
        namespace = alert.labels.get("namespace")
        name = (
            params.get("ingress") or alert.labels.get("ingress") or alert.labels.get("deployment")
        )
        if namespace and name:
            return namespace, str(name)
    raise PermanentError("no firing alert names a namespace and ingress to rate limit")
