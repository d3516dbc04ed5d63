"""A local HTTPS stand-in of the Kubernetes API server, for the official ``kubernetes`` client.

    with KubeStandIn(token="t0ken") as kube:
        kube.add_deployment("production", "api", replicas=4)
        api = new_client_from_config(config_file=str(kube.write_kubeconfig(tmp / "kubeconfig")))
        AppsV1Api(api).patch_namespaced_deployment_scale("api", "production", {"spec": {...}})
        assert ("apps", "deployments/scale", "patch") in kube.calls

Serves ``/apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}[/scale]]`` (``/api/v1/...`` for
the core kinds): apps/v1 deployments (+ scale: GET, PATCH, PUT with a stale
``metadata.resourceVersion`` -> 409) and replicasets, autoscaling/v2 horizontalpodautoscalers,
networking.k8s.io/v1 ingresses, v1 configmaps; and, to read only (any write is 405, the RBAC triple
still recorded), v1 pods (``add_pod``: as the kubelet reports them, container states, restarts, last
termination, owner ReplicaSet) and v1 events (``add_event``). GET is get, or list with equality
``labelSelector`` terms and ``fieldSelector`` terms (``=``, ``==``, ``!=``, comma AND; events: type,
reason, involvedObject.{kind,name,namespace,uid,...}, source, reportingComponent; pods:
status.phase, spec.nodeName, ...; every kind: metadata.name and metadata.namespace; any other label
is 400 as the API server answers, for pods and events "field label not supported: LABEL"), paged by
``limit`` (``metadata.continue`` token, ``remainingItemCount`` when no selector) in name order; POST
creates; PATCH takes strategic merge (maps deep-merged, null deletes, lists of objects merged by
``name``; a stale ``metadata.resourceVersion`` in the body -> 409, as the API server does), merge
patch (RFC 7386), JSON patch (add/replace/remove/test) or server-side apply
(``application/apply-patch+yaml`` and ``fieldManager``: creates (201) or merges, and records the
manager in ``managedFields``). DELETE of a named object removes it and answers 200 with a ``Status``
(status Success, details {name, group, kind: the resource, uid}), as the API server does for every
kind deleted here (pods would return the deleted object, but they are read-only here);
``DeleteOptions`` ``preconditions`` (uid, resourceVersion) that do not hold are 409; deleting a
deployment deletes the ReplicaSets it owns unless ``propagationPolicy=Orphan`` (then they lose the
owner reference). DELETE of the scale subresource or of a collection is 405. ``dryRun=All`` (query,
or the DeleteOptions' ``dryRun``) answers without storing. A bearer token is required (401). Errors
are Kubernetes ``Status`` objects; a missing object is 404. Every routed call is recorded in
``calls`` as the RBAC triple (apiGroup, resource[/subresource], verb), verb one of
get/list/create/patch/update/delete (and deletecollection for a DELETE without a name).
``hold_after_write("deployments/scale", 5)`` stores the next write of that resource and holds its
answer back (a client can die waiting).

Controllers act instantly: a deployment's status equals its spec (its ready and available
counts are its seeded pods' that are Ready, once it has any); a template change rolls out a
revision as the deployment controller does (the owned ReplicaSet with that template is reused,
else one is created; ``deployment.kubernetes.io/revision`` becomes max+1, so ``kubectl rollout
undo`` style rollbacks and restarts show up in ``replicasets``); an HPA's status follows its
target. Writes that change nothing keep resourceVersion; spec changes bump generation.
``KubeStandIn(token, now=clock)`` stamps creation (and pod and event) times from ``clock``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import threading
import uuid
from base64 import b64decode, b64encode
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    ("", "pods"): ("v1", "Pod"),
    ("", "events"): ("v1", "Event"),
}
READ_ONLY = {("", "pods"), ("", "events")}
"""Kinds the stand-in serves to read: a write is 405 (alertpilot never writes them)."""
META_FIELDS = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}
FIELDS = {  # (group, resource) -> {field selector label: dotted path in the object}
    ("", "pods"): META_FIELDS
    | {
        label: label
        for label in (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        )
    },
    ("", "events"): META_FIELDS
    | {
        label: label
        for label in (
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        )
    }
    | {"source": "source.component"},
}
"""The field labels the API server converts per kind (core pods and events register their
own, answering "field label not supported" otherwise; every other kind has only metadata's)."""
NODE = "standin-worker-1"
TERMINATION_EXIT = {"OOMKilled": 137, "Error": 1, "Completed": 0, "ContainerCannotRun": 128}
CONTAINER_REASONS = {"BackOff", "Failed", "Pulling", "Pulled", "Created", "Started", "Killing"}
CONTAINER_REASONS |= {"Unhealthy", "ProbeWarning"}
"""Reasons the kubelet reports about one container (involvedObject.fieldPath names it)."""
COMPONENTS = {"Deployment": "deployment-controller", "ReplicaSet": "replicaset-controller"}
COMPONENTS |= {"HorizontalPodAutoscaler": "horizontal-pod-autoscaler", "Pod": "kubelet"}
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

    def __init__(self, token: str, now: Callable[[], datetime] | None = None) -> None:
        """``now`` (default the real UTC time) stamps what the stand-in stamps itself:
        creationTimestamp, managedFields times, pod and event times not given."""
        self.token = token
        self._now = now or (lambda: datetime.now(UTC))
        self._pod_ips = itertools.count(10)
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

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str],
        ready: bool = True,
        restarts: int = 0,
        waiting_reason: str | None = None,
        last_terminated_reason: str | None = None,
        owner_replicaset: str | None = None,
        phase: str | None = None,
        container: str | None = None,
        image: str | None = None,
        created: datetime | None = None,
    ) -> Obj:
        """A one-container pod as the API server returns it once the kubelet reported it.

        The container runs, unless ``waiting_reason`` ("CrashLoopBackOff", "ImagePullBackOff";
        "ContainerCreating" is the default for phase Pending) or a terminal ``phase``
        (Succeeded/Failed: terminated Completed/Error); ``ready`` needs it running. ``phase``
        defaults to Pending for a waiting container that never ran (``restarts`` 0), as the
        kubelet reports it, else Running.
        ``last_terminated_reason`` ("Error", "OOMKilled": exit 1, 137) is its previous run's
        end, "Error" by default for CrashLoopBackOff; both need ``restarts`` >= 1.
        ``owner_replicaset`` (a stored ReplicaSet) owns the pod: it gets the ReplicaSet's
        pod-template-hash label and template annotations, ``container`` and ``image`` default
        to its template's first container, and ``labels`` must match its selector (so its
        deployment's too). Else ``container`` is "app", ``image`` registry.example/CONTAINER:1.
        ``created`` (default now) is the creationTimestamp; status times follow it, up to now.
        """
        if not isinstance(restarts, int) or restarts < 0:
            raise ValueError(f"restarts must be an integer >= 0, got {restarts!r}")
        if phase is None:
            phase = "Pending" if waiting_reason is not None and restarts == 0 else "Running"
        if phase not in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
            raise ValueError(f"not a pod phase: {phase!r}")
        if waiting_reason is None and phase == "Pending":
            waiting_reason = "ContainerCreating"
        if waiting_reason == "CrashLoopBackOff" and last_terminated_reason is None:
            last_terminated_reason = "Error"
        if last_terminated_reason is not None and restarts < 1:
            ended = f"last_terminated_reason {last_terminated_reason!r}"
            raise ValueError(f"a container restarted after it ended ({ended}): pass restarts >= 1")
        running = waiting_reason is None and phase in ("Running", "Unknown")
        if ready and not running:
            raise ValueError(f"a container that does not run (phase {phase}) is not ready")
        with self._lock:
            meta: Obj = {"name": name, "labels": dict(labels)}
            template: Obj = {}
            if owner_replicaset is not None:
                rs = self._objects[("apps", "replicasets", namespace, owner_replicaset)]
                template = copy.deepcopy(rs["spec"].get("template") or {})
                hash_label = rs["metadata"].get("labels", {}).get("pod-template-hash")
                if hash_label is not None:
                    meta["labels"].setdefault("pod-template-hash", hash_label)
                wanted = rs["spec"]["selector"].get("matchLabels") or {}
                if any(meta["labels"].get(k) != v for k, v in wanted.items()):
                    raise ValueError(
                        f"labels {meta['labels']} do not match the selector {wanted} of"
                        f" ReplicaSet {owner_replicaset}: it would not own this pod"
                    )
                ref: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner_replicaset}
                ref |= {"uid": rs["metadata"]["uid"], "controller": True}
                meta["ownerReferences"] = [ref | {"blockOwnerDeletion": True}]
                meta["generateName"] = f"{owner_replicaset}-"
                annotations = (template.get("metadata") or {}).get("annotations") or {}
                meta["annotations"] = dict(annotations)
            templated = (template.get("spec") or {}).get("containers") or []
            named = [c for c in templated if container in (None, c.get("name"))]
            spec_container: Obj = copy.deepcopy(named[0]) if named else {}
            spec_container["name"] = container or spec_container.get("name") or "app"
            default_image = f"registry.example/{spec_container['name']}:1"
            spec_container["image"] = image or spec_container.get("image") or default_image
            uid = str(uuid.uuid4())
            ip = next(self._pod_ips)
            body = _pod(
                meta,
                spec_container,
                uid=uid,
                namespace=namespace,
                ready=ready,
                restarts=restarts,
                waiting_reason=waiting_reason,
                last_terminated_reason=last_terminated_reason,
                phase=phase,
                created=created or self._now(),
                now=self._now(),
                pod_ip=f"10.244.{ip // 250}.{ip % 250 + 2}",
            )
            pod = self._seed("", "pods", namespace, body, uid=uid)
            for (group, resource, ns, _), obj in self._objects.items():
                if (group, resource, ns) == ("apps", "deployments", namespace):
                    self._converge(ns, obj)  # its ready count now counts this pod
            return pod

    def add_event(
        self,
        namespace: str,
        name: str,
        *,
        involved_kind: str,
        involved_name: str,
        reason: str,
        message: str,
        type: str = "Warning",
        count: int = 1,
        last_timestamp: datetime | None = None,
        first_timestamp: datetime | None = None,
    ) -> Obj:
        """A core v1 Event about ``involved_kind``/``involved_name`` in ``namespace``, as the
        kubelet or a controller records it. involvedObject has the object's uid, apiVersion
        and resourceVersion when the stand-in holds it (and, for a pod's container reasons
        such as BackOff, fieldPath spec.containers{NAME}); source/reportingComponent is the
        reporting component of that kind (kubelet for pods, on the pod's node).
        ``last_timestamp`` defaults to now, ``first_timestamp`` to ``count`` - 1 minutes
        before it; creationTimestamp is the first.
        """
        if type not in ("Normal", "Warning"):
            raise ValueError(f"an event's type is Normal or Warning, got {type!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        last = last_timestamp or self._now()
        first = first_timestamp or last - timedelta(minutes=count - 1)
        if first > last:
            raise ValueError(f"first_timestamp {first} is after last_timestamp {last}")
        with self._lock:
            involved: Obj = {"kind": involved_kind, "namespace": namespace, "name": involved_name}
            source: Obj = {}
            component = COMPONENTS.get(involved_kind)
            if component is not None:
                source["component"] = component
            found = next(
                (
                    obj
                    for (_, _, ns, obj_name), obj in self._objects.items()
                    if (ns, obj_name, obj["kind"]) == (namespace, involved_name, involved_kind)
                ),
                None,
            )
            if found is not None:
                involved["uid"] = found["metadata"]["uid"]
                involved["apiVersion"] = found["apiVersion"]
                involved["resourceVersion"] = found["metadata"]["resourceVersion"]
            if involved_kind == "Pod" and found is not None:
                source["host"] = found["spec"].get("nodeName", NODE)
                if reason in CONTAINER_REASONS:
                    first_container = found["spec"]["containers"][0]["name"]
                    involved["fieldPath"] = f"spec.containers{{{first_container}}}"
            meta = {"name": name, "creationTimestamp": _stamp(first)}
            body: Obj = {"metadata": meta, "involvedObject": involved}
            body |= {"reason": reason, "message": message, "source": source}
            body |= {"firstTimestamp": _stamp(first), "lastTimestamp": _stamp(last)}
            body |= {"count": count, "type": type, "eventTime": None}
            body |= {"reportingComponent": source.get("component", "")}
            body |= {"reportingInstance": source.get("host", "")}
            return self._seed("", "events", namespace, body)

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
        if (route.group, route.resource) in READ_ONLY:
            allowed = {"GET"}
        elif route.name is None:
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
            return 200, self._list(route, query)
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
        entry |= {"time": _stamp(self._now()), "fieldsType": "FieldsV1", "fieldsV1": {}}
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

    def _list(self, route: _Route, query: dict[str, str]) -> Obj:
        """``labelSelector`` and ``fieldSelector`` (equality terms), ``limit`` and
        ``continue`` as the API server pages: in name order, with a continue token."""
        selector, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        terms = [term.strip() for term in selector.split(",") if term.strip()]
        if not all(re.fullmatch(r"!?[\w./-]+|[\w./-]+\s*(==|!=|=)\s*[\w.-]*", t) for t in terms):
            raise KubeError(400, f"unable to parse requirement: {selector!r}")
        requirements = _field_requirements(route, fields)
        try:
            limit = int(query.get("limit") or 0)
            start = json.loads(b64decode(query["continue"]))["start"] if "continue" in query else ""
        except (ValueError, KeyError, TypeError) as error:
            raise KubeError(400, f"continue or limit is not valid: {error}") from error
        version, kind = KINDS[(route.group, route.resource)]
        items = []
        for (group, resource, ns, name), obj in sorted(self._objects.items()):
            labels = obj["metadata"].get("labels") or {}
            if (group, resource, ns) != (route.group, route.resource, route.ns) or name < start:
                continue
            if not all(_selects(labels, term) for term in terms):
                continue
            if all(
                (_field(obj, path) == value) != negated for path, negated, value in requirements
            ):
                items.append(copy.deepcopy(obj))  # typed list items: no kind
                del items[-1]["apiVersion"], items[-1]["kind"]
        api_version = f"{route.group}/{version}" if route.group else version
        rv = next(self._rv)
        meta: Obj = {"resourceVersion": str(rv)}
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]["name"]
            token = {"v": "meta.k8s.io/v1", "rv": rv, "start": last + "\x00"}
            meta["continue"] = b64encode(json.dumps(token).encode()).decode()
            if not terms and not requirements:  # unknown when a selector filters
                meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": meta, "items": items}

    def _seed(
        self, group: str, resource: str, namespace: str, body: Obj, uid: str | None = None
    ) -> Obj:
        with self._lock:
            return self._create(group, resource, namespace, body, dry=False, uid=uid)

    def _create(
        self, group: str, resource: str, ns: str, body: Obj, dry: bool, uid: str | None = None
    ) -> Obj:
        version, kind = KINDS[(group, resource)]
        obj: Obj = {"apiVersion": f"{group}/{version}" if group else version, "kind": kind}
        obj |= copy.deepcopy(body)
        meta: Obj = obj.setdefault("metadata", {})
        meta |= {"namespace": ns, "uid": uid or str(uuid.uuid4())}
        if resource != "events":  # events have no spec, so no generation
            meta["generation"] = 1
        meta.setdefault("creationTimestamp", _stamp(self._now()))
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
        match = deployment["spec"]["selector"].get("matchLabels") or {}
        pods = [
            pod
            for (group, resource, pod_ns, _), pod in self._objects.items()
            if (group, resource, pod_ns) == ("", "pods", ns)
            and all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in match.items())
        ]
        if pods:  # seeded pods: the ready and available counts are theirs
            ready = sum(
                1
                for pod in pods
                for c in pod.get("status", {}).get("conditions", [])
                if c.get("type") == "Ready" and c.get("status") == "True"
            )
            status |= {"readyReplicas": min(n, ready), "availableReplicas": min(n, ready)}
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


