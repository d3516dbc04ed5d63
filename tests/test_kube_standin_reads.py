"""Pods and events of tests/support/kube_standin.py, read through the official client (v37).

Only the client's typed answers are asserted on: what alertpilot's workload view reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import config
from kubernetes.client import ApiClient, CoreV1Api, V1Pod
from kubernetes.client.exceptions import ApiException, BadRequestException

from tests.support.kube_standin import KubeStandIn

TOKEN = "t0ken"
NS = "production"
TIMEOUT_S = 5.0
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
RS = "api-5d8f7c9b6a"


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    """production/api (3 replicas) with its ReplicaSet; the stand-in's clock stands at NOW."""
    for name in PROXIES:  # v37 reads proxies from the environment: stay on loopback
        monkeypatch.delenv(name, raising=False)
    with KubeStandIn(token=TOKEN, now=lambda: NOW) as stand_in:
        stand_in.add_deployment(NS, "api", replicas=3)
        template = stand_in.deployment(NS, "api")["spec"]["template"]
        stand_in.add_replicaset(NS, RS, owner_deployment="api", revision=1, template=template)
        yield stand_in


@pytest.fixture
def core(kube: KubeStandIn, tmp_path: Path) -> Iterator[CoreV1Api]:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    client: ApiClient = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    yield CoreV1Api(client)
    client.close()  # type: ignore[no-untyped-call]


def read_pod(core: CoreV1Api, name: str) -> V1Pod:
    return core.read_namespaced_pod(name, NS, _request_timeout=TIMEOUT_S)


def test_pods_listed_by_the_deployment_selector_are_its_replicaset_s(
    kube: KubeStandIn, core: CoreV1Api
) -> None:
    kube.add_pod(NS, f"{RS}-x2x9k", labels={"app": "api"}, owner_replicaset=RS)
    kube.add_pod(NS, f"{RS}-q7w4p", labels={"app": "api"}, owner_replicaset=RS)
    kube.add_pod(NS, "worker-0", labels={"app": "worker"})
    selector = kube.deployment(NS, "api")["spec"]["selector"]["matchLabels"]
    label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
    listed = core.list_namespaced_pod(NS, label_selector=label_selector, _request_timeout=TIMEOUT_S)
    assert [p.metadata.name for p in listed.items if p.metadata] == [f"{RS}-q7w4p", f"{RS}-x2x9k"]
    pod = listed.items[0]
    assert pod.metadata is not None and pod.metadata.labels is not None
    assert pod.metadata.labels == {"app": "api", "pod-template-hash": RS.rsplit("-")[-1]}
    assert pod.metadata.generate_name == f"{RS}-"
    owner = (pod.metadata.owner_references or [])[0]
    assert (owner.kind, owner.name, owner.controller) == ("ReplicaSet", RS, True)
    assert owner.uid == kube.replicaset(NS, RS)["metadata"]["uid"]
    assert pod.spec is not None and pod.spec.containers[0].name == "api"
    assert pod.spec.containers[0].image == "registry.example/api:1"
    assert listed.kind == "PodList" and listed.api_version == "v1"
    assert kube.calls == [("", "pods", "list")]


