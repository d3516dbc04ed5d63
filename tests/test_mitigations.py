"""scale_up against a stand-in Kubernetes API, through the real client and the guardrails."""

from __future__ import annotations

import os
import re
import threading
from typing import Any

import pytest
from flask.testing import FlaskClient
from kubernetes import client, config
from redis import Redis
from werkzeug.serving import make_server

from tests.conftest import (
    ADMIN,
    REDIS_URL,
    TOKEN,
    due,
    fetch,
    post,
    run_jobs,
    serving,
    timeline,
)
from tests.support.alertmanager import run_alertmanager
from tests.support.mitigation import MitigationBench, entries, latency, resolved, route
from tests.test_e2e_alertmanager import wait_for
from webhook import cli
from workers import approvals
from workers.approvals import approve
from workers.config import Settings
from workers.handlers import build_handlers
from workers.incident.keys import Keys
from workers.jobs.dispatch import execute


def test_scale_up_raises_replicas_once_despite_resends(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app()
    (incident_id,) = post(app, latency()).json["incidents"]
    post(app, latency())  # Alertmanager's resend
    run_jobs(queue)
    run_jobs(queue)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    patches = [c for c in kube.calls if c[2] in ("patch", "update")]
    assert patches == [("apps", "deployments/scale", "update")]
    (done,) = entries(app, incident_id, "scale_up")
    assert (done["kind"], done["message"]) == ("succeeded", "scaled production/api from 4 to 8")


def test_scale_up_under_an_hpa_raises_its_min_replicas(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    kube.add_hpa("production", "api", target_deployment="api", min_replicas=4, max_replicas=30)
    app = mitigation.app()
    post(app, latency())
    run_jobs(queue)
    assert kube.hpa("production", "api")["spec"]["minReplicas"] == 8
    assert ("apps", "deployments/scale", "update") not in kube.calls


@pytest.mark.parametrize(
    ("guardrails", "reason"),
    [
        ({"allow": {"namespaces": ["staging"]}}, "namespace 'production' is not in the mitigation"),
        (
            {"allow": {"namespaces": ["production"], "workloads": ["web"]}},
            "production/api is not in",
        ),
    ],
    ids=["namespace", "workload"],
)
def test_refused_mitigations_change_nothing_and_say_why(
    mitigation: MitigationBench, guardrails: dict[str, Any], reason: str
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(**guardrails)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (entry,) = entries(app, incident_id, "scale_up")
    assert entry["kind"] == "blocked" and reason in entry["message"]
    assert kube.calls == []
    assert kube.deployment("production", "api")["spec"]["replicas"] == 4


def test_budget_per_hour_holds_across_incidents(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(budget_per_hour=1)
    post(app, latency("api"))
    (second,) = post(app, latency("api-canary")).json["incidents"]
    run_jobs(queue)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    assert kube.deployment("production", "api-canary")["spec"]["replicas"] == 2
    (entry,) = entries(app, second, "scale_up")
    assert entry["kind"] == "blocked" and "budget" in entry["message"]


def test_kill_switch_blocks_every_mitigation(mitigation: MitigationBench) -> None:
    kube, redis, queue = mitigation.kube, mitigation.redis, mitigation.queue
    redis.set("aptest:mitigations:paused", "incident review in progress")
    app = mitigation.app()
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (entry,) = entries(app, incident_id, "scale_up")
    assert entry["message"] == "mitigations are paused: incident review in progress"
    assert kube.calls == []


def test_cooldown_stops_a_second_incident_on_the_same_target(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app()
    post(app, latency())
    run_jobs(queue)
    other = latency()
    other["groupKey"] = '{}:{deployment="api", other="1"}'
    other["alerts"][0]["fingerprint"] = "0000000000000abc"
    other["alerts"][0]["labels"]["alertname"] = "HighLatency"
    other["alerts"][0]["labels"]["replica"] = "b"
    (second,) = post(app, other).json["incidents"]
    run_jobs(queue)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    (entry,) = entries(app, second, "scale_up")
    assert entry["kind"] == "blocked" and "cooling down" in entry["message"]


def test_revert_after_the_stabilisation_window_restores_an_untouched_target(
    mitigation: MitigationBench,
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(stabilisation="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    post(app, resolved(latency()))
    run_jobs(queue)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8  # not before the window
    due(queue, 1.1)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 4
    (revert,) = [
        e
        for e in timeline(app, incident_id)
        if e.get("action") == "scale_up" and e["transition"] == "resolved"
    ]
    assert revert["message"] == "reverted production/api from 8 to 4"


def test_revert_leaves_a_target_a_person_changed_since(mitigation: MitigationBench) -> None:
    kube, queue, tmp_path = mitigation.kube, mitigation.queue, mitigation.tmp_path
    app = mitigation.app(stabilisation="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    # A person scales it by hand (kubectl scale), through the same API.
    api = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        "api", "production", {"spec": {"replicas": 12}}
    )
    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 1.1)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 12
    (revert,) = [
        e
        for e in timeline(app, incident_id)
        if e.get("action") == "scale_up" and e["transition"] == "resolved"
    ]
    assert revert["kind"] == "skipped"
    assert "it holds 12, not the 8 alertpilot set" in revert["message"]


@pytest.mark.e2e
def test_alertmanager_to_kubernetes_scales_once_and_reverts_after_the_window(
    live: FlaskClient, mitigation: MitigationBench
) -> None:
    """Real Alertmanager -> alertpilot -> stand-in API server: 4 -> 8 once, then back to 4."""
    kube, queue, tmp_path = mitigation.kube, mitigation.queue, mitigation.tmp_path
    app = mitigation.app(stabilisation="1s").application
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/v1/alertmanager"
    registry = app.extensions["alertpilot"].metrics.registry

    def received(outcome: str) -> float:
        labels = {"outcome": outcome}
        return registry.get_sample_value("alertpilot_notifications_received_total", labels) or 0.0

    try:
        with run_alertmanager(url, bearer_token=TOKEN, workdir=tmp_path / "am") as am:
            labels = {"alertname": "HighLatency", "service": "api"}
            alert = am.firing({**labels, "namespace": "production", "deployment": "api"})
            am.post_alerts([alert])
            wait_for("a repeat notification", lambda: received("duplicate") >= 1, timeout=30)
            run_jobs(queue)
            assert kube.deployment("production", "api")["spec"]["replicas"] == 8
            am.post_alerts([am.resolved(alert)])
            wait_for(
                "the resolve",
                lambda: live.get("/api/v1/incidents?status=resolved", headers=ADMIN).json[
                    "incidents"
                ],
            )
            run_jobs(queue)
            due(queue, 1.1)
    finally:
        server.shutdown()
    assert kube.deployment("production", "api")["spec"]["replicas"] == 4
    patches = [c for c in kube.calls if c == ("apps", "deployments/scale", "update")]
    assert len(patches) == 2  # up once, down once


def test_pause_and_resume_commands_flip_the_kill_switch(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("ALERTPILOT_KEY_PREFIX", "aptest:")
    monkeypatch.setenv("USER", "jane")
    assert cli.main(["mitigations", "pause", "--reason", "game day"]) == 0
    assert redis.get("aptest:mitigations:paused") == b"game day (paused by jane)"
    assert cli.main(["mitigations", "resume"]) == 0
    assert redis.exists("aptest:mitigations:paused") == 0


def test_scale_up_queued_before_a_resolve_does_not_call_the_api(
    mitigation: MitigationBench,
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app()
    (incident_id,) = post(app, latency()).json["incidents"]
    post(app, resolved(latency()))  # resolved before any worker took the job
    run_jobs(queue)
    assert kube.calls == []
    (skipped,) = [
        e
        for e in timeline(app, incident_id)
        if e.get("action") == "scale_up" and e["transition"] == "declared"
    ]
    assert skipped["kind"] == "skipped"


def test_two_workers_scaling_one_workload_change_it_once(mitigation: MitigationBench) -> None:
    """Two incidents point at production/api; two workers take their jobs at the same time."""
    kube, redis, queue = mitigation.kube, mitigation.redis, mitigation.queue
    app = mitigation.app()
    first = latency()
    second = latency()
    second["groupKey"] = '{}:{deployment="api", shard="2"}'
    second["alerts"][0]["fingerprint"] = "00000000000000b2"
    jobs = [post(app, doc).json["jobs"][0] for doc in (first, second)]
    payloads = [fetch(queue, job_id).args[0] for job_id in jobs]  # type: ignore[union-attr]
    queue.empty()
    handlers = build_handlers(Settings.from_env(os.environ), redis, "aptest:", queue)
    outcomes: list[str] = []

    def worker(index: int) -> None:
        decision = execute(redis, payloads[index], handlers, job_id=jobs[index])
        outcomes.append(decision.outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["blocked", "succeeded"]
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    assert kube.calls.count(("apps", "deployments/scale", "update")) == 1


RESTART = route("[rollout_restart]")


def test_rollout_restart_is_only_proposed_until_approved(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(RESTART)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert kube.calls == []
    (proposed,) = [e for e in timeline(app, incident_id) if e["kind"] == "proposed"]
    proposal = proposed["proposal"]
    assert f"alertpilot actions approve {proposal}" in proposed["message"]

    response = app.post(f"/api/v1/actions/{proposal}/approve", headers=ADMIN)
    assert response.status_code == 202
    run_jobs(queue)
    annotations = kube.deployment("production", "api")["spec"]["template"]["metadata"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations["annotations"]
    assert kube.calls == [("apps", "deployments", "patch")]
    # A proposal is used once.
    again = app.post(f"/api/v1/actions/{proposal}/approve", headers=ADMIN)
    assert again.status_code == 404
    assert again.json["error"]["details"]["field"] == "id"


def test_approval_needs_credentials_and_an_unknown_proposal_is_404(
    mitigation: MitigationBench,
) -> None:
    app = mitigation.app(RESTART)
    assert app.post("/api/v1/actions/nope/approve").status_code == 401
    assert app.post("/api/v1/actions/nope/approve", headers=ADMIN).status_code == 404


def test_cli_approves_a_proposal_through_the_api(
    mitigation: MitigationBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(RESTART)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (proposed,) = [e for e in timeline(app, incident_id) if e["kind"] == "proposed"]
    monkeypatch.setenv("ALERTPILOT_TOKEN", "ap_test_rui")
    with serving(app.application) as url:
        approve = ["actions", "approve", proposed["proposal"], "--url", url]
        assert cli.main(approve) == 0
        run_jobs(queue)
        assert kube.calls == [("apps", "deployments", "patch")]
        assert cli.main(approve) == 1  # used once
    (approved,) = [e for e in timeline(app, incident_id) if e["kind"] == "approved"]
    assert approved["by"] == "rui"


LIMIT = route("[{rate_limit: {rps: 50, connections: 20}}]")


def test_rate_limit_annotates_the_ingress_and_takes_it_back_after_resolve(
    mitigation: MitigationBench,
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    kube.add_ingress("production", "api", annotations={"team": "api"})
    app = mitigation.app(LIMIT, stabilisation="1s")
    post(app, latency())
    run_jobs(queue)
    annotations = kube.ingress("production", "api")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/limit-rps"] == "50"
    assert annotations["nginx.ingress.kubernetes.io/limit-connections"] == "20"
    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 1.1)
    assert kube.ingress("production", "api")["metadata"]["annotations"] == {"team": "api"}
    ingress_calls = {c for c in kube.calls if c[1] == "ingresses"}
    assert ingress_calls == {("networking.k8s.io", "ingresses", v) for v in ("get", "patch")}


def test_two_people_approving_at_once_queue_the_job_once(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(RESTART)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (proposed,) = [e for e in timeline(app, incident_id) if e["kind"] == "proposed"]
    keys = Keys("aptest:")
    answers: list[str | None] = []
    start = threading.Barrier(4)

    def approver(name: str) -> None:
        own = Redis.from_url(REDIS_URL)
        start.wait(timeout=10)
        answers.append(approve(own, queue, keys, proposed["proposal"], by=name))

    threads = [threading.Thread(target=approver, args=(f"by p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    job_id = f"{incident_id}-approved-{proposed['proposal']}"
    assert answers.count(None) == 3 and [a for a in answers if a] == [job_id]
    run_jobs(queue)
    assert kube.calls.count(("apps", "deployments", "patch")) == 1
    approvals = [e for e in timeline(app, incident_id) if e["kind"] == "approved"]
    assert len(approvals) == 1


def test_proposal_ids_are_safe_on_a_command_line(redis: Redis) -> None:
    """token_urlsafe ids start with "-" one time in 64, and `actions approve -x` is an option."""
    ids = [approvals.propose(redis, Keys("aptest:"), {}, "nothing", expires=5) for _ in range(500)]
    assert len(set(ids)) == 500
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