def _field_requirements(route: _Route, selector: str) -> list[tuple[str, bool, str]]:
    """(path, negated, value) of each ``fieldSelector`` term, parsed as apimachinery's fields
    package does (terms split at unescaped commas, operators != == =, values unescaped),
    then converted for the kind: an unknown label is 400, as the API server answers."""
    terms, start, escaped = [], 0, False
    for i, char in enumerate(selector):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    supported = FIELDS.get((route.group, route.resource), META_FIELDS)
    found = []
    for term in sorted(t for t in terms if t):
        m = re.fullmatch(r"(.*?)(!=|==|=)(.*)", term, re.DOTALL)
        if m is None:
            raise KubeError(400, f"invalid selector: '{selector}'; can't understand '{term}'")
        label, op, value = m.groups()
        if label not in supported:
            raise KubeError(400, _unsupported_field(route, label))
        found.append((supported[label], op == "!=", _unescaped(selector, value)))
    return found


def _unescaped(selector: str, value: str) -> str:
    r"""A field selector value: only \\ \, \= are escapes; a bare , or = is an error."""
    out, escaped = [], False
    for char in value:
        if escaped and char not in "\\,=":
            raise KubeError(400, f"invalid selector: '{selector}': invalid escape \\{char}")
        if not escaped and char in ",=":
            raise KubeError(400, f"invalid selector: '{selector}': unescaped {char}")
        escaped = not escaped and char == "\\"
        if not escaped:
            out.append(char)
    if escaped:
        raise KubeError(400, f"invalid selector: '{selector}': a trailing \\")
    return "".join(out)


