"""A local HTTPS stand-in of the Kubernetes API server, for the official ``kubernetes`` client.

    with KubeStandIn(token="t0ken") as kube:
        kube.add_deployment("production", "api", replicas=4)
        api = new_client_from_config(config_file=str(kube.write_kubeconfig(tmp / "kubeconfig")))
        AppsV1Api(api).patch_namespaced_deployment_scale("api", "production", {"spec": {...}})
        assert ("apps", "deployments/scale", "patch") in kube.calls

Serves ``/apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}[/scale]]`` (``/api/v1/...``
for configmaps): apps/v1 deployments (+ scale: GET, PATCH, PUT with a stale
``metadata.resourceVersion`` -> 409) and replicasets, autoscaling/v2 horizontalpodautoscalers,
networking.k8s.io/v1 ingresses, v1 configmaps. GET is get, or list with equality
``labelSelector`` terms; POST creates; PATCH takes strategic merge (maps deep-merged, null
deletes, lists of objects merged by ``name``; a stale ``metadata.resourceVersion`` in the body
-> 409, as the API server does), merge patch (RFC 7386), JSON patch
(add/replace/remove/test) or server-side apply (``application/apply-patch+yaml`` and
``fieldManager``: creates (201) or merges, and records the manager in ``managedFields``).
DELETE of a named object removes it and answers 200 with a ``Status`` (status Success, details
{name, group, kind: the resource, uid}), as the API server does for every kind served here (only
kinds like pods return the deleted object); ``DeleteOptions`` ``preconditions`` (uid,
resourceVersion) that do not hold are 409; deleting a deployment deletes the ReplicaSets it owns
unless ``propagationPolicy=Orphan`` (then they lose the owner reference). DELETE of the scale
subresource or of a collection is 405. ``dryRun=All`` (query, or the DeleteOptions' ``dryRun``)
answers without storing. A bearer token is required (401). Errors are Kubernetes ``Status``
objects; a missing object is 404. Every routed call is recorded in ``calls`` as the RBAC triple
(apiGroup, resource[/subresource], verb), verb one of get/list/create/patch/update/delete (and
deletecollection for a DELETE without a name). ``hold_after_write("deployments/scale", 5)``
stores the next write of that resource and holds its answer back (a client can die waiting).

Controllers act instantly: a deployment's status equals its spec; a template change rolls out a
revision as the deployment controller does (the owned ReplicaSet with that template is reused,
else one is created; ``deployment.kubernetes.io/revision`` becomes max+1, so ``kubectl rollout
undo`` style rollbacks and restarts show up in ``replicasets``); an HPA's status follows its
target. Writes that change nothing keep resourceVersion; spec changes bump generation.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from tests.support.chat_standin import HTTPSStandIn, Received, Reply

Obj = dict[str, Any]
Key = tuple[str, str, str, str]  # (group, resource, namespace, name)
REVISION = "deployment.kubernetes.io/revision"
KINDS = {  # (group, resource) -> (version, kind)
    ("apps", "deployments"): ("v1", "Deployment"),
    ("apps", "replicasets"): ("v1", "ReplicaSet"),
    ("autoscaling", "horizontalpodautoscalers"): ("v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io", "ingresses"): ("v1", "Ingress"),
    ("", "configmaps"): ("v1", "ConfigMap"),
}
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}
REASONS |= {405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 422: "Invalid"}
REASONS |= {415: "UnsupportedMediaType", 429: "TooManyRequests", 500: "InternalError"}
REASONS |= {503: "ServiceUnavailable", 504: "Timeout"}
VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
_GROUP = r"^/(?:apis/(?P<group>[^/]+)/(?P<gv>[^/]+)|api/(?P<cv>v1))/namespaces/(?P<ns>[^/]+)"
_PATH = re.compile(_GROUP + r"/(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


@dataclass(frozen=True)
class KubeRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Header names lower-case."""
    body: Any
    """Parsed JSON (YAML for apply); the text when unparsable; None when empty."""
    content_type: str
    """Without parameters, e.g. ``application/strategic-merge-patch+json``."""
    status: int


