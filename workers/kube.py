"""Kubernetes, behind one adapter: the official client, its exceptions wrapped here.

Permanent: 400, 401, 403, 404, 422 (retrying cannot help). Transient: 409 (a
concurrent writer: re-read and try again), 429, 5xx, connection errors.
Every call this adapter makes is one the Role in deploy/base/rbac.yaml allows.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from workers.actions import MANIFEST_KINDS
from workers.errors import PermanentError, TransientError


@dataclass(frozen=True)
class Scale:
    replicas: int
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


REVISION = "deployment.kubernetes.io/revision"
FIELD_MANAGER = "alertpilot"


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
    def __init__(self, api: Any) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.networking = client.NetworkingV1Api(api)

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
                found = reader(name, namespace)
        except PermanentError as error:
            if error.status == 404:
                return None
            raise
        doc: dict[str, Any] = self.api.sanitize_for_serialization(found)
        return doc

    def apply(self, namespace: str, manifest: dict[str, Any]) -> None:
        """Server-side apply under field manager `alertpilot`, taking the fields it names."""
        resource = _resource_of(manifest)
        patch = {
            "configmaps": self.core.patch_namespaced_config_map,
            "ingresses": self.networking.patch_namespaced_ingress,
        }[resource]
        name = str(manifest["metadata"]["name"])
        with _wrapped(f"apply {resource} {namespace}/{name}"):
            patch(
                name,
                namespace,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )

    def merge_patch(self, resource: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        patch = {
            "configmaps": self.core.patch_namespaced_config_map,
            "ingresses": self.networking.patch_namespaced_ingress,
        }[resource]
        with _wrapped(f"patch {resource} {namespace}/{name}"):
            patch(name, namespace, body, _content_type="application/merge-patch+json")

    def delete(self, resource: str, namespace: str, name: str) -> None:
        delete = {
            "configmaps": self.core.delete_namespaced_config_map,
            "ingresses": self.networking.delete_namespaced_ingress,
        }[resource]
        with _wrapped(f"delete {resource} {namespace}/{name}"):
            delete(name, namespace)

    def revisions(self, namespace: str, deployment: str) -> tuple[int, list[Revision]]:
        """The deployment's current revision, and every revision its ReplicaSets hold."""
        found = self.read("deployments", namespace, deployment)
        if found is None:
            raise PermanentError(f"deployment {namespace}/{deployment} not found")
        meta, spec = found["metadata"], found["spec"]
        current = int((meta.get("annotations") or {}).get(REVISION, 0))
        selector = ",".join(
            f"{k}={v}" for k, v in (spec["selector"].get("matchLabels") or {}).items()
        )
        with _wrapped(f"list replicasets {namespace}"):
            listed: Any = self.apps.list_namespaced_replica_set(namespace, label_selector=selector)
        revisions = []
        for rs in listed.items:
            owners = {ref.uid for ref in rs.metadata.owner_references or []}
            number = (rs.metadata.annotations or {}).get(REVISION)
            if meta["uid"] in owners and number is not None:
                template = self.api.sanitize_for_serialization(rs.spec.template)
                revisions.append(
                    Revision(
                        int(number), rs.metadata.name, rs.metadata.creation_timestamp, template
                    )
                )
        return current, sorted(revisions, key=lambda r: r.number)

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
        with _wrapped(f"patch deployments {namespace}/{name}"):
            self.apps.patch_namespaced_deployment(name, namespace, operations)

    def ingress_annotations(self, namespace: str, name: str) -> dict[str, str]:
        with _wrapped(f"get ingresses {namespace}/{name}"):
            ingress: Any = self.networking.read_namespaced_ingress(name, namespace)
        return dict(ingress.metadata.annotations or {})

    def annotate_ingress(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        """Merge-patch the annotations; None removes one."""
        body = {"metadata": {"annotations": annotations}}
        with _wrapped(f"patch ingresses {namespace}/{name}"):
            self.networking.patch_namespaced_ingress(
                name, namespace, body, _content_type="application/merge-patch+json"
            )

    def read_scale(self, namespace: str, name: str) -> Scale:
        with _wrapped(f"read deployments/scale {namespace}/{name}"):
            scale: Any = self.apps.read_namespaced_deployment_scale(name, namespace)
        return Scale(int(scale.spec.replicas or 0), str(scale.metadata.resource_version))

    def set_replicas(self, namespace: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        with _wrapped(f"patch deployments/scale {namespace}/{name}"):
            self.apps.patch_namespaced_deployment_scale(name, namespace, body)

    def restart(self, namespace: str, name: str, at: str) -> None:
        """What `kubectl rollout restart` does: a new restartedAt template annotation."""
        annotations = {"kubectl.kubernetes.io/restartedAt": at}
        body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        with _wrapped(f"patch deployments {namespace}/{name}"):
            self.apps.patch_namespaced_deployment(name, namespace, body)

    def hpa_for(self, namespace: str, deployment: str) -> tuple[str, int] | None:
        """The HorizontalPodAutoscaler that targets the deployment: (name, minReplicas)."""
        with _wrapped(f"list horizontalpodautoscalers {namespace}"):
            found: Any = self.autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace)
        for hpa in found.items:
            ref = hpa.spec.scale_target_ref
            if ref.kind == "Deployment" and ref.name == deployment:
                return str(hpa.metadata.name), int(hpa.spec.min_replicas or 1)
        return None

    def set_hpa_min(self, namespace: str, name: str, min_replicas: int) -> None:
        body = {"spec": {"minReplicas": min_replicas}}
        with _wrapped(f"patch horizontalpodautoscalers {namespace}/{name}"):
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(name, namespace, body)


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
            raise TransientError(message) from None
        raise PermanentError(message, status=status) from None
    except (OSError, ValueError) as exc:  # connection errors; pydantic validation
        raise TransientError(f"Kubernetes call failed ({type(exc).__name__}) for {what}") from None
