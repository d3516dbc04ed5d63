"""Kubernetes, behind one adapter: the official client, its exceptions wrapped here.

Permanent: 400, 401, 403, 404, 422 (retrying cannot help). Transient: 409 (a
concurrent writer: re-read and try again), 429, 5xx, connection errors.
Every call this adapter makes is one the Role in deploy/components/mitigation-target allows.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from workers.incident.errors import PermanentError, TransientError
from workers.policy.manifests import MANIFEST_KINDS

REQUEST_TIMEOUT = 30
"""Seconds per API call: well inside the 120 s target lock a mitigation holds."""


@dataclass(frozen=True)
class Scale:
    replicas: int
    resource_version: str


@dataclass(frozen=True)
class Autoscaler:
    """The HorizontalPodAutoscaler that targets a deployment."""

    name: str
    min_replicas: int
    max_replicas: int
    resource_version: str


@dataclass(frozen=True)
class Revision:
    """One rollout of a Deployment: its ReplicaSet's revision, pod template and birth."""

    number: int
    replicaset: str
    created: datetime
    template: dict[str, Any]

    @property
    def images(self) -> str:
        containers = self.template.get("spec", {}).get("containers", [])
        return ", ".join(str(c.get("image")) for c in containers) or "no image"


@dataclass(frozen=True)
class PodState:
    """One pod of a workload as `kubectl get pods` and `describe` would show it."""

    name: str
    ready: bool
    restarts: int
    waiting: str | None
    """Why a container is not running (CrashLoopBackOff, ImagePullBackOff...)."""
    last_termination: str | None
    """Why a container last ended (OOMKilled, Error...)."""


@dataclass(frozen=True)
class Workload:
    """A deployment's replicas, its pods and its recent Warning events (read only)."""

    desired: int
    ready: int
    available: int
    updated: int
    pods: list[PodState]
    warnings: list[str]
    """Newest first: "BackOff x12 on pod api-7c9: Back-off restarting failed container"."""
    more_pods: bool = False
    """It has more than MAX_PODS pods: `pods` are the first of them."""


@dataclass(frozen=True)
class Rollout:
    """A deployment whose current revision rolled out in a period (`Kubernetes.rollouts`)."""

    namespace: str
    name: str
    revision: int
    replicaset: str
    rolled_out_at: datetime
    """Its current revision's ReplicaSet's creationTimestamp, in UTC."""
    images: str


REVISION = "deployment.kubernetes.io/revision"
FIELD_MANAGER = "alertpilot"
MAX_PODS = 2000
"""Pods one workload read counts, in pages of PODS_PER_PAGE."""
PODS_PER_PAGE = 500
MAX_EVENT_SUBJECTS = 5
"""Pods not well whose Warning events are asked for, besides the deployment's."""


def api_client(kubeconfig: str | None) -> Any:
    """From KUBECONFIG when set, else the pod's service account."""
    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except (ConfigException, OSError) as exc:
        raise PermanentError(f"no Kubernetes access configured ({type(exc).__name__})") from None