def _unsupported_field(route: _Route, label: str) -> str:
    if (route.group, route.resource) in FIELDS:  # core pods and events
        return f"field label not supported: {label}"
    return f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def _field(obj: Obj, path: str) -> str:
    """A selectable field's value: missing is the empty string, as in the API server."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _pod(
    meta: Obj,
    container: Obj,
    *,
    uid: str,
    namespace: str,
    ready: bool,
    restarts: int,
    waiting_reason: str | None,
    last_terminated_reason: str | None,
    phase: str,
    created: datetime,
    now: datetime,
    pod_ip: str,
) -> Obj:
    """A pod's body as the kubelet reported it (see `KubeStandIn.add_pod`)."""
    name, image = meta["name"], container["image"]
    container.setdefault("resources", {})
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", "IfNotPresent")
    tolerations = [
        {"key": f"node.kubernetes.io/{taint}", "operator": "Exists", "effect": "NoExecute"}
        | {"tolerationSeconds": 300}
        for taint in ("not-ready", "unreachable")
    ]
    spec: Obj = {"containers": [container], "restartPolicy": "Always"}
    spec |= {"terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst"}
    spec |= {"serviceAccountName": "default", "serviceAccount": "default", "nodeName": NODE}
    spec |= {"securityContext": {}, "schedulerName": "default-scheduler"}
    spec |= {"tolerations": tolerations, "priority": 0, "enableServiceLinks": True}
    spec |= {"preemptionPolicy": "PreemptLowerPriority"}

    def at(seconds_ago: int) -> datetime:  # status times: after creation, not after now
        return max(created, now - timedelta(seconds=seconds_ago))

    digest = hashlib.sha256(f"{uid}/{restarts}".encode()).hexdigest()  # this run's container
    before = hashlib.sha256(f"{uid}/{restarts - 1}".encode()).hexdigest()  # the previous run's
    state: Obj
    ended = at(30)
    if waiting_reason is not None:
        messages = {
            "CrashLoopBackOff": f"back-off {_backoff(restarts)} restarting failed"
            f" container={container['name']} pod={name}_{namespace}({uid})",
            "ImagePullBackOff": f'Back-off pulling image "{image}"',
            "ErrImagePull": f'failed to pull and unpack image "{image}": not found',
        }
        waiting = {"reason": waiting_reason}
        if waiting_reason in messages:
            waiting["message"] = messages[waiting_reason]
        state = {"waiting": waiting}
    elif phase in ("Succeeded", "Failed"):
        reason, code = ("Completed", 0) if phase == "Succeeded" else ("Error", 1)
        terminated = {"exitCode": code, "reason": reason, "startedAt": _stamp(at(90))}
        terminated |= {"finishedAt": _stamp(ended), "containerID": f"containerd://{digest}"}
        state = {"terminated": terminated}
    else:
        state = {"running": {"startedAt": _stamp(at(20) if restarts else created)}}
    last_state: Obj = {}
    if last_terminated_reason is not None:
        code = TERMINATION_EXIT.get(last_terminated_reason, 1)
        terminated = {"exitCode": code, "reason": last_terminated_reason}
        terminated |= {"startedAt": _stamp(at(90)), "finishedAt": _stamp(ended)}
        last_state = {"terminated": terminated | {"containerID": f"containerd://{before}"}}
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    image_id = f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
    container_status: Obj = {"name": container["name"], "state": state, "lastState": last_state}
    container_status |= {"ready": ready, "restartCount": restarts, "image": image}
    ran = "waiting" not in state or restarts > 0  # else no container yet: imageID is ""
    container_status["imageID"] = image_id if ran else ""
    if ran:  # a waiting container shows the one that ended
        container_status["containerID"] = f"containerd://{before if 'waiting' in state else digest}"
    container_status["started"] = "running" in state
    sandbox = phase in ("Running", "Unknown") or waiting_reason not in (None, "ContainerCreating")
    changed = _stamp(created)
    if ready:
        changed = state["running"]["startedAt"]
    elif last_terminated_reason is not None or "terminated" in state:
        changed = _stamp(ended)

    def condition(kind: str, true: bool, when: str, **why: str) -> Obj:
        status = {"type": kind, "status": "True" if true else "False", "lastProbeTime": None}
        return status | {"lastTransitionTime": when} | ({} if true else why)

    unready = {"reason": "ContainersNotReady"}
    unready["message"] = f"containers with unready status: [{container['name']}]"
    if phase in ("Succeeded", "Failed"):
        unready = {"reason": "PodCompleted" if phase == "Succeeded" else "PodFailed"}
    conditions = [
        condition("PodReadyToStartContainers", sandbox, _stamp(created)),
        condition("Initialized", True, _stamp(created)),
        condition("Ready", ready, changed, **unready),
        condition("ContainersReady", ready, changed, **unready),
        condition("PodScheduled", True, _stamp(created)),
    ]
    status: Obj = {"observedGeneration": 1, "phase": phase, "conditions": conditions}
    status |= {"hostIP": "10.0.0.11", "hostIPs": [{"ip": "10.0.0.11"}]}
    if sandbox or phase in ("Succeeded", "Failed"):
        status |= {"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}
    status |= {"startTime": _stamp(created), "containerStatuses": [container_status]}
    status["qosClass"] = "BestEffort"
    meta = meta | {"creationTimestamp": _stamp(created)}
    return {"metadata": meta, "spec": spec, "status": status}


def _backoff(restarts: int) -> str:
    """The kubelet's crash-loop back-off (10s doubling, at most 5m) as Go prints a duration."""
    seconds = min(300, 10 * 2 ** max(restarts - 1, 0))
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


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