def test_a_crash_looping_oom_killed_pod_reads_as_the_kubelet_reports_it(
    kube: KubeStandIn, core: CoreV1Api
) -> None:
    seeded = kube.add_pod(
        NS,
        f"{RS}-x2x9k",
        labels={"app": "api"},
        owner_replicaset=RS,
        ready=False,
        restarts=7,
        waiting_reason="CrashLoopBackOff",
        last_terminated_reason="OOMKilled",
        created=NOW - timedelta(hours=1),
    )
    pod = read_pod(core, f"{RS}-x2x9k")
    assert pod.metadata is not None and pod.metadata.uid == seeded["metadata"]["uid"]
    assert pod.metadata.creation_timestamp == NOW - timedelta(hours=1)
    assert pod.status is not None and pod.status.phase == "Running"
    status = (pod.status.container_statuses or [])[0]
    assert (status.name, status.ready, status.restart_count, status.started) == (
        "api",
        False,
        7,
        False,
    )
    assert status.state is not None and status.state.waiting is not None
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.state.waiting.message is not None
    assert status.state.waiting.message.startswith("back-off 5m0s restarting failed container=api")
    assert status.state.running is None
    assert status.last_state is not None and status.last_state.terminated is not None
    ended = status.last_state.terminated
    assert (ended.reason, ended.exit_code) == ("OOMKilled", 137)
    assert isinstance(ended.finished_at, datetime) and ended.finished_at == NOW - timedelta(
        seconds=30
    )
    assert status.container_id == ended.container_id  # a waiting container shows the ended one
    ready = {c.type: c for c in pod.status.conditions or []}["Ready"]
    assert (ready.status, ready.reason) == ("False", "ContainersNotReady")
    assert kube.calls == [("", "pods", "get")]


def test_a_ready_pod_runs_with_no_last_termination(kube: KubeStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, "worker-0", labels={"app": "worker"}, created=NOW - timedelta(minutes=5))
    pod = read_pod(core, "worker-0")
    assert pod.status is not None and pod.spec is not None and pod.metadata is not None
    status = (pod.status.container_statuses or [])[0]
    assert (status.name, status.ready, status.restart_count) == ("app", True, 0)
    assert status.image == pod.spec.containers[0].image == "registry.example/app:1"
    assert status.state is not None and status.state.running is not None
    assert status.state.running.started_at == NOW - timedelta(minutes=5)
    assert status.last_state is not None and status.last_state.terminated is None
    conditions = {c.type: c.status for c in pod.status.conditions or []}
    assert conditions["Ready"] == conditions["ContainersReady"] == "True"
    assert pod.metadata.owner_references is None


def test_a_pod_whose_image_does_not_pull_is_pending_and_never_ran(
    kube: KubeStandIn, core: CoreV1Api
) -> None:
    image = "registry.example/api:does-not-exist"
    kube.add_pod(
        NS,
        "api-y",
        labels={"app": "api"},
        ready=False,
        waiting_reason="ImagePullBackOff",
        image=image,
    )
    pod = read_pod(core, "api-y")
    assert pod.status is not None and pod.status.phase == "Pending"
    status = (pod.status.container_statuses or [])[0]
    assert status.state is not None and status.state.waiting is not None
    assert status.state.waiting.message == f'Back-off pulling image "{image}"'
    assert (status.image, status.image_id, status.container_id) == (image, "", None)
    assert status.last_state is not None and status.last_state.terminated is None


def test_warning_events_are_selected_by_type_and_involved_object(
    kube: KubeStandIn, core: CoreV1Api
) -> None:
    pod = kube.add_pod(
        NS,
        "api-x",
        labels={"app": "api"},
        ready=False,
        restarts=3,
        waiting_reason="CrashLoopBackOff",
    )
    last = NOW - timedelta(seconds=40)
    message = "Back-off restarting failed container api in pod api-x"
    kube.add_event(
        NS,
        "api-x.1842a7c1",
        involved_kind="Pod",
        involved_name="api-x",
        reason="BackOff",
        message=message,
        count=12,
        last_timestamp=last,
    )
    kube.add_event(
        NS,
        "api-x.1842a7c2",
        involved_kind="Pod",
        involved_name="api-x",
        reason="Pulled",
        message="Container image already present on machine",
        type="Normal",
    )
    kube.add_event(
        NS,
        "worker-0.1842a7c3",
        involved_kind="Pod",
        involved_name="worker-0",
        reason="Unhealthy",
        message="Readiness probe failed",
    )
    listed = core.list_namespaced_event(
        NS, field_selector="type=Warning,involvedObject.name=api-x", _request_timeout=TIMEOUT_S
    )
    assert [e.metadata.name for e in listed.items] == ["api-x.1842a7c1"]
    event = listed.items[0]
    assert (event.type, event.reason, event.message, event.count) == (
        "Warning",
        "BackOff",
        message,
        12,
    )
    assert isinstance(event.last_timestamp, datetime) and event.last_timestamp == last
    assert event.first_timestamp == last - timedelta(minutes=11)
    assert event.event_time is None
    involved = event.involved_object
    assert (involved.kind, involved.name, involved.namespace) == ("Pod", "api-x", NS)
    assert involved.uid == pod["metadata"]["uid"] and involved.field_path == "spec.containers{app}"
    assert event.source is not None and event.source.component == "kubelet"

    def names(field_selector: str) -> list[str]:
        found = core.list_namespaced_event(
            NS, field_selector=field_selector, _request_timeout=TIMEOUT_S
        )
        return [str(e.metadata.name) for e in found.items]

    assert names("involvedObject.kind==Pod,type!=Warning") == ["api-x.1842a7c2"]
    assert names("reason=Unhealthy") == ["worker-0.1842a7c3"]
    assert names("type=Warning,involvedObject.uid=") == ["worker-0.1842a7c3"]  # no such pod
    assert kube.calls.count(("", "events", "list")) == 4
    assert kube.requests[0].query["fieldSelector"] == "type=Warning,involvedObject.name=api-x"