class Kubernetes:
    """Each method is one or two API calls; every call, and every parse of its answer,
    runs inside `_wrapped`, so only PermanentError and TransientError leave here."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.changes = 0
        """Writes the API server accepted: a job that fails after one knows its change landed."""

    @contextmanager
    def _changing(self, what: str) -> Iterator[None]:
        with _wrapped(what):
            yield
        self.changes += 1

    def labels(self, resource: str, namespace: str, name: str) -> dict[str, str]:
        """The labels of a deployment, ingress or configmap ({} when it does not exist)."""
        found = self.read(resource, namespace, name)
        return dict((found or {}).get("metadata", {}).get("labels") or {})

    def read(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as plain JSON (camelCase keys), or None when it does not exist."""
        reader = {
            "deployments": self.apps.read_namespaced_deployment,
            "ingresses": self.networking.read_namespaced_ingress,
            "configmaps": self.core.read_namespaced_config_map,
        }[resource]
        try:
            with _wrapped(f"get {resource} {namespace}/{name}"):
                found = reader(name, namespace, _request_timeout=REQUEST_TIMEOUT)
                doc: dict[str, Any] = self.api.sanitize_for_serialization(found)
        except PermanentError as error:
            if error.status == 404:
                return None
            raise
        return doc

    def apply(self, namespace: str, manifest: dict[str, Any]) -> None:
        """Server-side apply under field manager `alertpilot`, taking the fields it names."""
        resource = _resource_of(manifest)
        name = str(manifest["metadata"]["name"])
        with self._changing(f"apply {resource} {namespace}/{name}"):
            self._patcher(resource)(
                name,
                namespace,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=REQUEST_TIMEOUT,
            )

    def merge_patch(self, resource: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        """A JSON merge patch (RFC 7386): null removes a key."""
        with self._changing(f"patch {resource} {namespace}/{name}"):
            self._patcher(resource)(
                name,
                namespace,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )

    def delete(self, resource: str, namespace: str, name: str) -> None:
        delete = {
            "configmaps": self.core.delete_namespaced_config_map,
            "ingresses": self.networking.delete_namespaced_ingress,
        }[resource]
        with self._changing(f"delete {resource} {namespace}/{name}"):
            delete(name, namespace, _request_timeout=REQUEST_TIMEOUT)

    def _patcher(self, resource: str) -> Any:
        return {
            "configmaps": self.core.patch_namespaced_config_map,
            "ingresses": self.networking.patch_namespaced_ingress,
        }[resource]

    def read_scale(self, namespace: str, name: str) -> Scale:
        with _wrapped(f"get deployments/scale {namespace}/{name}"):
            scale: Any = self.apps.read_namespaced_deployment_scale(
                name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
            return Scale(int(scale.spec.replicas or 0), str(scale.metadata.resource_version))

    def set_replicas(self, namespace: str, name: str, replicas: int, resource_version: str) -> None:
        """Replace the scale, as of `resource_version`: if anyone changed it since it was
        read, the API server answers 409 and the job re-reads and decides again."""
        body = client.V1Scale(
            api_version="autoscaling/v1",
            kind="Scale",
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, resource_version=resource_version
            ),
            spec=client.V1ScaleSpec(replicas=replicas),
        )
        with self._changing(f"update deployments/scale {namespace}/{name}"):
            self.apps.replace_namespaced_deployment_scale(
                name, namespace, body, _request_timeout=REQUEST_TIMEOUT
            )

    def restart(self, namespace: str, name: str, at: str) -> None:
        """What `kubectl rollout restart` does: a restartedAt template annotation. The
        same `at` twice is one restart: the second patch changes nothing."""
        annotations = {"kubectl.kubernetes.io/restartedAt": at}
        body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        with self._changing(f"patch deployments {namespace}/{name}"):
            self.apps.patch_namespaced_deployment(
                name, namespace, body, _request_timeout=REQUEST_TIMEOUT
            )

    def hpa_for(self, namespace: str, deployment: str) -> Autoscaler | None:
        """The HorizontalPodAutoscaler that targets the deployment, if any."""
        with _wrapped(f"list horizontalpodautoscalers {namespace}"):
            found: Any = self.autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, _request_timeout=REQUEST_TIMEOUT
            )
            for hpa in found.items:
                ref = hpa.spec.scale_target_ref
                if ref.kind == "Deployment" and ref.name == deployment:
                    low = int(hpa.spec.min_replicas or 1)
                    high, version = int(hpa.spec.max_replicas), str(hpa.metadata.resource_version)
                    return Autoscaler(str(hpa.metadata.name), low, high, version)
        return None

    def set_hpa_min(self, hpa: Autoscaler, namespace: str, min_replicas: int) -> None:
        """As of the HPA's resourceVersion when read (else 409: re-read, decide again)."""
        name = hpa.name
        body = {
            "metadata": {"resourceVersion": hpa.resource_version},
            "spec": {"minReplicas": min_replicas},
        }
        with self._changing(f"patch horizontalpodautoscalers {namespace}/{name}"):
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                name, namespace, body, _request_timeout=REQUEST_TIMEOUT
            )

    def revisions(self, namespace: str, deployment: str) -> tuple[int, list[Revision]]:
        """The deployment's current revision, and every revision its ReplicaSets hold."""
        found = self.read("deployments", namespace, deployment)
        if found is None:
            raise PermanentError(f"deployment {namespace}/{deployment} not found")
        with _wrapped(f"list replicasets {namespace}"):
            meta, spec = found["metadata"], found["spec"]
            current = int((meta.get("annotations") or {}).get(REVISION, 0))
            match = spec["selector"].get("matchLabels") or {}
            listed: Any = self.apps.list_namespaced_replica_set(
                namespace,
                label_selector=",".join(f"{k}={v}" for k, v in match.items()),
                _request_timeout=REQUEST_TIMEOUT,
            )
            revisions = [
                _revision(self.api, rs)
                for rs in listed.items
                if meta["uid"] in {ref.uid for ref in rs.metadata.owner_references or []}
                and REVISION in (rs.metadata.annotations or {})
            ]
        return current, sorted(revisions, key=lambda r: r.number)

    def rollouts(self, namespace: str, since: datetime) -> list[Rollout]:
        """The namespace's deployments whose current revision rolled out at or after
        `since`, newest first: each one's revision annotation, matched to the ReplicaSet
        it owns with that revision, whose creationTimestamp is when it rolled out. Two
        lists (deployments, replicasets), paged up to MAX_PODS items each; a rollback to an
        older template reuses that revision's ReplicaSet, so it shows its first rollout's
        time. List only."""

        def listed(what: str, call: Any) -> list[Any]:
            items: list[Any] = []
            token: str | None = None
            while len(items) < MAX_PODS:
                with _wrapped(f"list {what} {namespace}"):
                    page: Any = call(
                        namespace,
                        limit=min(PODS_PER_PAGE, MAX_PODS - len(items)),
                        _continue=token,
                        _request_timeout=REQUEST_TIMEOUT,
                    )
                    items += list(page.items)
                    meta = page.metadata  # as in _pods: the token's name varies
                    token = (
                        (getattr(meta, "var_continue", None) or getattr(meta, "_continue", None))
                        if meta
                        else None
                    )
                if not token:
                    break
            return items

        deployments = listed("deployments", self.apps.list_namespaced_deployment)
        replicasets = listed("replicasets", self.apps.list_namespaced_replica_set)
        with _wrapped(f"list replicasets {namespace}"):
            owned = {
                (ref.uid, (rs.metadata.annotations or {}).get(REVISION)): rs
                for rs in replicasets
                for ref in rs.metadata.owner_references or []
            }
            found = []
            for deployment in deployments:
                meta = deployment.metadata
                current = (meta.annotations or {}).get(REVISION)
                rs = owned.get((meta.uid, current))
                if rs is None or current is None or rs.metadata.creation_timestamp is None:
                    continue  # not rolled out yet, or its ReplicaSet is gone
                revision = _revision(self.api, rs)
                if revision.created >= since:
                    found.append(
                        Rollout(
                            namespace=namespace,
                            name=str(meta.name),
                            revision=revision.number,
                            replicaset=revision.replicaset,
                            rolled_out_at=revision.created.astimezone(UTC),
                            images=revision.images,
                        )
                    )
        return sorted(found, key=lambda r: r.rolled_out_at, reverse=True)

    def workload(self, namespace: str, name: str, *, warnings: int = 5) -> Workload:
        """The deployment's replicas, its pods (by its selector, every page up to
        MAX_PODS) and the newest `warnings` Warning events about it and about its pods
        that are not well (asked by name: a busy namespace's other warnings never crowd
        them out, and a sibling named like it is not it). Get and list only."""
        found = self.read("deployments", namespace, name)
        if found is None:
            raise PermanentError(f"deployment {namespace}/{name} not found")
        match = found["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in match.items())
        pods, more = self._pods(namespace, selector)
        troubled = [p.name for p in pods if not p.ready or p.waiting or p.last_termination]
        about: list[Any] = []
        for subject in [name, *troubled[:MAX_EVENT_SUBJECTS]]:
            with _wrapped(f"list events {namespace}"):
                events: Any = self.core.list_namespaced_event(
                    namespace,
                    field_selector=f"type=Warning,involvedObject.name={subject}",
                    limit=warnings,
                    _request_timeout=REQUEST_TIMEOUT,
                )
                about += list(events.items)
        about.sort(key=_event_time, reverse=True)
        status = found.get("status") or {}
        return Workload(
            desired=int(found["spec"].get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            pods=pods,
            warnings=[_warning(e) for e in about[:warnings]],
            more_pods=more,
        )

    def _pods(self, namespace: str, selector: str) -> tuple[list[PodState], bool]:
        """The pods `selector` picks, page by page up to MAX_PODS; and whether there are more."""
        pods: list[PodState] = []
        token: str | None = None
        while True:
            with _wrapped(f"list pods {namespace}"):
                page: Any = self.core.list_namespaced_pod(
                    namespace,
                    label_selector=selector,
                    limit=min(PODS_PER_PAGE, MAX_PODS - len(pods)),
                    _continue=token,
                    _request_timeout=REQUEST_TIMEOUT,
                )
                pods += [_pod_state(pod) for pod in page.items]
                meta = page.metadata  # the pydantic models name the token var_continue
                token = (
                    (getattr(meta, "var_continue", None) or getattr(meta, "_continue", None))
                    if meta
                    else None
                )
            if not token:
                return pods, False
            if len(pods) >= MAX_PODS:
                return pods, True

    def roll_back(self, namespace: str, name: str, *, current: int, to: Revision) -> None:
        """What `kubectl rollout undo` does: the old ReplicaSet's pod template, put back.

        The patch tests the revision first: if someone rolled out since, the API
        server refuses it (422) and nothing changes.
        """
        template = copy.deepcopy(to.template)
        labels = template.get("metadata", {}).get("labels") or {}
        labels.pop("pod-template-hash", None)
        operations: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/annotations/" + REVISION.replace("/", "~1"),
                "value": str(current),
            },
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        with self._changing(f"patch deployments {namespace}/{name}"):
            self.apps.patch_namespaced_deployment(
                name, namespace, operations, _request_timeout=REQUEST_TIMEOUT
            )


def _revision(api: Any, rs: Any) -> Revision:
    created = rs.metadata.creation_timestamp
    if not isinstance(created, datetime):
        raise ValueError(f"ReplicaSet {rs.metadata.name} has no creationTimestamp")
    template = api.sanitize_for_serialization(rs.spec.template)
    return Revision(
        int(rs.metadata.annotations[REVISION]),
        str(rs.metadata.name),
        created if created.tzinfo else created.replace(tzinfo=UTC),
        template,
    )


def _pod_state(pod: Any) -> PodState:
    statuses = pod.status.container_statuses or [] if pod.status else []
    waiting = next((s.state.waiting.reason for s in statuses if s.state and s.state.waiting), None)
    ended = next(
        (
            s.last_state.terminated.reason
            for s in statuses
            if s.last_state and s.last_state.terminated
        ),
        None,
    )
    return PodState(
        name=str(pod.metadata.name),
        ready=bool(statuses) and all(s.ready for s in statuses),
        restarts=sum(int(s.restart_count or 0) for s in statuses),
        waiting=str(waiting) if waiting else None,
        last_termination=str(ended) if ended else None,
    )


def _event_time(event: Any) -> datetime:
    when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    if not isinstance(when, datetime):
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _warning(event: Any) -> str:
    count = f" x{event.count}" if (event.count or 1) > 1 else ""
    what = f"{str(event.involved_object.kind).lower()} {event.involved_object.name}"
    return f"{event.reason}{count} on {what}: {event.message or ''}".strip()


def _resource_of(manifest: dict[str, Any]) -> str:
    kind = (manifest.get("apiVersion"), manifest.get("kind"))
    if kind not in MANIFEST_KINDS:
        raise PermanentError(f"alertpilot does not apply {kind[1]} ({kind[0]}) manifests")
    return MANIFEST_KINDS[(str(kind[0]), str(kind[1]))][1]


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:  # v37 subclasses per status; branch on the status
        status = int(exc.status or 0)
        message = f"Kubernetes answered {status} to {what}: {exc.reason}"
        if status in (409, 429) or status >= 500 or status == 0:
            raise TransientError(message, status=status or None) from None
        raise PermanentError(message, status=status) from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, reset, timed out
        raise TransientError(f"Kubernetes call failed ({type(exc).__name__}) for {what}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # an answer we cannot read
        raise PermanentError(f"unexpected answer from Kubernetes to {what} ({exc})") from None
