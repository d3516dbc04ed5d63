"""What every mitigation shares: the cluster it acts on, the policy in force, the
guardrails' verdict, the per-target lock, approval proposals, and the record a
revert reads.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from redis import Redis
from redis.exceptions import LockError
from rq import Queue

from workers import approvals, guardrails, templates
from workers.actions import Outcome, dry_run
from workers.guardrails import Guard
from workers.handoff import hand_off
from workers.incident.errors import PermanentError, TransientError
from workers.incident.keys import Keys, text
from workers.incident.record import Incident
from workers.jobs import locks
from workers.jobs.contract import ActionRequest, Approved
from workers.kube import Kubernetes
from workers.policy.engine import Policy

INTENT_TTL = 30 * 24 * 3600
"""As long as a job's effect marker (workers/jobs/dispatch.py EFFECT_TTL)."""


@dataclass(frozen=True)
class Cluster:
    redis: Redis
    env: Mapping[str, str]
    kube: Callable[[], Kubernetes]
    """Built on first use: a job refused by a guardrail never needs the API server."""
    queue: Queue
    """Where the worker queues what follows a mitigation: handoffs, follow-up attempts."""
    policy: Callable[[], Policy]
    """The policy set in force now (workers/policy/store.py), read when the job runs."""


@dataclass(frozen=True)
class InForce:
    """A mitigation job as the policy in force has it when the job runs."""

    request: ActionRequest
    """With its route's parameters as they are now."""
    guard: Guard
    policy: Policy


def in_force(request: ActionRequest, incident: Incident, cluster: Cluster) -> InForce | Outcome:
    """The request with its route's parameters as the policy in force has them, and the
    guardrails in force; or why it does nothing: its route no longer has the action.

    Nothing the job carries from when it was queued (or approved) decides a limit:
    a policy tightened since, a route made dry run, an action taken out, all count.
    A revert does not ask: it puts back what was done, whatever the policy says now.
    """
    policy = cluster.policy()
    name = request.route or incident.route
    route = policy.route(name)
    action = next((a for a in route.actions if a.name == request.action), None) if route else None
    if action is None or route is None:
        message = (
            f"route {name!r} has no {request.action} in the policy in force "
            f"({policy.content_hash[:12]}); nothing done"
        )
        return Outcome("skipped", message)
    # An incident that took a dry-run route stays dry run (workers/incident/transitions.py),
    # whatever this job was queued with: a follow-up queued before never acts for real.
    dry = bool(route.dry_run) or incident.dry_run
    guard = Guard.from_policy(policy.guardrails, dry_run=dry)
    return InForce(replace(request, params=dict(action.params)), guard, policy)


def stopped(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    guard: Guard,
    target: tuple[str, str],
    resource: str = "deployments",
) -> Outcome | None:
    """What stops the action before any change: a guardrail's refusal ('blocked'; at the
    attempt cap the incident goes to a person, page note and chat), or dry run
    (described with the resolved target); None when it may go ahead."""
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
        return dry_run(request, incident, "/".join(target)) if guard.dry_run else None
    details: dict[str, Any] = {"target": f"{namespace}/{name}"}
    if refusal.needs_person:
        details["handed_off"] = hand_off(cluster.queue, request, incident, refusal.reason)
    return Outcome("blocked", refusal.reason, details)


