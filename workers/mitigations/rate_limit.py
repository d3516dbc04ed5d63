"""rate_limit, in two forms, put back after the incident.

(a) `rps` / `connections`: ingress-nginx limit annotations on the Ingress
    (`ingress` parameter, else the alert's `ingress` label, else its deployment).
(b) `apply: <name>`: the reviewed manifest policies/manifests/<name>.yaml, as the
    policy in force has it when the job runs (no other manifest is ever applied),
    by server-side apply under field manager `alertpilot`. Its namespace is the
    manifest's, else the alert's.

Both record the values they replaced. The revert restores them only if the
object still holds what alertpilot set; an object the apply created is deleted.
"""

from __future__ import annotations

import contextlib
import functools
import json
from typing import Any

from workers.actions import Action, Outcome
from workers.incident.errors import PermanentError
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.mitigations.common import Cluster, guarded, in_force, target
from workers.mitigations.record import recorded, remembered, revert_lock, reverted, to_revert
from workers.params import RateLimitParams
from workers.policy.manifests import MANIFEST_KINDS

RPS = "nginx.ingress.kubernetes.io/limit-rps"
CONNECTIONS = "nginx.ingress.kubernetes.io/limit-connections"
IDENTITY = ("apiVersion", "kind")
"""Top-level manifest fields that name the object rather than change it."""


def _rate_limit(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    now = in_force(request, incident, cluster)
    if isinstance(now, Outcome):
        return now
    request = now.request
    params = RateLimitParams.model_validate(request.params)
    if params.apply is None:
        where = target(incident, request.params, "ingress")
        annotate = functools.partial(_annotate, request, incident, cluster, where)
        return guarded(now, incident, cluster, where, annotate, "ingresses")
    name = params.apply
    manifest = now.policy.manifests.get(name)
    if manifest is None:
        raise PermanentError(f"no manifest {name!r} in policies/manifests of the policy in force")
    kind = MANIFEST_KINDS[(manifest["apiVersion"], manifest["kind"])][1]
    namespace = (
        manifest["metadata"].get("namespace") or target(incident, request.params, "deployment")[0]
    )
    where = (str(namespace), str(manifest["metadata"]["name"]))
    apply = functools.partial(_apply, request, incident, cluster, where, kind, name, manifest)
    return guarded(now, incident, cluster, where, apply, kind)


def _annotate(
    request: ActionRequest, incident: Incident, cluster: Cluster, where: tuple[str, str]
) -> Outcome:
    wanted = {
        key: str(request.params[param])
        for key, param in ((RPS, "rps"), (CONNECTIONS, "connections"))
        if param in request.params
    }
    if not wanted:
        raise PermanentError("rate_limit needs rps or connections, or apply")
    namespace, name = where
    kube = cluster.kube()
    found = kube.read("ingresses", namespace, name)
    if found is None:
        raise PermanentError(f"ingress {namespace}/{name} not found")
    changes = {"metadata": {"annotations": wanted}}
    doc = {
        "form": "annotations",
        "resource": "ingresses",
        "namespace": namespace,
        "name": name,
        "set": changes,
        "before": _values_at(found, changes),
        "created": "no",
    }
    with _remembered(cluster, request, incident, doc):
        kube.merge_patch("ingresses", namespace, name, changes)
    limits = ", ".join(f"{k.rsplit('/', 1)[1]}={v}" for k, v in wanted.items())
    return Outcome("succeeded", f"rate limited ingress {namespace}/{name} ({limits})")


def _apply(
    request: ActionRequest,
    incident: Incident,
    cluster: Cluster,
    where: tuple[str, str],
    resource: str,
    reviewed: str,
    manifest: dict[str, Any],
) -> Outcome:
    namespace, name = where
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    changes = {k: v for k, v in body.items() if k not in IDENTITY}
    changes["metadata"] = {
        k: v for k, v in body["metadata"].items() if k not in ("name", "namespace")
    }
    kube = cluster.kube()
    found = kube.read(resource, namespace, name)
    doc = {
        "form": "apply",
        "resource": resource,
        "namespace": namespace,
        "name": name,
        "set": changes,
        "before": _values_at(found or {}, changes),
        "created": "yes" if found is None else "no",
    }
    with _remembered(cluster, request, incident, doc):
        kube.apply(namespace, body)
    what = f"{manifest['kind']} {namespace}/{name}"
    return Outcome("succeeded", f"applied {reviewed} ({what}, server-side apply)")


def _restore(request: ActionRequest, incident: Incident, cluster: Cluster) -> Outcome:
    found = to_revert(request, incident, cluster)
    if isinstance(found, Outcome):
        return found
    resource, namespace, name = found["resource"], found["namespace"], found["name"]
    wanted, before = json.loads(found["set"]), json.loads(found["before"])
    kube = cluster.kube()
    what = f"{resource.removesuffix('s')} {namespace}/{name}"
    with revert_lock(cluster, request, (namespace, name)):
        live = kube.read(resource, namespace, name)
        if live is None:
            reverted(cluster, request, incident)
            return Outcome("skipped", f"{what} is gone; nothing to restore")
        if _values_at(live, wanted) != wanted:
            return Outcome("skipped", f"left {what} alone: what alertpilot set was changed since")
        if found["created"] == "yes":
            kube.delete(resource, namespace, name)
            message = f"deleted {what}, which the rate limit had created"
        else:
            kube.merge_patch(resource, namespace, name, before)
            message = f"removed the rate limit from {what}"
    reverted(cluster, request, incident)
    return Outcome("succeeded", message)


def _remembered(
    cluster: Cluster, request: ActionRequest, incident: Incident, doc: dict[str, Any]
) -> contextlib.AbstractContextManager[None]:
    """`remembered`, keeping the first record's `before` on a retry: what the object
    held before alertpilot touched it."""
    earlier = recorded(cluster, request, incident)
    if earlier.get("form") == doc["form"]:
        doc = {**doc, "before": json.loads(earlier["before"]), "created": earlier["created"]}
    return remembered(cluster, request, incident, doc)


def _values_at(obj: Any, shape: Any) -> Any:
    """What `obj` holds at each leaf of `shape` (None where it holds nothing)."""
    if not isinstance(shape, dict):
        return obj
    source = obj if isinstance(obj, dict) else {}
    return {k: _values_at(source.get(k), v) for k, v in shape.items()}


RATE_LIMIT = Action("rate_limit", RateLimitParams, run=_rate_limit, revert=_restore)
