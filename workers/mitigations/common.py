"""What every mitigation shares: the cluster it acts on, the guardrails' verdict,
the per-target lock, approval proposals, and the record a revert reads.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import LockError
from rq import Queue

from workers import approvals, guardrails, templates
from workers.actions import ActionRequest, Outcome, dry_run
from workers.errors import PermanentError, TransientError
from workers.guardrails import Guard
from workers.handoff import hand_off
from workers.incidents import Incident
from workers.keys import Keys, text
from workers.kube import Kubernetes

INTENT_TTL = 30 * 24 * 3600
"""As long as a job's effect marker (workers/jobs.py EFFECT_TTL)."""


@dataclass(frozen=True)
class Cluster:
    redis: Redis
    env: Mapping[str, str]
    kube: Callable[[], Kubernetes]
    """Built on first use: a job refused by a guardrail never needs the API server."""
    queue: Queue
    """Where the worker queues what follows a mitigation: handoffs, follow-up attempts."""


def refused(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    guard: Guard,
    target: tuple[str, str],
    resource: str = "deployments",
) -> Outcome | None:
    """The guardrails' refusal as a 'blocked' outcome, or None when the action may go ahead.

    At the attempt cap the incident goes to a person (page note and chat).
    """
    namespace, name = target
    refusal = guardrails.refuse(
        cluster.redis,
        Keys(request.prefix),
        guard,
        env=cluster.env,
        incident_id=incident.id,
        action=request.action,
        namespace=namespace,
        name=name,
        labels=lambda: cluster.kube().labels(resource, namespace, name),
    )
    if refusal is None:
        return None
    details: dict[str, Any] = {"target": f"{namespace}/{name}"}
    if refusal.needs_person:
        details["handed_off"] = hand_off(cluster.queue, request, incident, refusal.reason)
    return Outcome("blocked", refusal.reason, details)


def stopped(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    guard: Guard,
    target: tuple[str, str],
    resource: str = "deployments",
) -> Outcome | None:
    """What stops the action before any change: a guardrail's refusal, or dry run
    (described with the resolved target); None when it may go ahead."""
    blocked = refused(request, incident, cluster, guard, target, resource)
    if blocked is None and guard.dry_run:
        return dry_run(request, incident, "/".join(target))
    return blocked


def act(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    guard: Guard,
    target: tuple[str, str],
    change: Callable[[], Outcome],
) -> Outcome:
    """Make `change` under the target lock, once the cooldown (again) and the budget allow.

    A change that succeeded counts as an attempt and starts the cooldown; one
    that did nothing or failed gives its budget back.
    """
    namespace, name = target
    keys = Keys(request.prefix)
    with target_lock(cluster, keys, target):
        refusal = guardrails.claim(
            cluster.redis, keys, guard, action=request.action, namespace=namespace, name=name
        )
        if refusal is not None:
            return Outcome("blocked", refusal.reason, {"target": f"{namespace}/{name}"})
        try:
            outcome = change()
        except Exception:
            guardrails.refund(cluster.redis, keys)
            raise
        if outcome.kind != "succeeded":
            guardrails.refund(cluster.redis, keys)
            return outcome
        guardrails.applied(
            cluster.redis,
            keys,
            guard,
            incident_id=incident.id,
            action=request.action,
            target=f"{namespace}/{name}",
        )
        return outcome