def test_an_unsupported_field_label_is_400_as_the_api_server_answers(
    kube: KubeStandIn, core: CoreV1Api
) -> None:
    with pytest.raises(BadRequestException) as caught:
        core.list_namespaced_event(
            NS, field_selector="type=Warning,spec.foo=x", _request_timeout=TIMEOUT_S
        )
    status = json.loads(caught.value.body or "{}")
    assert (caught.value.status, status["reason"]) == (400, "BadRequest")
    assert status["message"] == "field label not supported: spec.foo"
    assert kube.calls == [("", "events", "list")]


def test_pods_are_read_only_a_delete_is_405(kube: KubeStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, "worker-0", labels={"app": "worker"})
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod("worker-0", NS, _request_timeout=TIMEOUT_S)
    status = json.loads(caught.value.body or "{}")
    assert (caught.value.status, status["reason"]) == (405, "MethodNotAllowed")
    assert kube.object("", "pods", NS, "worker-0") is not None
    assert kube.calls == [("", "pods", "delete")]


def test_a_limited_list_pages_with_a_continue_token(kube: KubeStandIn, core: CoreV1Api) -> None:
    for n in range(3):
        kube.add_pod(NS, f"{RS}-{n}", labels={"app": "api"}, owner_replicaset=RS)
    first = core.list_namespaced_pod(NS, limit=2, _request_timeout=TIMEOUT_S)
    assert [p.metadata.name for p in first.items if p.metadata] == [f"{RS}-0", f"{RS}-1"]
    assert first.metadata is not None and first.metadata.var_continue  # v37's name for it
    assert first.metadata.remaining_item_count == 1
    rest = core.list_namespaced_pod(
        NS, limit=2, _continue=first.metadata.var_continue, _request_timeout=TIMEOUT_S
    )
    assert [p.metadata.name for p in rest.items if p.metadata] == [f"{RS}-2"]
    assert rest.metadata is not None and rest.metadata.var_continue is None


def test_pod_seeding_refuses_what_no_cluster_would_report(kube: KubeStandIn) -> None:
    with pytest.raises(ValueError, match="would not own this pod"):
        kube.add_pod(NS, f"{RS}-x", labels={"app": "other"}, owner_replicaset=RS)
    with pytest.raises(ValueError, match="is not ready"):
        kube.add_pod(
            NS, "api-y", labels={"app": "api"}, restarts=1, waiting_reason="CrashLoopBackOff"
        )
    with pytest.raises(ValueError, match="restarts >= 1"):
        kube.add_pod(
            NS, "api-z", labels={"app": "api"}, ready=False, waiting_reason="CrashLoopBackOff"
        )