class KubeError(Exception):
    def __init__(self, code: int, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.details = code, details or {}

    def status(self) -> Obj:
        reason = REASONS.get(self.code, "Unknown")
        head = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        head |= {"message": str(self), "reason": reason}
        return head | {"details": self.details, "code": self.code}


@dataclass(frozen=True)
class _Route:
    group: str
    resource: str
    ns: str
    name: str | None
    sub: str | None

    def details(self) -> Obj:
        return {"name": self.name or "", "group": self.group, "kind": self.resource}

    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


class _Server(HTTPSStandIn):
    def __init__(self, owner: KubeStandIn) -> None:
        super().__init__(name="kube-standin")
        self.owner = owner

    def handle(self, request: Received, fault: int | None) -> Reply:
        return self.owner._handle(request)

    def serve(self, request: Received) -> Reply | None:
        reply = super().serve(request)  # stored and recorded, under the lock
        self.owner._wait_if_held()  # outside it: other requests go on meanwhile
        return reply


class KubeStandIn:
    """See the module docstring. Seed with ``add_*``; inspect ``requests``, ``calls``, objects."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._server = _Server(self)
        self._lock = threading.RLock()
        self._rv = itertools.count(1000)
        self._objects: dict[Key, Obj] = {}
        self._requests: list[KubeRequest] = []
        self._calls: list[tuple[str, str, str]] = []
        self._faults: defaultdict[tuple[str, str], deque[int]] = defaultdict(deque)
        self._forbidden: set[tuple[str, str]] = set()
        self._holds: dict[str, float] = {}
        self._held = threading.local()
        self._stopping = threading.Event()

    def __enter__(self) -> Self:
        self._stopping.clear()
        self._server.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()  # a held answer goes out now
        self._server.__exit__(kind, exc, tb)

    @property
    def server(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return self._server.origin

    @property
    def ca_path(self) -> str:
        return self._server.ca_path

    def write_kubeconfig(self, path: Path | str, namespace: str = "default") -> Path:
        cluster = {"server": self.server, "certificate-authority": self.ca_path}
        context = {"cluster": "standin", "user": "alertpilot", "namespace": namespace}
        config: Obj = {"apiVersion": "v1", "kind": "Config", "current-context": "standin"}
        config["clusters"] = [{"name": "standin", "cluster": cluster}]
        config["users"] = [{"name": "alertpilot", "user": {"token": self.token}}]
        config["contexts"] = [{"name": "standin", "context": context}]
        Path(path).write_text(yaml.safe_dump(config))
        return Path(path)

    # seeding ------------------------------------------------------------------------------
    def add_deployment(
        self,
        namespace: str,
        name: str,
        replicas: int = 4,
        labels: dict[str, str] | None = None,
        revision: int = 1,
        template_annotations: dict[str, str] | None = None,
    ) -> Obj:
        """``labels`` are the object's, the selector's and the pod template's (default app=NAME)."""
        match = dict(labels or {"app": name})
        pod_meta = {"labels": match, "annotations": dict(template_annotations or {})}
        pod_spec = {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]}
        spec = {"replicas": replicas, "selector": {"matchLabels": match}}
        spec["template"] = {"metadata": pod_meta, "spec": pod_spec}
        meta = {"name": name, "labels": match, "annotations": {REVISION: str(revision)}}
        return self._seed("apps", "deployments", namespace, {"metadata": meta, "spec": spec})

    def add_hpa(
        self,
        namespace: str,
        name: str,
        target_deployment: str,
        min_replicas: int,
        max_replicas: int,
    ) -> Obj:
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": target_deployment}
        cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
        spec = {"scaleTargetRef": target, "minReplicas": min_replicas, "maxReplicas": max_replicas}
        spec["metrics"] = [{"type": "Resource", "resource": cpu}]
        resource = "horizontalpodautoscalers"
        return self._seed(
            "autoscaling", resource, namespace, {"metadata": {"name": name}, "spec": spec}
        )

    def add_ingress(
        self, namespace: str, name: str, annotations: dict[str, str] | None = None
    ) -> Obj:
        backend = {"service": {"name": name, "port": {"number": 80}}}
        paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
        spec = {
            "ingressClassName": "nginx",
            "rules": [{"host": f"{name}.example", "http": {"paths": paths}}],
        }
        meta = {"name": name, "annotations": dict(annotations or {})}
        return self._seed(
            "networking.k8s.io", "ingresses", namespace, {"metadata": meta, "spec": spec}
        )

    def add_configmap(self, namespace: str, name: str, data: dict[str, str] | None = None) -> Obj:
        body = {"metadata": {"name": name}, "data": dict(data or {})}
        return self._seed("", "configmaps", namespace, body)

    def add_replicaset(
        self,
        namespace: str,
        name: str,
        owner_deployment: str,
        revision: int,
        template: Obj,
        created: datetime | None = None,
    ) -> Obj:
        """``template`` is a pod template ({metadata: {labels, annotations}, spec: {containers}});
        ``created`` (default now) is its creationTimestamp, i.e. when that revision rolled out."""
        with self._lock:
            owner = self._objects[("apps", "deployments", namespace, owner_deployment)]
            body = _replicaset(owner, name, revision, copy.deepcopy(template))
            if created is not None:
                body["metadata"]["creationTimestamp"] = _stamp(created)
            return self._seed("apps", "replicasets", namespace, body)

    # faults -------------------------------------------------------------------------------
    def fail_next(self, verb: str, resource: str, status: int) -> None:
        """Answer the next ``verb`` call on ``resource`` ("deployments/scale") with a Status."""
        if not 400 <= status <= 599:
            raise ValueError(f"fault status must be 4xx or 5xx: {status}")
        with self._lock:
            self._faults[(verb, resource)].append(status)

    def forbid(self, resource: str, verb: str) -> None:
        """Answer every ``verb`` call on ``resource`` with 403 until ``unforbid``."""
        with self._lock:
            self._forbidden.add((resource, verb))

    def unforbid(self, resource: str, verb: str) -> None:
        with self._lock:
            self._forbidden.discard((resource, verb))

    def hold_after_write(self, resource: str, seconds: float) -> None:
        """Store the next successful write (patch or update, not dry run) of ``resource``
        ("deployments/scale"), then wait ``seconds`` before answering: the client can die
        with its change made. Other requests are served meanwhile; stopping ends the wait."""
        if seconds <= 0:
            raise ValueError(f"hold must be a positive number of seconds, got {seconds!r}")
        with self._lock:
            self._holds[resource] = seconds

    # inspection ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[KubeRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self._calls)

    def object(self, group: str, resource: str, namespace: str, name: str) -> Obj | None:
        """A copy of any stored object (e.g. a configmap created by apply), or None."""
        with self._lock:
            return copy.deepcopy(self._objects.get((group, resource, namespace, name)))

    def deployment(self, namespace: str, name: str) -> Obj:
        return self._copy("apps", "deployments", namespace, name)

    def replicaset(self, namespace: str, name: str) -> Obj:
        return self._copy("apps", "replicasets", namespace, name)

    def hpa(self, namespace: str, name: str) -> Obj:
        return self._copy("autoscaling", "horizontalpodautoscalers", namespace, name)

    def ingress(self, namespace: str, name: str) -> Obj:
        return self._copy("networking.k8s.io", "ingresses", namespace, name)

    def _copy(self, group: str, resource: str, namespace: str, name: str) -> Obj:
        found = self.object(group, resource, namespace, name)
        if found is None:
            raise KeyError(f"no {resource} {namespace}/{name} in the stand-in")
        return found

    # serving ------------------------------------------------------------------------------
    def _handle(self, request: Received) -> Reply:
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        body = request.body
        if body is None and request.raw:
            try:
                body = yaml.safe_load(request.raw) if ctype == APPLY else None
            except yaml.YAMLError:
                body = None
            body = request.raw.decode("utf-8", "replace") if body is None else body
        with self._lock:
            try:
                code, payload = self._serve(request, body, ctype)
            except KubeError as error:
                code, payload = error.code, error.status()
            r = request
            self._requests.append(
                KubeRequest(r.method, r.path, r.query, r.headers, body, ctype, code)
            )
        reply = Reply.json(code, payload)
        retry = (("Retry-After", "1"),) if code == 429 else ()
        return Reply(reply.status, reply.body, reply.headers + retry)

    def _serve(self, request: Received, body: Any, ctype: str) -> tuple[int, Obj]:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            raise KubeError(401, "Unauthorized")
        m = _PATH.match(request.path)
        group = (m["group"] or "") if m else ""
        version_kind = KINDS.get((group, m["res"])) if m else None
        if m is None or version_kind is None or version_kind[0] != (m["gv"] or m["cv"]):
            raise KubeError(404, "the server could not find the requested resource")
        if m["sub"] is not None and (m["sub"], m["res"]) != ("scale", "deployments"):
            raise KubeError(404, "the server could not find the requested resource")
        route = _Route(group, m["res"], m["ns"], m["name"], m["sub"])
        verb = VERBS.get(request.method, "get" if route.name else "list")
        if request.method == "DELETE" and route.name is None:
            verb = "deletecollection"
        resource = route.resource + (f"/{route.sub}" if route.sub else "")
        self._authorize(route, verb)
        if route.name is None:
            allowed = {"GET", "POST"}
        else:
            allowed = {"GET", "PATCH", "PUT"} if route.sub else {"GET", "PATCH", "DELETE"}
        if request.method not in allowed:
            raise KubeError(405, f"the server does not allow this method: {request.method}")
        if request.method == "DELETE":  # the DeleteOptions body is optional
            if body is not None and not isinstance(body, dict):
                raise KubeError(400, "the request body is not a DeleteOptions document")
        elif request.method != "GET" and not isinstance(body, list if ctype == JSONPATCH else dict):
            raise KubeError(400, "the request body is not a JSON (or YAML) document")
        answer = self._answer(route, request.method, request.query, body, ctype)
        if verb in ("patch", "update") and request.query.get("dryRun") != "All":
            self._held.seconds = self._holds.pop(resource, 0.0)  # this thread answers it
        return answer

    def _wait_if_held(self) -> None:
        """After a held write is stored (see `hold_after_write`), in its handler thread."""
        seconds, self._held.seconds = getattr(self._held, "seconds", 0.0), 0.0
        if seconds:
            self._stopping.wait(seconds)

    def _authorize(self, route: _Route, verb: str) -> None:
        """Record the RBAC triple, then answer a forbidden or a programmed fault."""
        resource = route.resource + (f"/{route.sub}" if route.sub else "")
        self._calls.append((route.group, resource, verb))
        if (resource, verb) in self._forbidden:
            user = "system:serviceaccount:alertpilot:alertpilot"
            where = f'in API group "{route.group}" in the namespace "{route.ns}"'
            message = f'User "{user}" cannot {verb} resource "{resource}" {where}'
            denied = f'{route.qualified()} "{route.name or ""}" is forbidden: {message}'
            raise KubeError(403, denied, route.details())
        if self._faults[(verb, resource)]:
            code = self._faults[(verb, resource)].popleft()
            raise KubeError(code, f"injected {code} for {verb} {resource}", route.details())

    def _answer(
        self, route: _Route, method: str, query: dict[str, str], body: Any, ctype: str
    ) -> tuple[int, Obj]:
        dry = query.get("dryRun") == "All"
        if method == "GET" and route.name is None:
            return 200, self._list(route, query.get("labelSelector", ""))
        if method == "POST":
            name = body.get("metadata", {}).get("name") if isinstance(body, dict) else None
            if not name:
                raise KubeError(422, "metadata.name: Required value: name is required")
            if (route.group, route.resource, route.ns, name) in self._objects:
                details = route.details() | {"name": name}
                raise KubeError(409, f'{route.qualified()} "{name}" already exists', details)
            return 201, self._create(route.group, route.resource, route.ns, body, dry)
        key = (route.group, route.resource, route.ns, route.name or "")
        if ctype == APPLY and route.sub is None:
            return self._apply(route, key, query, body, dry)
        if key not in self._objects:
            raise KubeError(404, f'{route.qualified()} "{route.name}" not found', route.details())
        old = copy.deepcopy(self._objects[key])
        if method == "GET":
            return 200, _scale(old) if route.sub else old
        if method == "DELETE":
            return 200, self._delete(route, key, query, body or {})
        if route.sub is None:
            sent = _sent_version(body, ctype)
            if sent and sent != old["metadata"]["resourceVersion"]:
                raise KubeError(409, _modified(route), route.details())
            return 200, self._commit(key, old, _patch(old, body, ctype), dry)
        scale = _scale(old)
        new_scale = body if method == "PUT" else _patch(scale, body, ctype)
        sent = (new_scale.get("metadata") or {}).get("resourceVersion") if method == "PUT" else None
        if sent and sent != old["metadata"]["resourceVersion"]:
            raise KubeError(409, _modified(route), route.details())
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = (new_scale.get("spec") or {}).get("replicas")
        return 200, _scale(self._commit(key, old, new, dry))

    def _apply(
        self, route: _Route, key: Key, query: dict[str, str], body: Any, dry: bool
    ) -> tuple[int, Obj]:
        version, kind = KINDS[(route.group, route.resource)]
        api_version = f"{route.group}/{version}" if route.group else version
        if not query.get("fieldManager"):
            raise KubeError(400, "PATCH requests of type apply must have a fieldManager")
        named = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
        sent = (body.get("apiVersion"), body.get("kind"), named) if isinstance(body, dict) else ()
        if sent != (api_version, kind, route.name):
            message = f"the apply body must be a {api_version} {kind} named {route.name}"
            raise KubeError(400, message)
        entry: Obj = {"manager": query["fieldManager"], "operation": "Apply"}
        entry |= {"apiVersion": api_version}
        entry |= {"time": _stamp(None), "fieldsType": "FieldsV1", "fieldsV1": {}}
        body = copy.deepcopy(body)
        body["metadata"].pop("managedFields", None)
        body["metadata"].pop("resourceVersion", None)
        old = self._objects.get(key)
        new = _merge(old or {}, body, strategic=True)
        managers = (old or {}).get("metadata", {}).get("managedFields") or []
        kept = [e for e in managers if e["manager"] != entry["manager"]]
        new["metadata"]["managedFields"] = [*kept, entry]
        if old is None:  # the API server also authorizes "create" when apply creates
            self._authorize(route, "create")
            return 201, self._create(route.group, route.resource, route.ns, new, dry)
        return 200, self._commit(key, copy.deepcopy(old), new, dry)

    def _delete(self, route: _Route, key: Key, query: dict[str, str], options: Obj) -> Obj:
        """Remove the object (``options`` are the DeleteOptions); the API server's Status."""
        meta = self._objects[key]["metadata"]
        held = {
            "uid": ("UID", meta["uid"]),
            "resourceVersion": ("ResourceVersion", meta["resourceVersion"]),
        }
        for field, (label, value) in held.items():
            wanted = (options.get("preconditions") or {}).get(field)
            if wanted is not None and wanted != value:
                failed = f"{label} in precondition: {wanted}, {label} in object meta: {value}"
                message = f'Operation cannot be fulfilled on {route.qualified()} "{route.name}"'
                raise KubeError(409, f"{message}: Precondition failed: {failed}", route.details())
        details = route.details() | {"uid": meta["uid"]}
        status: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        status["details"] = details
        if query.get("dryRun") == "All" or "All" in (options.get("dryRun") or []):
            return status
        deleted = self._objects.pop(key)
        policy = query.get("propagationPolicy") or options.get("propagationPolicy")
        orphans = query.get("orphanDependents") or str(options.get("orphanDependents", ""))
        orphan = policy == "Orphan" or orphans.lower() == "true"
        uid = deleted["metadata"]["uid"]
        for rs in self._owned(route.ns, deleted):  # the garbage collector, at once
            if orphan:
                refs = rs["metadata"].get("ownerReferences", [])
                rs["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
            else:
                del self._objects[("apps", "replicasets", route.ns, rs["metadata"]["name"])]
        return status

    def _list(self, route: _Route, selector: str) -> Obj:
        terms = [term.strip() for term in selector.split(",") if term.strip()]
        if not all(re.fullmatch(r"!?[\w./-]+|[\w./-]+\s*(==|!=|=)\s*[\w.-]*", t) for t in terms):
            raise KubeError(400, f"unable to parse requirement: {selector!r}")
        version, kind = KINDS[(route.group, route.resource)]
        items = []
        for (group, resource, ns, _), obj in sorted(self._objects.items()):
            labels = obj["metadata"].get("labels") or {}
            if (group, resource, ns) != (route.group, route.resource, route.ns):
                continue
            if all(_selects(labels, term) for term in terms):  # typed list items: no kind
                items.append(copy.deepcopy(obj))
                del items[-1]["apiVersion"], items[-1]["kind"]
        api_version = f"{route.group}/{version}" if route.group else version
        meta = {"resourceVersion": str(next(self._rv))}
        return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": meta, "items": items}

    def _seed(self, group: str, resource: str, namespace: str, body: Obj) -> Obj:
        with self._lock:
            return self._create(group, resource, namespace, body, dry=False)

    def _create(self, group: str, resource: str, ns: str, body: Obj, dry: bool) -> Obj:
        version, kind = KINDS[(group, resource)]
        obj: Obj = {"apiVersion": f"{group}/{version}" if group else version, "kind": kind}
        obj |= copy.deepcopy(body)
        meta: Obj = obj.setdefault("metadata", {})
        meta |= {"namespace": ns, "uid": str(uuid.uuid4()), "generation": 1}
        meta.setdefault("creationTimestamp", _stamp(None))
        meta.setdefault("labels", {})
        meta.setdefault("annotations", {})
        if resource == "deployments":
            meta["annotations"].setdefault(REVISION, "1")
        return self._commit((group, resource, ns, meta["name"]), {}, obj, dry)

    def _commit(self, key: Key, old: Obj, new: Obj, dry: bool) -> Obj:
        """Validate and store ``new`` (the state after a write on ``old``, {} when creating)."""
        _, resource, ns, _ = key
        meta = new["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation") if old else ():
            meta[field] = old["metadata"][field]
        required = [new.get("spec", {}).get(f) for f in ("selector", "template")]
        if resource == "deployments" and not all(isinstance(f, dict) for f in required):
            raise KubeError(422, "spec.selector, spec.template: Required value")
        if resource == "deployments":
            _check_replicas("spec.replicas", new["spec"].setdefault("replicas", 1), 0)
        if resource == "replicasets":
            new.setdefault("status", {"replicas": new.get("spec", {}).get("replicas", 1)})
        if resource == "horizontalpodautoscalers":
            low, high = new["spec"].get("minReplicas", 1), new["spec"].get("maxReplicas")
            _check_replicas("spec.minReplicas", low, 1)
            _check_replicas("spec.maxReplicas", high, low if isinstance(low, int) else 1)
        if old and _stripped(old) == _stripped(new):
            return old
        if old and old.get("spec") != new.get("spec"):
            meta["generation"] = old["metadata"]["generation"] + 1
        meta["resourceVersion"] = str(next(self._rv))
        if dry:
            return new
        self._objects[key] = new
        if resource == "deployments" and old and old["spec"]["template"] != new["spec"]["template"]:
            self._roll_out(ns, new)
        for obj in self._objects.values():  # the controllers catch up at once
            if obj["kind"] == "Deployment" and obj["metadata"]["namespace"] == ns:
                self._converge(ns, obj)
            elif obj["kind"] == "HorizontalPodAutoscaler" and obj["metadata"]["namespace"] == ns:
                name = obj["spec"]["scaleTargetRef"]["name"]
                target = self._objects.get(("apps", "deployments", ns, name), obj)
                n = target["spec"].get("replicas", obj["spec"].get("minReplicas", 1))
                obj["status"] = {"currentReplicas": n, "desiredReplicas": n}
        return copy.deepcopy(new)

    def _owned(self, ns: str, deployment: Obj) -> list[Obj]:
        uid, found = deployment["metadata"]["uid"], []
        for (group, resource, namespace, _), rs in self._objects.items():
            owners = {ref.get("uid") for ref in rs["metadata"].get("ownerReferences", [])}
            if (group, resource, namespace) == ("apps", "replicasets", ns) and uid in owners:
                found.append(rs)
        return found

    def _roll_out(self, ns: str, deployment: Obj) -> None:
        """The deployment controller on a template change (in place: no new resourceVersion)."""
        template, owned = deployment["spec"]["template"], self._owned(ns, deployment)
        revisions = [int(rs["metadata"]["annotations"].get(REVISION, 0)) for rs in owned]
        revision = str(1 + max([*revisions, int(deployment["metadata"]["annotations"][REVISION])]))
        same = [rs for rs in owned if _unhashed(rs["spec"].get("template")) == _unhashed(template)]
        deployment["metadata"]["annotations"][REVISION] = revision
        if same:
            same[0]["metadata"]["annotations"][REVISION] = revision
            return
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{deployment['metadata']['name']}-{digest}"
        rs = _replicaset(deployment, name, int(revision), copy.deepcopy(template))
        self._create("apps", "replicasets", ns, rs, dry=False)

    def _converge(self, ns: str, deployment: Obj) -> None:
        n, generation = deployment["spec"]["replicas"], deployment["metadata"]["generation"]
        status = {"replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n}
        deployment["status"] = status | {"observedGeneration": generation}
        revision = deployment["metadata"]["annotations"].get(REVISION)
        for rs in self._owned(ns, deployment):
            current = rs["metadata"]["annotations"].get(REVISION) == revision
            rs["spec"]["replicas"] = rs.setdefault("status", {})["replicas"] = n if current else 0


def _sent_version(body: Any, ctype: str) -> str | None:
    """A merge or strategic-merge patch that names metadata.resourceVersion is conditional."""
    if ctype not in (SMP, MERGE) or not isinstance(body, dict):
        return None
    meta = body.get("metadata")
    return (
        str(meta["resourceVersion"])
        if isinstance(meta, dict) and meta.get("resourceVersion")
        else None
    )


def _modified(route: _Route) -> str:
    what = f'{route.qualified()} "{route.name}": the object has been modified'
    detail = "please apply your changes to the latest version and try again"
    return f"Operation cannot be fulfilled on {what}; {detail}"


def _stamp(when: datetime | None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _replicaset(owner: Obj, name: str, revision: int, template: Obj) -> Obj:
    pod_hash = {"pod-template-hash": name.rsplit("-")[-1]}
    labels = owner["spec"]["selector"].get("matchLabels", {}) | pod_hash
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner["metadata"]["name"]}
    ref |= {"uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    current = owner["metadata"]["annotations"].get(REVISION) == str(revision)
    replicas = owner["spec"]["replicas"] if current else 0
    annotations = {REVISION: str(revision)}
    meta = {"name": name, "labels": labels, "annotations": annotations, "ownerReferences": [ref]}
    spec = {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template}
    return {"metadata": meta, "spec": spec, "status": {"replicas": replicas}}


def _scale(deployment: Obj) -> Obj:
    meta, spec = deployment["metadata"], deployment["spec"]
    fields = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    selector = ",".join(f"{k}={v}" for k, v in spec["selector"].get("matchLabels", {}).items())
    status = {"replicas": deployment["status"]["replicas"], "selector": selector}
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "status": status}
    return scale | {
        "metadata": {k: meta[k] for k in fields},
        "spec": {"replicas": spec["replicas"]},
    }


def _check_replicas(field: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise KubeError(422, f"{field}: Invalid value: {value!r}: must be an integer >= {minimum}")


def _stripped(obj: Obj) -> Obj:
    """What a write must change to count as a change (managedFields without their times)."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    meta["managedFields"] = [e | {"time": None} for e in meta.get("managedFields") or []]
    return obj | {"metadata": meta}


def _unhashed(template: Any) -> Any:
    template = copy.deepcopy(template or {})
    template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    return template


def _selects(labels: dict[str, str], term: str) -> bool:
    if "=" not in term:
        return term[1:] not in labels if term.startswith("!") else term in labels
    key, op, value = re.split(r"\s*(==|!=|=)\s*", term, maxsplit=1)
    return (labels.get(key) == value) != (op == "!=")


def _patch(obj: Obj, body: Any, ctype: str) -> Obj:
    if ctype in (SMP, MERGE) and isinstance(body, dict):
        merged: Obj = _merge(obj, body, strategic=ctype == SMP)
        return merged
    if ctype == JSONPATCH and isinstance(body, list):
        return _json_patch(obj, body)
    if ctype in (SMP, MERGE, JSONPATCH):
        raise KubeError(400, f"the body of the request does not match {ctype}")
    raise KubeError(415, f"the patch content type {ctype!r} is not supported")


def _merge(target: Any, patch: Any, strategic: bool) -> Any:
    """RFC 7386; ``strategic`` also merges lists whose items are all objects with a ``name``."""
    named = isinstance(target, list) and isinstance(patch, list)
    if strategic and named and all(isinstance(i, dict) and "name" in i for i in target + patch):
        merged = {item["name"]: item for item in copy.deepcopy(target)}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"], {}), item, strategic)
        return list(merged.values())
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value, strategic)
    return result


def _json_patch(obj: Obj, operations: list[Any]) -> Obj:
    doc = copy.deepcopy(obj)
    for op in operations:
        try:
            parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
            parent: Any = doc
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last, kind, value = parts[-1], op["op"], copy.deepcopy(op.get("value"))
            listed = isinstance(parent, list)
            at: Any = (len(parent) if last == "-" else int(last)) if listed else last
            if kind not in ("add", "replace", "remove", "test"):
                raise KubeError(422, f"unsupported JSON patch operation {kind!r}")
            if kind == "test" and parent[at] != value:
                raise KubeError(422, f"test operation failed at {op['path']}")
            if kind in ("remove", "replace"):
                del parent[at]  # KeyError/IndexError when the path is missing
            if kind in ("add", "replace") and listed:
                parent.insert(at, value)
            elif kind in ("add", "replace"):
                parent[at] = value
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise KubeError(422, f"JSON patch {op!r} does not apply: {error!r}") from error
    return doc