def intent(
    cluster: Cluster, request: ActionRequest, fresh: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The change this job decided on. A rerun of the job (a crash, a lost answer, a
    retry) gets the first run's decision back and repeats exactly that change, which
    the API server takes as a no-op if it landed; it never decides a second one."""
    found = stored_intent(cluster, request)
    if found is not None:
        return found
    decided = fresh()
    cluster.redis.set(
        Keys(request.prefix).intent(request.job_id), json.dumps(decided), ex=INTENT_TTL
    )
    return decided


def stored_intent(cluster: Cluster, request: ActionRequest) -> dict[str, Any] | None:
    """The decision an earlier run of this job stored, if any."""
    stored = cluster.redis.get(Keys(request.prefix).intent(request.job_id))
    if stored is None:
        return None
    found: dict[str, Any] = json.loads(text(stored))
    return found


@contextlib.contextmanager
def target_lock(cluster: Cluster, keys: Keys, target: tuple[str, str]) -> Iterator[None]:
    """One change to a workload at a time, whichever incident or worker asks."""
    namespace, name = target
    lock = cluster.redis.lock(keys.target_lock(namespace, name), timeout=120, blocking_timeout=30)
    if not lock.acquire():
        raise TransientError(f"{namespace}/{name} is being changed by another job")
    try:
        yield
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def proposal(request: ActionRequest, cluster: Cluster, change: str, **facts: Any) -> Outcome | None:
    """Unless approved (or the route says `approval: auto`): propose the change, and wait.

    `facts` travel with the approved job (e.g. the revision a rollback starts
    from), so what runs is exactly what the person approved.
    """
    if request.params.get("approved") or request.params.get("approval", "required") == "auto":
        return None
    payload = request.to_json()
    payload["params"] = {**request.params, **facts, "approved": True}
    expires = int(request.params.get("approval_expires_seconds", approvals.DEFAULT_EXPIRY))
    keys = Keys(request.prefix)
    proposal_id = approvals.propose(cluster.redis, keys, payload, change, expires=expires)
    message = (
        f"proposed {change}; approve within {_minutes(expires)}: "
        f"alertpilot actions approve {proposal_id}"
    )
    return Outcome("proposed", message, {"proposal": proposal_id})


def record(
    cluster: Cluster, request: ActionRequest, incident: Incident, doc: dict[str, Any]
) -> None:
    """What a mitigation changed, for its revert (values stored as text)."""
    stored: Mapping[Any, Any] = {  # redis-py's mapping type is invariant in its keys
        k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()
    }
    cluster.redis.hset(Keys(request.prefix).mitigation(incident.id, request.action), mapping=stored)


def recorded(cluster: Cluster, request: ActionRequest, incident: Incident) -> dict[str, str]:
    raw = cluster.redis.hgetall(Keys(request.prefix).mitigation(incident.id, request.action))
    return {text(k): text(v) for k, v in raw.items()}


def to_revert(
    request: ActionRequest, incident: Incident, cluster: Cluster, guard: Guard
) -> dict[str, str] | Outcome:
    """What the mitigation recorded, or why there is nothing to revert now.

    While mitigations are paused the revert waits (a transient error: the job
    retries with backoff, then lands in the failed registry for `alertpilot
    jobs retry`), rather than being dropped.
    """
    found = recorded(cluster, request, incident)
    if not found:
        return Outcome("skipped", f"nothing to revert: {request.action} changed nothing")
    stop = guardrails.paused(cluster.redis, Keys(request.prefix), cluster.env)
    if stop is not None:
        raise TransientError(f"mitigations are paused: {stop}; the revert waits")
    if guard.dry_run:
        return dry_run(request, incident)
    return found


def reverted(cluster: Cluster, request: ActionRequest, incident: Incident) -> None:
    cluster.redis.delete(Keys(request.prefix).mitigation(incident.id, request.action))


def target(incident: Incident, params: Mapping[str, Any], kind: str) -> tuple[str, str]:
    """(namespace, name) of the `kind` ("deployment" or "ingress") to act on.

    By default from the first firing alert that has the labels (an ingress
    falls back to the deployment's name); the route's `namespace`, `deployment`
    or `ingress` parameter overrides that, and may be a template over the
    alert's labels: `{{ labels.service }}-canary`.
    """
    fallbacks = (kind, "deployment") if kind == "ingress" else (kind,)
    for alert in sorted(incident.firing, key=lambda a: a.fingerprint):
        namespace = _chosen(params.get("namespace"), alert.labels, ("namespace",))
        name = _chosen(params.get(kind), alert.labels, fallbacks)
        if namespace and name:
            return namespace, name
    raise PermanentError(f"no firing alert names a namespace and {kind} to act on")


def _chosen(override: Any, labels: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    if override is not None:
        return templates.render_label_template(str(override), labels)
    return next((labels[n] for n in names if labels.get(n)), None)


def _minutes(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"
