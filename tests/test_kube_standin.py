"""Self-test for tests/support/kube_standin.py, driven by the official kubernetes client (v37)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import config
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AutoscalingV1Api,
    AutoscalingV2Api,
    CoreV1Api,
    NetworkingV1Api,
    V1DeleteOptions,
    V1ObjectMeta,
    V1Preconditions,
    V1Scale,
    V1ScaleSpec,
)
from kubernetes.client.exceptions import ApiException

from tests.support.kube_standin import KubeStandIn

TOKEN = "t0ken"
NS = "production"
TIMEOUT_S = 5.0
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
RESTARTED = {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00+00:00"}
RESTART = {"spec": {"template": {"metadata": {"annotations": RESTARTED}}}}


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    for name in PROXIES:  # v37 reads proxies from the environment: stay on loopback
        monkeypatch.delenv(name, raising=False)
    with KubeStandIn(token=TOKEN) as stand_in:
        stand_in.add_deployment(NS, "api", replicas=4, template_annotations={"team": "core"})
        yield stand_in


@pytest.fixture
def api(kube: KubeStandIn, tmp_path: Path) -> Iterator[ApiClient]:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    client: ApiClient = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    yield client
    client.close()  # type: ignore[no-untyped-call]


def apps(api: ApiClient) -> AppsV1Api:
    return AppsV1Api(api)


def revision(obj: dict[str, Any]) -> str:
    value: str = obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    return value


def status_of(answer: object) -> dict[str, Any]:
    """What a v37 delete call returns: the Status object, as a dict (its return type: object)."""
    assert isinstance(answer, dict), answer
    return answer


def failure(call: Any, *args: Any, **kwargs: Any) -> tuple[int | None, dict[str, Any]]:
    """(status, Status object) of the ApiException the call raises (v37: ``body`` is a str)."""
    with pytest.raises(ApiException) as caught:
        call(*args, _request_timeout=TIMEOUT_S, **kwargs)
    status: dict[str, Any] = json.loads(caught.value.body or "{}")
    return caught.value.status, status


def test_kubeconfig_points_the_client_at_the_standin_over_verified_tls(
    kube: KubeStandIn, api: ApiClient
) -> None:
    assert api.configuration.host == kube.server
    assert api.configuration.ssl_ca_cert == kube.ca_path
    assert api.configuration.verify_ssl is True
    deployment = apps(api).read_namespaced_deployment("api", NS, _request_timeout=TIMEOUT_S)
    assert deployment.spec is not None and deployment.spec.replicas == 4
    assert kube.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_read_deployment_returns_a_complete_object(api: ApiClient) -> None:
    d = apps(api).read_namespaced_deployment("api", NS, _request_timeout=TIMEOUT_S)
    assert d.metadata is not None and d.metadata.annotations is not None
    assert (d.metadata.name, d.metadata.namespace) == ("api", NS)
    assert d.metadata.uid and d.metadata.resource_version and d.metadata.creation_timestamp
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert d.spec is not None and d.spec.selector.match_labels == {"app": "api"}
    assert d.spec.template.spec is not None and d.spec.template.spec.containers[0].name == "api"
    assert d.status is not None and d.status.ready_replicas == 4
    assert d.status.observed_generation == d.metadata.generation == 1


def test_read_scale_returns_the_scale_subresource(kube: KubeStandIn, api: ApiClient) -> None:
    scale = apps(api).read_namespaced_deployment_scale("api", NS, _request_timeout=TIMEOUT_S)
    assert scale.spec is not None and scale.spec.replicas == 4
    assert scale.status is not None and scale.status.replicas == 4
    assert scale.status.selector == "app=api"
    assert kube.calls == [("apps", "deployments/scale", "get")]


def test_patch_scale_sets_replicas_and_bumps_versions(kube: KubeStandIn, api: ApiClient) -> None:
    before = kube.deployment(NS, "api")
    body = {"spec": {"replicas": 8}}
    scale = apps(api).patch_namespaced_deployment_scale("api", NS, body, _request_timeout=TIMEOUT_S)
    after = kube.deployment(NS, "api")
    assert scale.spec is not None and scale.spec.replicas == 8
    assert after["spec"]["replicas"] == after["status"]["readyReplicas"] == 8
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert kube.calls == [("apps", "deployments/scale", "patch")]
    assert kube.requests[-1].content_type == SMP
    assert kube.requests[-1].body == body


def test_restart_patch_merges_the_template_annotation_and_rolls_out_a_revision(
    kube: KubeStandIn, api: ApiClient
) -> None:
    apps(api).patch_namespaced_deployment("api", NS, RESTART, _request_timeout=TIMEOUT_S)
    stored = kube.deployment(NS, "api")
    template = stored["spec"]["template"]
    assert template["metadata"]["annotations"] == {"team": "core", **RESTARTED}
    assert template["spec"]["containers"] == [{"name": "api", "image": "registry.example/api:1"}]
    assert revision(stored) == "2"
    assert kube.calls == [("apps", "deployments", "patch")]
    assert kube.requests[-1].content_type == SMP


def test_merge_patch_is_sent_with_content_type_override_and_null_deletes(
    kube: KubeStandIn, api: ApiClient
) -> None:
    unset_team = {"template": {"metadata": {"annotations": {"team": None}}}}
    body = {"metadata": {"labels": {"tier": "web"}}, "spec": unset_team}
    apps(api).patch_namespaced_deployment(
        "api", NS, body, _content_type="application/merge-patch+json", _request_timeout=TIMEOUT_S
    )
    stored = kube.deployment(NS, "api")
    assert stored["metadata"]["labels"] == {"app": "api", "tier": "web"}
    assert stored["spec"]["template"]["metadata"]["annotations"] == {}
    assert kube.requests[-1].content_type == "application/merge-patch+json"


def test_a_list_body_is_sent_as_json_patch(kube: KubeStandIn, api: ApiClient) -> None:
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/replicas", "value": 6},
        {"op": "add", "path": "/metadata/annotations/alertpilot~1note", "value": "x"},
    ]
    apps(api).patch_namespaced_deployment("api", NS, ops, _request_timeout=TIMEOUT_S)
    stored = kube.deployment(NS, "api")
    assert stored["spec"]["replicas"] == 6
    assert stored["metadata"]["annotations"]["alertpilot/note"] == "x"
    assert kube.requests[-1].content_type == "application/json-patch+json"


def test_replace_scale_with_a_stale_resource_version_is_409(
    kube: KubeStandIn, api: ApiClient
) -> None:
    meta = V1ObjectMeta(name="api", namespace=NS, resource_version="1")
    body = V1Scale(metadata=meta, spec=V1ScaleSpec(replicas=8))
    status, error = failure(apps(api).replace_namespaced_deployment_scale, "api", NS, body)
    assert (status, error["reason"], error["code"]) == (409, "Conflict", 409)
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 4
    assert kube.calls == [("apps", "deployments/scale", "update")]


def test_replace_scale_with_the_current_resource_version_succeeds(
    kube: KubeStandIn, api: ApiClient
) -> None:
    current = apps(api).read_namespaced_deployment_scale("api", NS, _request_timeout=TIMEOUT_S)
    assert current.spec is not None and current.metadata is not None
    current.spec.replicas = 8
    apps(api).replace_namespaced_deployment_scale("api", NS, current, _request_timeout=TIMEOUT_S)
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 8
    sent = kube.requests[-1].body["metadata"]["resourceVersion"]
    assert sent == current.metadata.resource_version


def test_forbid_answers_403_until_unforbidden(kube: KubeStandIn, api: ApiClient) -> None:
    kube.forbid("deployments/scale", "patch")
    body = {"spec": {"replicas": 8}}
    status, error = failure(apps(api).patch_namespaced_deployment_scale, "api", NS, body)
    assert (status, error["reason"]) == (403, "Forbidden")
    assert 'cannot patch resource "deployments/scale" in API group "apps"' in error["message"]
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 4
    kube.unforbid("deployments/scale", "patch")
    apps(api).patch_namespaced_deployment_scale("api", NS, body, _request_timeout=TIMEOUT_S)
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 8


def test_unknown_deployment_is_404_with_a_status_object(kube: KubeStandIn, api: ApiClient) -> None:
    status, error = failure(apps(api).read_namespaced_deployment_scale, "nope", NS)
    assert (status, error["kind"], error["reason"]) == (404, "Status", "NotFound")
    assert error["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    assert kube.requests[-1].status == 404


def test_an_unserved_api_version_is_404(kube: KubeStandIn, api: ApiClient) -> None:
    status, error = failure(AutoscalingV1Api(api).list_namespaced_horizontal_pod_autoscaler, NS)
    assert (status, error["reason"]) == (404, "NotFound")


def test_fail_next_answers_one_call_then_serves_normally(kube: KubeStandIn, api: ApiClient) -> None:
    kube.fail_next("patch", "deployments/scale", 409)
    body = {"spec": {"replicas": 8}}
    status, error = failure(apps(api).patch_namespaced_deployment_scale, "api", NS, body)
    assert (status, error["reason"]) == (409, "Conflict")
    apps(api).patch_namespaced_deployment_scale("api", NS, body, _request_timeout=TIMEOUT_S)
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 8
    assert [r.status for r in kube.requests] == [409, 200]


def test_fail_next_only_matches_its_verb_and_resource(kube: KubeStandIn, api: ApiClient) -> None:
    kube.fail_next("patch", "deployments/scale", 503)
    apps(api).read_namespaced_deployment_scale("api", NS, _request_timeout=TIMEOUT_S)
    apps(api).patch_namespaced_deployment("api", NS, RESTART, _request_timeout=TIMEOUT_S)
    body = {"spec": {"replicas": 8}}
    status, error = failure(apps(api).patch_namespaced_deployment_scale, "api", NS, body)
    assert (status, error["reason"]) == (503, "ServiceUnavailable")


def test_a_wrong_token_is_401_and_not_recorded_as_a_call(kube: KubeStandIn, api: ApiClient) -> None:
    kube.token = "other"
    status, error = failure(apps(api).read_namespaced_deployment, "api", NS)
    assert (status, error["reason"]) == (401, "Unauthorized")
    assert kube.calls == []


def test_hpa_list_and_min_replicas_patch(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_hpa(NS, "api", target_deployment="api", min_replicas=3, max_replicas=10)
    autoscaling = AutoscalingV2Api(api)
    listed = autoscaling.list_namespaced_horizontal_pod_autoscaler(NS, _request_timeout=TIMEOUT_S)
    assert [h.spec.scale_target_ref.name for h in listed.items] == ["api"]
    assert [h.status.desired_replicas for h in listed.items if h.status] == [4]
    body = {"spec": {"minReplicas": 8}}
    autoscaling.patch_namespaced_horizontal_pod_autoscaler(
        "api", NS, body, _request_timeout=TIMEOUT_S
    )
    assert kube.hpa(NS, "api")["spec"]["minReplicas"] == 8
    assert kube.calls == [
        ("autoscaling", "horizontalpodautoscalers", "list"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
    ]


def test_hpa_min_above_max_is_422(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_hpa(NS, "api", target_deployment="api", min_replicas=3, max_replicas=10)
    patch = AutoscalingV2Api(api).patch_namespaced_horizontal_pod_autoscaler
    status, error = failure(patch, "api", NS, {"spec": {"minReplicas": 11}})
    assert (status, error["reason"]) == (422, "Invalid")
    assert kube.hpa(NS, "api")["spec"]["minReplicas"] == 3


def test_ingress_annotation_patch_keeps_other_annotations(
    kube: KubeStandIn, api: ApiClient
) -> None:
    kube.add_ingress(NS, "api", annotations={"owner": "core"})
    limits = {"nginx.ingress.kubernetes.io/limit-rps": "10"}
    NetworkingV1Api(api).patch_namespaced_ingress(
        "api", NS, {"metadata": {"annotations": limits}}, _request_timeout=TIMEOUT_S
    )
    assert kube.ingress(NS, "api")["metadata"]["annotations"] == {"owner": "core", **limits}
    assert kube.calls == [("networking.k8s.io", "ingresses", "patch")]


def test_replicasets_are_listed_by_label_selector(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_deployment(NS, "web")
    template = kube.deployment(NS, "api")["spec"]["template"]
    kube.add_replicaset(NS, "api-old", "api", revision=1, template=template)
    kube.add_replicaset(NS, "web-old", "web", revision=1, template=template)
    listed = apps(api).list_namespaced_replica_set(
        NS, label_selector="app=api", _request_timeout=TIMEOUT_S
    )
    assert [rs.metadata.name for rs in listed.items if rs.metadata] == ["api-old"]
    assert kube.requests[-1].query == {"labelSelector": "app=api"}
    assert kube.calls == [("apps", "replicasets", "list")]


def test_rollback_to_a_previous_template_reuses_its_replicaset(
    kube: KubeStandIn, api: ApiClient
) -> None:
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    first = kube.deployment(NS, "api")["spec"]["template"]
    kube.add_replicaset(NS, "api-1", "api", 1, first, created=three_hours_ago)
    apps(api).patch_namespaced_deployment("api", NS, RESTART, _request_timeout=TIMEOUT_S)
    assert revision(kube.deployment(NS, "api")) == "2"
    previous = kube.replicaset(NS, "api-1")["spec"]["template"]
    undo: list[dict[str, Any]] = [{"op": "replace", "path": "/spec/template", "value": previous}]
    apps(api).patch_namespaced_deployment("api", NS, undo, _request_timeout=TIMEOUT_S)
    stored, reused = kube.deployment(NS, "api"), kube.replicaset(NS, "api-1")
    assert revision(stored) == revision(reused) == "3"
    assert (
        "kubectl.kubernetes.io/restartedAt"
        not in stored["spec"]["template"]["metadata"]["annotations"]
    )
    assert reused["status"]["replicas"] == 4
    assert reused["metadata"]["creationTimestamp"] == three_hours_ago.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_server_side_apply_creates_with_its_field_manager(
    kube: KubeStandIn, api: ApiClient
) -> None:
    limits = {"nginx.ingress.kubernetes.io/limit-rps": "5"}
    meta = {"name": "strict", "annotations": limits}
    manifest = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta}
    NetworkingV1Api(api).patch_namespaced_ingress(
        "strict",
        NS,
        manifest,
        field_manager="alertpilot",
        force=True,
        _content_type="application/apply-patch+yaml",
        _request_timeout=TIMEOUT_S,
    )
    stored = kube.ingress(NS, "strict")
    assert stored["metadata"]["annotations"] == limits
    assert [e["manager"] for e in stored["metadata"]["managedFields"]] == ["alertpilot"]
    last = kube.requests[-1]
    assert (last.status, last.content_type) == (201, "application/apply-patch+yaml")
    assert last.query == {"fieldManager": "alertpilot", "force": "true"}
    assert kube.calls == [
        ("networking.k8s.io", "ingresses", "patch"),
        ("networking.k8s.io", "ingresses", "create"),
    ]


def test_server_side_apply_merges_into_an_existing_deployment(
    kube: KubeStandIn, api: ApiClient
) -> None:
    meta = {"name": "api", "labels": {"limited": "yes"}}
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta}
    applied = apps(api).patch_namespaced_deployment(
        "api",
        NS,
        manifest,
        field_manager="alertpilot",
        _content_type="application/apply-patch+yaml",
        _request_timeout=TIMEOUT_S,
    )
    assert applied.metadata is not None
    assert applied.metadata.labels == {"app": "api", "limited": "yes"}
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 4
    assert (kube.requests[-1].status, kube.calls) == (200, [("apps", "deployments", "patch")])


def test_server_side_apply_without_field_manager_is_400(kube: KubeStandIn, api: ApiClient) -> None:
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}}
    patch = apps(api).patch_namespaced_deployment
    status, error = failure(patch, "api", NS, manifest, _content_type=APPLY)
    assert (status, error["reason"]) == (400, "BadRequest")


def test_dry_run_answers_without_storing(kube: KubeStandIn, api: ApiClient) -> None:
    body = {"spec": {"replicas": 9}}
    scale = apps(api).patch_namespaced_deployment_scale(
        "api", NS, body, dry_run="All", _request_timeout=TIMEOUT_S
    )
    assert scale.spec is not None and scale.spec.replicas == 9
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 4


def test_a_no_op_patch_keeps_the_resource_version(kube: KubeStandIn, api: ApiClient) -> None:
    before = kube.deployment(NS, "api")["metadata"]["resourceVersion"]
    body = {"spec": {"replicas": 4}}
    apps(api).patch_namespaced_deployment_scale("api", NS, body, _request_timeout=TIMEOUT_S)
    assert kube.deployment(NS, "api")["metadata"]["resourceVersion"] == before


def test_strategic_merge_merges_containers_by_name(kube: KubeStandIn, api: ApiClient) -> None:
    sidecar = {"name": "proxy", "image": "registry.example/proxy:1"}
    body = {"spec": {"template": {"spec": {"containers": [sidecar]}}}}
    apps(api).patch_namespaced_deployment("api", NS, body, _request_timeout=TIMEOUT_S)
    containers = kube.deployment(NS, "api")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["api", "proxy"]


def test_json_patch_replace_of_a_missing_path_is_422(kube: KubeStandIn, api: ApiClient) -> None:
    ops: list[dict[str, Any]] = [{"op": "replace", "path": "/spec/paused/x", "value": True}]
    status, error = failure(apps(api).patch_namespaced_deployment, "api", NS, ops)
    assert (status, error["reason"]) == (422, "Invalid")
    assert kube.deployment(NS, "api")["metadata"]["generation"] == 1


def test_delete_configmap_removes_it_and_answers_a_success_status(
    kube: KubeStandIn, api: ApiClient
) -> None:
    uid = kube.add_configmap(NS, "flags", {"mode": "degraded"})["metadata"]["uid"]
    core = CoreV1Api(api)
    answer = status_of(core.delete_namespaced_config_map("flags", NS, _request_timeout=TIMEOUT_S))
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert answer["details"] == {"name": "flags", "group": "", "kind": "configmaps", "uid": uid}
    assert kube.object("", "configmaps", NS, "flags") is None
    assert kube.calls == [("", "configmaps", "delete")]
    assert kube.requests[-1].path == f"/api/v1/namespaces/{NS}/configmaps/flags"


def test_delete_ingress_removes_it(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_ingress(NS, "api")
    kube.add_ingress(NS, "web")
    networking = NetworkingV1Api(api)
    answer = status_of(networking.delete_namespaced_ingress("api", NS, _request_timeout=TIMEOUT_S))
    assert answer["details"]["kind"] == "ingresses"
    assert answer["details"]["group"] == "networking.k8s.io"
    with pytest.raises(KeyError):
        kube.ingress(NS, "api")
    assert kube.ingress(NS, "web")["metadata"]["name"] == "web"
    assert kube.calls == [("networking.k8s.io", "ingresses", "delete")]


def test_a_second_delete_is_404(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_configmap(NS, "flags")
    core = CoreV1Api(api)
    core.delete_namespaced_config_map("flags", NS, _request_timeout=TIMEOUT_S)
    status, error = failure(core.delete_namespaced_config_map, "flags", NS)
    assert (status, error["reason"], error["code"]) == (404, "NotFound", 404)
    assert error["details"] == {"name": "flags", "group": "", "kind": "configmaps"}
    assert error["message"] == 'configmaps "flags" not found'
    assert kube.calls == [("", "configmaps", "delete")] * 2


def test_delete_dry_run_keeps_the_object(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_configmap(NS, "flags", {"mode": "degraded"})
    kube.add_ingress(NS, "api")
    answer = CoreV1Api(api).delete_namespaced_config_map(
        "flags", NS, dry_run="All", _request_timeout=TIMEOUT_S
    )
    assert status_of(answer)["status"] == "Success"
    options = V1DeleteOptions(dry_run=["All"])
    NetworkingV1Api(api).delete_namespaced_ingress(
        "api", NS, body=options, _request_timeout=TIMEOUT_S
    )
    kept = kube.object("", "configmaps", NS, "flags")
    assert kept is not None and kept["data"] == {"mode": "degraded"}
    assert kube.ingress(NS, "api")["metadata"]["name"] == "api"
    assert kube.requests[0].query == {"dryRun": "All"}
    assert kube.calls == [
        ("", "configmaps", "delete"),
        ("networking.k8s.io", "ingresses", "delete"),
    ]


def test_delete_with_a_stale_precondition_is_409(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_configmap(NS, "flags")
    stale = V1DeleteOptions(preconditions=V1Preconditions(resource_version="1"))
    delete = CoreV1Api(api).delete_namespaced_config_map
    status, error = failure(delete, "flags", NS, body=stale)
    assert (status, error["reason"]) == (409, "Conflict")
    assert "Precondition failed: ResourceVersion in precondition: 1" in error["message"]
    assert kube.object("", "configmaps", NS, "flags") is not None
    current = kube.object("", "configmaps", NS, "flags") or {}
    held = V1Preconditions(uid=current["metadata"]["uid"])
    delete("flags", NS, body=V1DeleteOptions(preconditions=held), _request_timeout=TIMEOUT_S)
    assert kube.object("", "configmaps", NS, "flags") is None


def test_delete_of_the_scale_subresource_or_a_collection_is_405(
    kube: KubeStandIn, api: ApiClient
) -> None:
    kube.add_configmap(NS, "flags")
    url = f"{kube.server}/apis/apps/v1/namespaces/{NS}/deployments/api/scale"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = requests.delete(url, headers=headers, verify=kube.ca_path, timeout=TIMEOUT_S)
    assert (answer.status_code, answer.json()["reason"]) == (405, "MethodNotAllowed")
    status, error = failure(CoreV1Api(api).delete_collection_namespaced_config_map, NS)
    assert (status, error["reason"]) == (405, "MethodNotAllowed")
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 4
    assert kube.object("", "configmaps", NS, "flags") is not None
    assert kube.calls == [
        ("apps", "deployments/scale", "delete"),
        ("", "configmaps", "deletecollection"),
    ]


def test_deleting_a_deployment_deletes_its_replicasets_unless_orphaned(
    kube: KubeStandIn, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web")
    template = kube.deployment(NS, "api")["spec"]["template"]
    kube.add_replicaset(NS, "api-1", "api", revision=1, template=template)
    kube.add_replicaset(NS, "web-1", "web", revision=1, template=template)
    apps(api).delete_namespaced_deployment("api", NS, _request_timeout=TIMEOUT_S)
    assert kube.object("apps", "replicasets", NS, "api-1") is None
    apps(api).delete_namespaced_deployment(
        "web", NS, propagation_policy="Orphan", _request_timeout=TIMEOUT_S
    )
    orphan = kube.replicaset(NS, "web-1")
    assert orphan["metadata"]["ownerReferences"] == []
    assert kube.object("apps", "deployments", NS, "web") is None
    assert kube.calls == [("apps", "deployments", "delete")] * 2


def test_a_patch_naming_a_stale_resource_version_is_409(kube: KubeStandIn, api: ApiClient) -> None:
    kube.add_hpa(NS, "api", target_deployment="api", min_replicas=4, max_replicas=30)
    hpas = AutoscalingV2Api(api)
    seen = hpas.read_namespaced_horizontal_pod_autoscaler("api", NS)
    hpas.patch_namespaced_horizontal_pod_autoscaler("api", NS, {"spec": {"minReplicas": 5}})
    version = seen.metadata.resource_version  # type: ignore[union-attr]
    stale = {"metadata": {"resourceVersion": version}, "spec": {"minReplicas": 2}}
    with pytest.raises(ApiException) as raised:
        hpas.patch_namespaced_horizontal_pod_autoscaler("api", NS, stale)
    assert raised.value.status == 409
    assert kube.hpa(NS, "api")["spec"]["minReplicas"] == 5
    fresh = hpas.read_namespaced_horizontal_pod_autoscaler("api", NS)
    version = fresh.metadata.resource_version  # type: ignore[union-attr]
    current = {"metadata": {"resourceVersion": version}, "spec": {"minReplicas": 6}}
    hpas.patch_namespaced_horizontal_pod_autoscaler("api", NS, current)
    assert kube.hpa(NS, "api")["spec"]["minReplicas"] == 6
