"""Kubernetes, behind one adapter: the official client, its exceptions wrapped here.

Permanent: 400, 401, 403, 404, 422 (retrying cannot help). Transient: 409 (a
concurrent writer: re-read and try again), 429, 5xx, connection errors.
Every call this adapter makes is one the Role in deploy/base/rbac.yaml allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from workers.errors import PermanentError, TransientError


@dataclass(frozen=True)
class Scale:
    replicas: int
    resource_version: str


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
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.networking = client.NetworkingV1Api(api)

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


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:  # v37 subclasses per status; branch on the status
        status = int(exc.status or 0)
        message = f"Kubernetes answered {status} to {what}: {exc.reason}"
        if status in (409, 429) or status >= 500 or status == 0:
            raise TransientError(message) from None
        raise PermanentError(message) from None
    except (OSError, ValueError) as exc:  # connection errors; pydantic validation
        raise TransientError(f"Kubernetes call failed ({type(exc).__name__}) for {what}") from None
