"""A route's runbook reads Kubernetes (issue 16): workload_status and rollout_history
against the API stand-in through the official client, get and list only and within the
Role deploy/targets/production renders; their findings reach chat ("Recent changes",
"Workload"), the incident API and the page. The declared chat message waits for the
first run, at most DECLARED_MESSAGE_WAIT seconds; the page never waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import (
    REPO,
    RESPONDER,
    VIEWER,
    _BurstWorker,
    due,
    post,
    run_jobs,
    timeline,
)
from tests.support.chat_standin import ChatStandIn
from tests.support.kube_standin import KubeStandIn
from tests.support.mitigation import MitigationBench, latency, resolved, route
from tests.support.pagerduty_standin import PagerDutyStandIn
from tests.support.rbac import allows, granted, kustomize
from tests.support.rbac import calls as rbac_calls
from workers.incident.transitions import DECLARED_MESSAGE_WAIT
from workers.jobs.contract import lane_queue

RUNBOOK = """\
title: API latency
url: https://runbooks.example/api-latency
steps:
  - type: workload_status
  - type: rollout_history
    within: 1h
"""
ROUTES = route("[page, notify]").replace(
    "    severity: SEV2\n", "    severity: SEV2\n    runbook: api\n"
)


def _template(version: str) -> dict[str, Any]:
    spec = {"containers": [{"name": "web", "image": f"registry.example/web:{version}"}]}
    return {"metadata": {"labels": {"app": "web"}, "annotations": {}}, "spec": spec}


def troubled(kube: KubeStandIn) -> None:
    """production/web: revision 2 (web:1.4.2) rolled out 12 minutes ago after revision 1
    three days old; one of its pods crash-loops, with the kubelet's BackOff warning."""
    now = datetime.now(UTC)
    kube.add_deployment("production", "web", replicas=4, revision=2)
    kube.add_replicaset(
        "production", "web-aaaa01", "web", 1, _template("1.4.1"), now - timedelta(days=3)
    )
    kube.add_replicaset(
        "production", "web-aaaa02", "web", 2, _template("1.4.2"), now - timedelta(minutes=12)
    )
    for n in range(3):
        kube.add_pod(
            "production", f"web-aaaa02-ok{n}", labels={"app": "web"}, owner_replicaset="web-aaaa02"
        )
    kube.add_pod(
        "production",
        "web-aaaa02-bad",
        labels={"app": "web"},
        owner_replicaset="web-aaaa02",
        ready=False,
        restarts=6,
        waiting_reason="CrashLoopBackOff",
        last_terminated_reason="OOMKilled",
    )
    kube.add_event(
        "production",
        "web-aaaa02-bad.1",
        involved_kind="Pod",
        involved_name="web-aaaa02-bad",
        reason="BackOff",
        message="Back-off restarting failed container web in pod web-aaaa02-bad",
        count=12,
    )
    kube.add_event(  # about something else in the namespace: not shown
        "production",
        "billing.1",
        involved_kind="Pod",
        involved_name="billing-77-x",
        reason="FailedMount",
        message="MountVolume.SetUp failed",
    )


@pytest.fixture
def kube_api(mitigation: MitigationBench) -> KubeStandIn:
    troubled(mitigation.kube)
    return mitigation.kube


def _app(mitigation: MitigationBench, runbook: str = RUNBOOK) -> FlaskClient:
    folder = mitigation.tmp_path / "policies" / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api.yaml").write_text(runbook)
    return mitigation.app(ROUTES)


def _runs(app: FlaskClient, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in timeline(app, incident_id) if e["kind"] == "runbook"]