def guarded(
    now: InForce,
    incident: Incident,
    cluster: Cluster,
    target: tuple[str, str],
    change: Callable[[], Outcome],
    resource: str = "deployments",
) -> Outcome:
    """`change` on `target` (a `resource`), unless something stops it first (`stopped`),
    made as `act` makes it."""
    request, guard = now.request, now.guard
    stop = stopped(request, incident, cluster, guard, target, resource)
    return stop if stop is not None else act(request, incident, cluster, guard, target, change)


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
    that did nothing or failed before the API server took it gives its budget
    back. A failure after the API server took a write counts too, and is final:
    a retry would apply the change again, blindly, with no cooldown.
    """
    namespace, name = target
    keys = Keys(request.prefix)
    where = f"{namespace}/{name}"
    with target_lock(cluster, keys, target, request.job_id):
        refusal = guardrails.claim(
            cluster.redis,
            keys,
            guard,
            env=cluster.env,
            action=request.action,
            namespace=namespace,
            name=name,
            job_id=request.job_id,
        )
        if refusal is not None:
            return Outcome("blocked", refusal.reason, {"target": where})
        kube = cluster.kube()
        landed = kube.changes
        attempt = {"incident_id": incident.id, "action": request.action, "target": where}
        count = functools.partial(guardrails.applied, cluster.redis, keys, guard, **attempt)
        try:
            outcome = change()
        except Exception as exc:
            if kube.changes == landed:
                guardrails.refund(cluster.redis, keys, request.job_id)
                raise
            count()
            reason = (
                str(exc) if isinstance(exc, PermanentError | TransientError) else type(exc).__name__
            )
            raise PermanentError(
                f"{request.action} on {where} failed after the API server took the change "
                f"({reason}); counted as an attempt and not applied again"
            ) from exc
        if outcome.kind != "succeeded":
            guardrails.refund(cluster.redis, keys, request.job_id)
            return outcome
        count()
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
def target_lock(
    cluster: Cluster, keys: Keys, target: tuple[str, str], job_id: str
) -> Iterator[None]:
    """One change to a workload at a time, whichever incident or worker asks (a rerun of
    the job that died holding it takes it over: workers/jobs/locks.py)."""
    namespace, name = target
    where, held = keys.target_lock(namespace, name), keys.job_locks(job_id)
    lock = locks.acquire(cluster.redis, where, job_id, held, timeout=120, wait=30)
    if lock is None:
        raise TransientError(f"{namespace}/{name} is being changed by another job")
    try:
        yield
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def proposal(
    request: ActionRequest,
    cluster: Cluster,
    change: str,
    target: tuple[str, str],
    **facts: Any,
) -> Outcome | None:
    """Unless approved (or the route says `approval: auto`): propose the change, and wait.

    The proposal names its exact object (`target`, a deployment) and `facts`
    (e.g. the revisions and images of a rollback); the approved job acts on that
    object alone and checks the facts still hold, so what runs is exactly what
    the person approved.
    """
    if request.approved is not None or request.params.get("approval", "required") == "auto":
        return None
    namespace, name = target
    approved = Approved(proposal="", namespace=namespace, kind="deployment", name=name, facts=facts)
    payload = replace(request, approved=approved).to_json()
    expires = int(request.params.get("approval_expires_seconds", approvals.DEFAULT_EXPIRY))
    keys = Keys(request.prefix)
    proposal_id = approvals.propose(cluster.redis, keys, payload, change, expires=expires)
    message = (
        f"proposed {change}; approve within {_minutes(expires)}: "
        f"alertpilot actions approve {proposal_id}"
    )
    return Outcome("proposed", message, {"proposal": proposal_id})


def target(incident: Incident, params: Mapping[str, Any], kind: str) -> tuple[str, str]:
    """(namespace, name) of the `kind` ("deployment" or "ingress") to act on: the
    first of `targets`."""
    found = targets(incident, params, kind)
    if not found:
        raise PermanentError(f"no firing alert names a namespace and {kind} to act on")
    return found[0]


def targets(incident: Incident, params: Mapping[str, Any], kind: str) -> list[tuple[str, str]]:
    """Every (namespace, name) the firing alerts point the action at, in fingerprint order.

    From each alert's labels (an ingress falls back to the deployment's name);
    the route's `namespace`, `deployment` or `ingress` parameter overrides
    that, and may be a template over the alert's labels:
    `{{ labels.service }}-canary`.
    """
    fallbacks = (kind, "deployment") if kind == "ingress" else (kind,)
    found: list[tuple[str, str]] = []
    for alert in sorted(incident.firing, key=lambda a: a.fingerprint):
        namespace = _chosen(params.get("namespace"), alert.labels, ("namespace",))
        name = _chosen(params.get(kind), alert.labels, fallbacks)
        if namespace and name and (namespace, name) not in found:
            found.append((namespace, name))
    return found


def held(
    request: ActionRequest, incident: Incident, where: tuple[str, str], kind: str, why: str
) -> tuple[str, str] | Outcome:
    """`where`, an object decided earlier (approved, or changed by attempt 1), while a
    firing alert of the incident still points at it; otherwise why nothing is done.
    Never another object: the alerts may name a different one first by now."""
    if where not in targets(incident, request.params, kind):
        message = (
            f"{why} {'/'.join(where)}, but no firing alert of the incident points "
            "at it any more; nothing done"
        )
        return Outcome("blocked", message, {"target": "/".join(where)})
    return where


def approved_target(request: ActionRequest, incident: Incident) -> tuple[str, str] | Outcome:
    """The object the approval names (see `held`)."""
    assert request.approved is not None
    approved = request.approved
    return held(request, incident, approved.target, approved.kind, "approved for")


def _chosen(override: Any, labels: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    if override is not None:
        return templates.render_label_template(str(override), labels)
    return next((labels[n] for n in names if labels.get(n)), None)


def _minutes(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"
