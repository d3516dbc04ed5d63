"""People running an incident (issue 14): identities and roles, and the commands of
the HTTP API, through the real app, Redis, worker code and vendor stand-ins."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import (
    ADMIN,
    AUTH,
    RESPONDER,
    SEVERITIES,
    VIEWER,
    due,
    fetch,
    post,
    run_jobs,
    timeline,
    write_policy,
)
from tests.support.chat_standin import ChatStandIn
from tests.support.kube_standin import KubeStandIn
from tests.support.mitigation import MitigationBench, latency, route
from tests.support.pagerduty_standin import PagerDutyStandIn
from tests.support.statuspage_standin import StatuspageStandIn
from webhook.app import create_app
from workers.config import Settings

Vendors = tuple[PagerDutyStandIn, StatuspageStandIn, ChatStandIn]
FLOW = route("[page, notify, rollout_restart]")
COMMANDS: list[tuple[str, dict[str, str]]] = [
    ("notes", {"text": "checking the load balancer"}),
    ("assign", {"role": "ic", "person": "rui"}),
    ("status", {"status": "identified"}),
    ("severity", {"severity": "SEV1"}),
    ("acknowledge", {}),
    ("resolve", {}),
    ("reopen", {}),
]


def command(
    app: FlaskClient, incident_id: str, name: str, headers: dict[str, str], **body: str
) -> Any:
    return app.post(f"/api/v1/incidents/{incident_id}/{name}", json=body, headers=headers)


def test_one_incident_run_by_people_from_alert_to_hand_resolve(
    mitigation: MitigationBench, vendors: Vendors, queue: Queue
) -> None:
    pd, sp, chat = vendors
    kube: KubeStandIn = mitigation.kube
    app = mitigation.app(FLOW)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert len(pd.events("trigger")) == 1
    (proposed,) = [e for e in timeline(app, incident_id) if e["kind"] == "proposed"]

    steps = [
        ("assign", {"role": "ic", "person": "rui"}),
        ("notes", {"text": "p99 up since the 14:02 deploy"}),
        ("status", {"status": "identified"}),
        ("severity", {"severity": "SEV1"}),
    ]
    for name, body in steps:
        answer = command(app, incident_id, name, RESPONDER, **body)
        assert answer.status_code == 200, answer.json
    assert answer.json["incident"]["severity"] == "SEV1"
    run_jobs(queue)
    triggers = pd.events("trigger")
    assert len(triggers) == 2 and triggers[1]["dedup_key"] == incident_id
    (opened,) = sp.incidents.values()
    assert opened["status"] == "identified"  # the status people set is the page's status

    approved = app.post(f"/api/v1/actions/{proposed['proposal']}/approve", headers=RESPONDER)
    assert approved.status_code == 202, approved.json
    run_jobs(queue)
    assert kube.calls == [("apps", "deployments", "patch")]

    resolved = command(app, incident_id, "resolve", RESPONDER)
    assert resolved.status_code == 200, resolved.json
    run_jobs(queue)
    assert [e["event_action"] for e in pd.events()][-1] == "resolve"
    assert next(iter(sp.incidents.values()))["status"] == "resolved"

    people = [(e["kind"], e.get("by")) for e in timeline(app, incident_id) if e.get("by")]
    assert people == [
        ("assigned", "rui"),
        ("note", "rui"),
        ("status", "rui"),
        ("escalated", "rui"),
        ("approved", "rui"),
        ("resolved", "rui"),
    ]
    incident = app.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json
    assert (incident["status"], incident["roles"]) == ("resolved", {"ic": ["rui"]})
    escalated = [m.body["text"] for m in chat.messages if "Escalated to SEV1" in m.body["text"]]
    assert len(escalated) == 1 and "Status: identified; incident commander: rui" in escalated[0]


@pytest.mark.parametrize(("name", "body"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_alertmanager_credential_and_viewer_may_not_command(
    client: FlaskClient, redis: Redis, name: str, body: dict[str, str]
) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    before = redis.llen(f"aptest:incident:{incident_id}:timeline")
    for headers, status in ((AUTH, 403), (VIEWER, 403), ({}, 401)):
        answer = command(client, incident_id, name, headers, **body)
        assert answer.status_code == status, (headers, answer.json)
        assert answer.json["error"]["code"] in ("forbidden", "unauthorized")
    assert redis.llen(f"aptest:incident:{incident_id}:timeline") == before
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).status_code == 200
    assert client.get("/api/v1/actions", headers=VIEWER).status_code == 200
    assert client.get("/api/v1/incidents", headers=AUTH).status_code == 403


def test_declare_needs_a_responder_and_pages_at_once(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd, sp, chat = vendors
    body = {"title": "Checkout down", "severity": "SEV1", "service": "checkout"}
    assert live.post("/api/v1/incidents", json=body, headers=VIEWER).status_code == 403
    answer = live.post("/api/v1/incidents", json=body, headers=RESPONDER)
    assert answer.status_code == 201, answer.json
    incident = answer.json["incident"]
    assert (incident["severity"], incident["roles"]) == ("SEV1", {"ic": ["rui"]})
    run_jobs(queue)
    (trigger,) = pd.events("trigger")
    assert trigger["dedup_key"] == incident["id"]
    assert len(sp.incidents) == 1  # SEV1 is public
    assert chat.messages
    (declared,) = [e for e in timeline(live, incident["id"]) if e["kind"] == "declared"]
    assert (declared["by"], declared["service"]) == ("rui", "checkout")


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("notes", {}, "text"),
        ("notes", {"text": ""}, "text"),
        ("notes", {"text": 3}, "text"),
        ("notes", {"text": "x", "by": "mallory"}, "by"),
        ("assign", {"role": "boss", "person": "rui"}, "role"),
        ("assign", {"role": "ic", "person": "a\nb"}, "person"),
        ("status", {"status": "fixed"}, "status"),
        ("severity", {"severity": "SEV9"}, "severity"),
        ("notes", {"text": "x" * 5000}, "text"),
    ],
)
def test_bad_command_bodies_are_400_naming_the_field_and_change_nothing(
    client: FlaskClient, redis: Redis, name: str, body: dict[str, Any], field: str
) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    before = client.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json
    answer = client.post(f"/api/v1/incidents/{incident_id}/{name}", json=body, headers=RESPONDER)
    assert answer.status_code == 400, answer.json
    assert answer.json["error"]["details"]["field"] == field
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json == before


def test_not_json_and_unknown_incidents_are_clear_errors(client: FlaskClient) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    url = f"/api/v1/incidents/{incident_id}/notes"
    raw = client.post(url, data="{", headers=RESPONDER, content_type="application/json")
    assert (raw.status_code, raw.json["error"]["details"]["field"]) == (400, "body")
    listed = client.post(url, json=["text"], headers=RESPONDER)
    assert (listed.status_code, listed.json["error"]["details"]["field"]) == (400, "body")
    missing = command(client, "0123456789ab-zz", "notes", RESPONDER, text="x")
    assert (missing.status_code, missing.json["error"]["details"]["field"]) == (404, "incident_id")
    odd = command(client, "x" * 200, "notes", RESPONDER, text="x")
    assert (odd.status_code, odd.json["error"]["details"]["field"]) == (400, "incident_id")


def test_state_conflicts_are_409(client: FlaskClient) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    assert command(client, incident_id, "reopen", RESPONDER).status_code == 409
    assert command(client, incident_id, "severity", RESPONDER, severity="SEV2").status_code == 409
    assert (
        command(client, incident_id, "assign", RESPONDER, role="ic", person="ada").status_code
        == 200
    )
    again = command(client, incident_id, "assign", RESPONDER, role="ic", person="ada")
    assert again.status_code == 409
    assert command(client, incident_id, "resolve", RESPONDER).status_code == 200
    assert command(client, incident_id, "resolve", RESPONDER).status_code == 409
    assert command(client, incident_id, "notes", RESPONDER, text="after").status_code == 200


def test_smes_add_up_and_other_roles_are_replaced(client: FlaskClient) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    for role, person in (("sme", "ada"), ("sme", "vic"), ("scribe", "ada"), ("scribe", "vic")):
        assert (
            command(client, incident_id, "assign", RESPONDER, role=role, person=person).status_code
            == 200
        )
    roles = client.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json["roles"]
    assert roles == {"sme": ["ada", "vic"], "scribe": ["vic"]}
    (replaced,) = [e for e in timeline(client, incident_id) if "(was ada)" in e["message"]]
    assert replaced["kind"] == "assigned"


def test_a_second_rise_to_a_severity_after_a_downgrade_pages_again(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd = vendors[0]
    (incident_id,) = post(live, latency()).json["incidents"]
    run_jobs(queue)
    up = command(live, incident_id, "severity", RESPONDER, severity="SEV1").json["jobs"]
    down = command(live, incident_id, "severity", RESPONDER, severity="SEV2").json["jobs"]
    again = command(live, incident_id, "severity", RESPONDER, severity="SEV1").json["jobs"]
    assert not any(j.endswith("-page") for j in down)  # no page when it falls
    pages = [j for j in (*up, *again) if j.endswith("-page")]
    assert len(pages) == 2 and pages[0] != pages[1]
    run_jobs(queue)
    assert len(pd.events("trigger")) == 1 + 2


def test_resolve_after_a_reopen_resolves_the_page_again(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd = vendors[0]
    (incident_id,) = post(live, latency()).json["incidents"]
    run_jobs(queue)
    first = command(live, incident_id, "resolve", RESPONDER).json["jobs"]
    assert command(live, incident_id, "reopen", RESPONDER).status_code == 200
    second = command(live, incident_id, "resolve", RESPONDER).json["jobs"]
    assert set(first).isdisjoint(second)
    run_jobs(queue)
    assert len(pd.events("resolve")) == 2
    listed = live.get("/api/v1/incidents?status=resolved", headers=VIEWER).json["incidents"]
    assert [i["id"] for i in listed] == [incident_id]


def test_a_hand_resolve_keeps_a_still_firing_alert_from_redeclaring_at_once(
    client: FlaskClient,
) -> None:
    doc = latency()
    (incident_id,) = post(client, doc).json["incidents"]
    assert command(client, incident_id, "resolve", RESPONDER).status_code == 200
    doc["alerts"][0]["annotations"]["resent"] = "yes"  # Alertmanager's next resend
    assert post(client, doc).json["incidents"] == []


def test_reopen_is_refused_while_a_newer_incident_holds_the_same_alerts(
    client: FlaskClient,
) -> None:
    doc = latency()
    (first,) = post(client, doc).json["incidents"]
    assert command(client, first, "resolve", RESPONDER).status_code == 200
    refired = latency()
    refired["alerts"][0]["startsAt"] = "2030-01-01T00:00:00Z"  # a new instance: a new incident
    (second,) = post(client, refired).json["incidents"]
    assert second != first
    refused = command(client, first, "reopen", RESPONDER)
    assert refused.status_code == 409 and second in refused.json["error"]["message"]


def test_acknowledge_is_recorded_once_with_its_person(client: FlaskClient) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    answer = command(client, incident_id, "acknowledge", RESPONDER)
    assert answer.status_code == 200, answer.json
    again = command(client, incident_id, "acknowledge", ADMIN)
    assert again.status_code == 409 and "rui" in again.json["error"]["message"]
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json
    assert incident["acknowledged_by"] == "rui"
    assert incident["acknowledged_within_response_time"] is True


def test_rejecting_a_proposal_is_recorded_and_it_can_no_longer_be_approved(
    mitigation: MitigationBench, queue: Queue
) -> None:
    app = mitigation.app(FLOW)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (pending,) = app.get("/api/v1/actions", headers=VIEWER).json["actions"]
    assert (pending["incident_id"], pending["action"]) == (incident_id, "rollout_restart")
    assert "production/api" in pending["change"]
    rejected = app.post(
        f"/api/v1/actions/{pending['id']}/reject",
        json={"reason": "a deploy is rolling"},
        headers=RESPONDER,
    )
    assert rejected.status_code == 200, rejected.json
    assert app.get("/api/v1/actions", headers=VIEWER).json["actions"] == []
    late = app.post(f"/api/v1/actions/{pending['id']}/approve", headers=ADMIN)
    assert late.status_code == 404
    (entry,) = [e for e in timeline(app, incident_id) if e["kind"] == "rejected"]
    assert entry["by"] == "rui" and "a deploy is rolling" in entry["message"]
    assert fetch(queue, f"{incident_id}-approved-{pending['id']}") is None


def test_a_trusted_proxy_names_the_person_and_an_untrusted_one_is_ignored(
    settings: Settings, redis: Redis
) -> None:
    import ipaddress

    proxied = replace(settings, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    app = create_app(proxied, redis=redis, registry=CollectorRegistry()).test_client()
    (incident_id,) = post(app, latency()).json["incidents"]
    url = f"/api/v1/incidents/{incident_id}/notes"
    via = {"X-Forwarded-Email": "rui@example.com"}
    assert app.post(url, json={"text": "via sso"}, headers=via).status_code == 200
    stranger = app.post(url, json={"text": "x"}, headers={"X-Forwarded-Email": "eve@example.com"})
    assert stranger.status_code == 403
    elsewhere = {"REMOTE_ADDR": "10.1.2.3"}
    ignored = app.post(url, json={"text": "x"}, headers=via, environ_base=elsewhere)
    assert ignored.status_code == 401
    untrusted = create_app(settings, redis=redis, registry=CollectorRegistry()).test_client()
    assert untrusted.post(url, json={"text": "x"}, headers=via).status_code == 401
    (note,) = [e for e in timeline(app, incident_id) if e["kind"] == "note"]
    assert note["by"] == "rui"


COMMANDED = SEVERITIES.replace(
    "SEV1: {name: High, response_time: 15m,",
    "SEV1: {name: High, response_time: 15m, needs_commander: true,",
)


def _commanded(
    tmp_path: Path, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> FlaskClient:
    directory = write_policy(tmp_path / "policies", route("[notify]"), COMMANDED)
    monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
    monkeypatch.setenv("ALERTPILOT_DRY_RUN", "false")  # the worker's: chat really posts
    changed = replace(settings, policies_dir=directory, dry_run=False)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def test_a_sev1_without_a_commander_after_its_response_time_says_so(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
    vendors: Vendors,
) -> None:
    pd, _, chat = vendors
    monkeypatch.setenv("ALERTPILOT_CHAT_WEBHOOK_URL", chat.slack_url)
    monkeypatch.setenv("ALERTPILOT_CA_BUNDLE", pd.ca_path)
    app = _commanded(tmp_path, settings, redis, monkeypatch)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert command(app, incident_id, "severity", RESPONDER, severity="SEV1").status_code == 200
    run_jobs(queue)
    due(queue, 14 * 60)
    assert [e for e in timeline(app, incident_id) if e["kind"] == "no_commander"] == []
    due(queue, 2 * 60)
    (said,) = [e for e in timeline(app, incident_id) if e["kind"] == "no_commander"]
    assert f"alertpilot incidents assign {incident_id} ic NAME" in said["message"]
    needed = [m.body["text"] for m in chat.messages if "A person is needed" in m.body["text"]]
    assert len(needed) == 1 and "No incident commander" in needed[0]


def test_a_commander_assigned_in_time_silences_the_check(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _commanded(tmp_path, settings, redis, monkeypatch)
    (incident_id,) = post(app, latency()).json["incidents"]
    command(app, incident_id, "severity", RESPONDER, severity="SEV1")
    command(app, incident_id, "assign", RESPONDER, role="ic", person="ada")
    due(queue, 16 * 60)
    kinds = [e["kind"] for e in timeline(app, incident_id)]
    assert "no_commander" not in kinds and "escalated" in kinds


def test_only_an_admin_pauses_and_resumes_mitigations(client: FlaskClient, redis: Redis) -> None:
    pause = "/api/v1/mitigations/pause"
    for headers, status in ((RESPONDER, 403), (VIEWER, 403), (AUTH, 403), ({}, 401)):
        assert client.post(pause, json={"reason": "x"}, headers=headers).status_code == status
    assert redis.exists("aptest:mitigations:paused") == 0
    assert client.post(pause, json={}, headers=ADMIN).json["error"]["details"]["field"] == "reason"
    answer = client.post(pause, json={"reason": "game day"}, headers=ADMIN)
    assert answer.json == {"paused": True, "reason": "game day (paused by ada)"}
    state = client.get("/api/v1/mitigations", headers=VIEWER).json
    assert state == {"paused": True, "reason": "game day (paused by ada)"}
    assert client.post("/api/v1/mitigations/resume", headers=RESPONDER).status_code == 403
    assert client.post("/api/v1/mitigations/resume", headers=ADMIN).json["paused"] is False
    assert redis.exists("aptest:mitigations:paused") == 0


ADMIN_ONLY = route("[page, notify, {rollout_restart: {approver: admin}}]")


def test_a_route_can_keep_an_approval_to_admins(mitigation: MitigationBench, queue: Queue) -> None:
    app = mitigation.app(ADMIN_ONLY)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (pending,) = app.get("/api/v1/actions", headers=VIEWER).json["actions"]
    url = f"/api/v1/actions/{pending['id']}/approve"
    refused = app.post(url, headers=RESPONDER)
    assert refused.status_code == 403 and "admin" in refused.json["error"]["message"]
    assert app.get("/api/v1/actions", headers=VIEWER).json["actions"] == [pending]  # unchanged
    assert app.post(url, headers=ADMIN).status_code == 202
    run_jobs(queue)
    assert mitigation.kube.calls == [("apps", "deployments", "patch")]
    (approved,) = [e for e in timeline(app, incident_id) if e["kind"] == "approved"]
    assert approved["by"] == "ada"


def test_a_kill_switch_variable_that_is_not_a_boolean_holds_mitigations(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in ALERTPILOT_MITIGATIONS_PAUSED is read per request and per job: it must
    neither fail every request nor let mitigations run."""
    monkeypatch.setenv("ALERTPILOT_MITIGATIONS_PAUSED", "maybe")
    state = client.get("/api/v1/mitigations", headers=VIEWER)
    assert state.status_code == 200
    assert state.json["paused"] is True and "'maybe'" in state.json["reason"]