def test_workload_and_rollouts_reach_the_timeline_and_the_declared_message(
    mitigation: MitigationBench,
    kube_api: KubeStandIn,
    live: FlaskClient,
    vendors: tuple[PagerDutyStandIn, Any, ChatStandIn],
) -> None:
    pagerduty, _, chat = vendors
    app = _app(mitigation)
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)

    (ran,) = _runs(app, incident_id)
    results = {r["name"]: r for r in ran["results"]}
    workload = results["workload"]
    assert not workload["ok"]
    assert workload["summary"].startswith("production/web: 3/4 ready")
    assert (
        "pod web-aaaa02-bad not ready (CrashLoopBackOff, last ended OOMKilled, 6 restarts)"
        in (workload["summary"])
    )
    assert "BackOff x12 on pod web-aaaa02-bad" in workload["summary"]
    assert "billing" not in workload["summary"]
    changes = results["recent_changes"]
    assert "revision 2 (current) 12m ago: registry.example/web:1.4.2" in changes["summary"]
    assert changes["summary"].endswith("consider rollback")
    assert "revision 1" not in changes["summary"]  # three days old: outside the hour

    (declared,) = [m.body["text"] for m in chat.messages if "declared" in m.body["text"]]
    lines = declared.splitlines()
    assert any(x.startswith("Recent changes: production/web: rolled out") for x in lines), declared
    assert any(x.startswith("Workload: production/web: 3/4 ready") for x in lines), declared

    # Read only, and nothing the rendered Role of deploy/targets/production does not allow.
    assert {verb for _, _, verb in kube_api.calls} <= {"get", "list"}
    rules = granted(kustomize(REPO / "deploy" / "targets" / "production"), "production")
    assert all(allows(rules, call) for call in rbac_calls(kube_api)), rbac_calls(kube_api)
    assert ("", "pods", "list") in kube_api.calls and ("", "events", "list") in kube_api.calls

    # The page links the runbook's document, and the API shows the run.
    (event,) = pagerduty.events("trigger")
    assert {"href": "https://runbooks.example/api-latency", "text": "Runbook"} in event["links"]
    shown = app.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json["runbook"]
    assert shown["name"] == "api" and shown["runs"] == 1
    assert {r["name"] for r in shown["latest"]["results"]} == {"workload", "recent_changes"}


def test_the_declared_message_waits_for_the_run_and_goes_without_it_at_the_latest(
    mitigation: MitigationBench,
    kube_api: KubeStandIn,
    live: FlaskClient,
    vendors: tuple[PagerDutyStandIn, Any, ChatStandIn],
    queue: Queue,
) -> None:
    pagerduty, _, chat = vendors
    app = _app(mitigation)
    post(app, latency("web"))
    # No worker for the bulk lane yet: the page goes, the chat message waits.
    for lane in ("urgent", "comms"):
        run_lane(queue, lane)
    assert [e["event_action"] for e in pagerduty.events()] == ["trigger"]
    assert chat.messages == []
    due(queue, 1)  # the runbook job runs (bulk lane) and releases the message at once
    assert [m.body["text"].split("*")[1] for m in chat.messages] == ["SEV2 declared"]
    # The message's own time comes: the job finds its work done, nothing goes twice.
    due(queue, DECLARED_MESSAGE_WAIT)
    assert len(chat.messages) == 1


def test_a_run_that_never_comes_does_not_hold_the_message_past_its_time(
    mitigation: MitigationBench,
    kube_api: KubeStandIn,
    live: FlaskClient,
    vendors: tuple[PagerDutyStandIn, Any, ChatStandIn],
    queue: Queue,
) -> None:
    _, _, chat = vendors
    app = _app(mitigation)
    post(app, latency("web"))
    bulk = queue.connection.lrange(lane_queue(queue, "").key, 0, -1)
    assert bulk, "the runbook job is queued in the bulk lane"
    queue.connection.delete(lane_queue(queue, "").key)  # its worker died with it, say
    run_lane(queue, "comms")
    assert chat.messages == []
    due(queue, DECLARED_MESSAGE_WAIT)
    (message,) = [m.body["text"] for m in chat.messages]
    assert "SEV2 declared" in message and "Recent changes" not in message


def test_resolve_takes_a_last_snapshot_and_the_resolved_message_shows_it(
    mitigation: MitigationBench,
    kube_api: KubeStandIn,
    live: FlaskClient,
    vendors: tuple[PagerDutyStandIn, Any, ChatStandIn],
) -> None:
    _, _, chat = vendors
    app = _app(mitigation)
    doc = latency("web")
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(mitigation.queue)
    post(app, resolved(doc))
    run_jobs(mitigation.queue)
    assert [r["when"] for r in _runs(app, incident_id)] == ["declared", "resolved"]
    (done,) = [m.body["text"] for m in chat.messages if m.body["text"].startswith(":white_check")]
    assert "Workload: production/web: 3/4 ready" in done


