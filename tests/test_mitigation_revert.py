"""What happens to a mitigation after its incident: revert opt-out, HPA reverts, expired proposals.

Against the stand-in Kubernetes API (tests/support/kube_standin.py), through the official client,
the guardrails and the real job dispatch, as in tests/test_mitigations.py (whose `mitigation`
fixture, from tests/conftest.py, these tests share).
"""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from kubernetes import client, config
from rq import Queue

from tests.conftest import ADMIN, due, post, queued_ids, run_jobs, timeline
from tests.support.clock import AheadClock
from tests.support.kube_standin import KubeStandIn
from tests.support.mitigation import MitigationBench, latency, resolved, route
from workers.incident.keys import Keys

KEEP = route("[{scale_up: {by: 4, max_replicas: 20, revert: false}}]")
SHORT_APPROVAL = route("[{rollout_restart: {approval_expires_seconds: 1}}]")
SCALE_PATCH = ("apps", "deployments/scale", "update")
HPA_PATCH = ("autoscaling", "horizontalpodautoscalers", "patch")
SECONDS = {"s": 1, "m": 60, "h": 3600}


def reverts(app: FlaskClient, incident_id: str) -> list[dict[str, Any]]:
    """The scale_up entries the resolve's (revert) job wrote."""
    return [
        e
        for e in timeline(app, incident_id)
        if e.get("action") == "scale_up" and e.get("transition") == "resolved"
    ]


def test_revert_false_keeps_the_scale_up_after_the_window(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(KEEP, stabilisation="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    calls_after_scale_up = kube.calls
    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 1.1)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    assert kube.calls.count(SCALE_PATCH) == 1
    assert kube.calls == calls_after_scale_up  # not even a read after the resolve
    (resolution,) = [e for e in timeline(app, incident_id) if e["kind"] == "resolved"]
    assert "scale_up" not in resolution["queued"]
    assert reverts(app, incident_id) == []


def test_revert_under_an_hpa_puts_its_min_replicas_back(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    kube.add_hpa("production", "api", target_deployment="api", min_replicas=4, max_replicas=30)
    app = mitigation.app(stabilisation="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert kube.hpa("production", "api")["spec"]["minReplicas"] == 8
    post(app, resolved(latency()))
    run_jobs(queue)
    assert kube.hpa("production", "api")["spec"]["minReplicas"] == 8  # not before the window
    due(queue, 1.1)
    assert kube.hpa("production", "api")["spec"]["minReplicas"] == 4
    assert kube.calls.count(HPA_PATCH) == 2  # up once, back once
    assert SCALE_PATCH not in kube.calls  # the HPA owns the replicas: never the scale
    (revert,) = reverts(app, incident_id)
    assert (revert["kind"], revert["message"]) == (
        "succeeded",
        "reverted HPA production/api minReplicas from 8 to 4",
    )


def test_revert_under_an_hpa_leaves_a_min_replicas_a_person_changed(
    mitigation: MitigationBench,
) -> None:
    kube, queue, tmp_path = mitigation.kube, mitigation.queue, mitigation.tmp_path
    kube.add_hpa("production", "api", target_deployment="api", min_replicas=4, max_replicas=30)
    app = mitigation.app(stabilisation="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    # A person raises the floor further by hand (kubectl patch hpa), through the same API.
    path = str(tmp_path / "kubeconfig")
    api = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
    try:
        client.AutoscalingV2Api(api).patch_namespaced_horizontal_pod_autoscaler(
            "api", "production", {"spec": {"minReplicas": 10}}
        )
    finally:
        api.close()
    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 1.1)
    assert kube.hpa("production", "api")["spec"]["minReplicas"] == 10
    assert kube.calls.count(HPA_PATCH) == 2  # alertpilot's raise and the person's
    (revert,) = reverts(app, incident_id)
    assert revert["kind"] == "skipped"
    assert "it holds 10, not the 8 alertpilot set" in revert["message"]


def proposed_restart(
    app: FlaskClient, queue: Queue, stand_in: KubeStandIn
) -> tuple[str, dict[str, Any]]:
    """Declare the incident; (its id, the rollout_restart's "proposed" timeline entry)."""
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert stand_in.calls == []
    (proposed,) = [e for e in timeline(app, incident_id) if e["kind"] == "proposed"]
    return incident_id, proposed


def test_an_expired_rollout_restart_proposal_cannot_be_approved(
    mitigation: MitigationBench, ahead_clock: AheadClock
) -> None:
    kube, redis, queue = mitigation.kube, mitigation.redis, mitigation.queue
    app = mitigation.app(SHORT_APPROVAL)
    incident_id, proposed = proposed_restart(app, queue, kube)
    key = Keys(mitigation.settings.key_prefix).proposal(proposed["proposal"])
    left_ms = redis.pttl(key)  # -2: already expired (the declare took over a second)
    assert left_ms == -2 or 0 < left_ms <= 1000  # the route's expiry, not the 30 minute default
    ahead_clock.advance(1.0)  # the window is alertpilot's clock's, not Redis's TTL

    response = app.post(f"/api/v1/actions/{proposed['proposal']}/approve", headers=ADMIN)
    assert response.status_code == 404
    assert response.json is not None and response.json["error"]["details"]["field"] == "id"
    assert queued_ids(queue) == []
    run_jobs(queue)
    assert kube.calls == []
    annotations = kube.deployment("production", "api")["spec"]["template"]["metadata"]
    assert "kubectl.kubernetes.io/restartedAt" not in annotations["annotations"]
    assert [e for e in timeline(app, incident_id) if e["kind"] == "approved"] == []


def test_a_proposal_states_its_approval_window(mitigation: MitigationBench) -> None:
    """A window under a minute is not stated as "approve within 0m"."""
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(SHORT_APPROVAL)
    _, proposed = proposed_restart(app, queue, kube)
    stated = re.search(r"approve within ((?:\d+[smh])+)", proposed["message"])
    assert stated is not None, proposed["message"]
    parts = re.findall(r"(\d+)([smh])", stated[1])
    assert sum(int(n) * SECONDS[unit] for n, unit in parts) == 1, proposed["message"]