def test_a_person_runs_the_runbook_on_demand_and_reads_it_by_route(
    mitigation: MitigationBench, kube_api: KubeStandIn
) -> None:
    app = _app(mitigation)
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)
    asked = app.post(f"/api/v1/incidents/{incident_id}/runbook", headers=RESPONDER)
    assert asked.status_code == 200, asked.json
    assert any(j.startswith(f"{incident_id}-runbook-asked-") for j in asked.json["jobs"])
    assert asked.json["entries"][0]["message"] == "runbook api asked for by rui"
    run_jobs(mitigation.queue)
    runs = _runs(app, incident_id)
    assert [r["when"][:6] for r in runs] == ["declar", "asked-"]
    # A viewer may read, not run.
    refused = app.post(f"/api/v1/incidents/{incident_id}/runbook", headers=VIEWER)
    assert refused.status_code == 403
    shown = app.get("/api/v1/routes/api-latency/runbook", headers=VIEWER)
    assert shown.status_code == 200
    assert shown.json["name"] == "api"
    assert [s["type"] for s in shown.json["runbook"]["steps"]] == [
        "workload_status",
        "rollout_history",
    ]
    missing = app.get("/api/v1/routes/default/runbook", headers=VIEWER)
    assert missing.status_code == 404 and missing.json["error"]["details"]["field"] == "route"
    bad = app.get("/api/v1/routes/no%20such/runbook", headers=VIEWER)
    assert bad.status_code == 400 and bad.json["error"]["details"]["field"] == "route"


def test_a_namespace_the_policy_does_not_allow_is_never_read(
    mitigation: MitigationBench, kube_api: KubeStandIn
) -> None:
    app = _app(mitigation)
    (incident_id,) = post(app, latency("web", namespace="kube-system")).json["incidents"]
    run_jobs(mitigation.queue)
    (ran,) = _runs(app, incident_id)
    for result in ran["results"]:
        assert not result["ok"]
        assert "'kube-system' is not one alertpilot may read" in result["summary"]
    assert kube_api.calls == []


def test_a_failing_api_server_is_a_step_result(
    mitigation: MitigationBench, kube_api: KubeStandIn
) -> None:
    kube_api.forbid("pods", "list")
    kube_api.fail_next("list", "replicasets", 503)
    app = _app(mitigation)
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)
    (ran,) = _runs(app, incident_id)
    results = {r["name"]: r for r in ran["results"]}
    assert "Kubernetes answered 403 to list pods production" in results["workload"]["summary"]
    assert "Kubernetes answered 503 to list replicasets" in results["recent_changes"]["summary"]


def run_lane(queue: Queue, name: str) -> None:
    """Run what one lane holds, as a worker that listens to that lane only."""
    lane = lane_queue(queue, name)
    _BurstWorker([lane], connection=queue.connection, serializer=JSONSerializer).work(burst=True)


def test_a_recent_rollout_names_the_rollback_waiting_for_a_person(
    mitigation: MitigationBench, kube_api: KubeStandIn
) -> None:
    folder = mitigation.tmp_path / "policies" / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api.yaml").write_text(RUNBOOK)
    routes = route("[rollback]").replace(
        "    severity: SEV2\n", "    severity: SEV2\n    runbook: api\n"
    )
    app = mitigation.app(routes, allow={"namespaces": ["production"], "workloads": ["web"]})
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)
    (proposal,) = app.get("/api/v1/actions", headers=VIEWER).json["actions"]
    (ran,) = _runs(app, incident_id)
    (changes,) = [r for r in ran["results"] if r["name"] == "recent_changes"]
    assert changes["summary"].startswith(
        f"rollback proposed (alertpilot actions approve {proposal['id']}); production/web:"
    )


def test_a_persons_escalation_runs_the_runbook_again_with_its_fields(
    mitigation: MitigationBench, kube_api: KubeStandIn
) -> None:
    app = _app(mitigation)
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)
    raised = app.post(
        f"/api/v1/incidents/{incident_id}/severity", json={"severity": "SEV1"}, headers=RESPONDER
    )
    assert raised.status_code == 200, raised.json
    (entry,) = [e for e in raised.json["entries"] if e["kind"] == "escalated"]
    assert (entry["previous"], entry["severity"]) == ("SEV2", "SEV1")
    assert any("-runbook-" in job for job in raised.json["jobs"])
    run_jobs(mitigation.queue)
    assert [r["when"] for r in _runs(app, incident_id)] == ["declared", "escalated-SEV1"]
    lowered = app.post(
        f"/api/v1/incidents/{incident_id}/severity", json={"severity": "SEV2"}, headers=RESPONDER
    )
    assert not any("-runbook-" in job for job in lowered.json["jobs"])  # better: no new run
