"""A hostile review of people running an incident (docs/responders.md): authorization,
odd input, races, job-id collisions, exactly-once effects, Redis down, the users file.

Tests named in the review report as FAILING prove a defect; the others guard behaviour."""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import logging
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import (
    ADMIN,
    AUTH,
    REPO,
    RESPONDER,
    SEVERITIES,
    TOKEN,
    VIEWER,
    due,
    fixture,
    lanes,
    post,
    run_jobs,
    timeline,
    write_policy,
    write_users_file,
)
from tests.support.chat_standin import ChatStandIn
from tests.support.clock import AheadClock
from tests.support.mitigation import MitigationBench, latency, route
from tests.support.pagerduty_standin import PagerDutyStandIn
from tests.support.redis_server import free_port
from tests.support.statuspage_standin import StatuspageStandIn
from webhook.app import create_app
from webhook.app_services import services_of
from webhook.users import UsersFile
from workers.config import Settings
from workers.incident.commands import Commands
from workers.policy import Policy

Vendors = tuple[PagerDutyStandIn, StatuspageStandIn, ChatStandIn]

SHIPPED_SEVERITIES = (REPO / "policies" / "00-severities.yaml").read_text() + (
    "default: {severity: SEV3, actions: [notify]}\n"
)
TWO_ROUTES = """\
routes:
  - name: latency-critical
    matchers: ['alertname="HighLatency"', 'tier="critical"']
    severity: SEV1
    incident_key: "latency/{{ labels.service }}"
    actions: [page, notify]
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: "latency/{{ labels.service }}"
    actions: [page, notify]
"""
COMMANDED = SEVERITIES.replace(
    "SEV1: {name: High, response_time: 15m,",
    "SEV1: {name: High, response_time: 15m, needs_commander: true,",
)


def command(
    app: FlaskClient, incident_id: str, name: str, headers: dict[str, str], **body: str
) -> Any:
    return app.post(f"/api/v1/incidents/{incident_id}/{name}", json=body, headers=headers)


def _app(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    routes: str,
    severities: str = SHIPPED_SEVERITIES,
    **changes: Any,
) -> FlaskClient:
    """alertpilot (and the in-process worker) on a policy of `routes`, dry run off."""
    directory = write_policy(tmp_path / "policies", routes, severities)
    monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
    monkeypatch.setenv("ALERTPILOT_DRY_RUN", "false")
    changed = replace(settings, policies_dir=directory, dry_run=False, **changes)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def _texts(chat: ChatStandIn) -> list[str]:
    return [str(m.body.get("text", "")) for m in chat.messages if isinstance(m.body, dict)]


def _alert(doc: dict[str, Any], index: int, **labels: str) -> dict[str, Any]:
    alert: dict[str, Any] = copy.deepcopy(doc["alerts"][index])
    alert["labels"] |= labels
    return alert


def _kinds(app: FlaskClient, incident_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in timeline(app, incident_id) if e["kind"] == kind]


# --- who may do what -----------------------------------------------------------------


def test_proxy_user_header_does_not_stand_in_for_an_unknown_signed_in_email(
    settings: Settings, redis: Redis
) -> None:
    """The proxy vouches for eve@example.com, who is not in the users file: 403, whatever
    X-Forwarded-User (which a client can add) names."""
    proxied = replace(settings, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    app = create_app(proxied, redis=redis, registry=CollectorRegistry()).test_client()
    (incident_id,) = post(app, latency()).json["incidents"]
    spoofed = {"X-Forwarded-Email": "eve@example.com", "X-Forwarded-User": "ada"}
    answer = command(app, incident_id, "resolve", spoofed)
    assert answer.status_code == 403, answer.json
    assert app.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json["status"] == "open"


def test_forwarded_headers_mean_nothing_without_a_trusted_proxy_or_from_elsewhere(
    settings: Settings, redis: Redis
) -> None:
    via = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-User": "ada"}
    plain = create_app(settings, redis=redis, registry=CollectorRegistry()).test_client()
    (incident_id,) = post(plain, latency()).json["incidents"]
    assert command(plain, incident_id, "resolve", via).status_code == 401
    assert command(plain, incident_id, "resolve", {**via, **VIEWER}).status_code == 403
    proxied = replace(settings, trusted_proxies=(ipaddress.ip_network("10.9.0.0/16"),))
    app = create_app(proxied, redis=redis, registry=CollectorRegistry()).test_client()
    assert command(app, incident_id, "resolve", {**via, **VIEWER}).status_code == 403
    assert plain.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json["status"] == "open"


def test_viewer_and_alertmanager_change_nothing_through_any_route_or_method(
    mitigation: MitigationBench, redis: Redis, queue: Queue
) -> None:
    app = mitigation.app(route("[page, notify, rollout_restart]"))
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (proposal,) = app.get("/api/v1/actions", headers=VIEWER).json["actions"]
    before = (redis.llen(f"aptest:incident:{incident_id}:timeline"), sorted(redis.keys()))
    urls = [
        f"/api/v1/incidents/{incident_id}/{c}"
        for c in ("resolve", "severity", "assign", "notes", "status", "acknowledge", "reopen")
    ] + [
        "/api/v1/incidents",
        f"/api/v1/actions/{proposal['id']}/approve",
        f"/api/v1/actions/{proposal['id']}/reject",
        "/api/v1/status",
        "/api/v1/pagerduty",
    ]
    body = {"severity": "SEV1", "text": "x", "role": "ic", "person": "vic", "status": "identified"}
    for headers in (VIEWER, AUTH, {"Authorization": f"Basic {TOKEN}"}, {}):
        for url in urls:
            for method in ("POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
                for path in (url, url + "/"):
                    extra = {"X-HTTP-Method-Override": "POST"}
                    answer = app.open(path, method=method, json=body, headers={**headers, **extra})
                    assert answer.status_code not in (200, 201, 202) or method in (
                        "OPTIONS",
                        "HEAD",
                    ), (headers, method, path, answer.status_code)
    assert app.get("/api/v1/status", headers=AUTH).status_code == 403
    assert app.get("/api/v1/actions", headers=AUTH).status_code == 403
    after = (redis.llen(f"aptest:incident:{incident_id}:timeline"), sorted(redis.keys()))
    assert after == before
    assert app.get("/api/v1/actions", headers=VIEWER).json["actions"] == [proposal]


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Bearer    ", 401),
        ("Bearer " + hashlib.sha256(b"ap_test_rui").hexdigest(), 401),
        ("Basic ap_test_rui", 401),
        ("ap_test_rui", 401),
        ("Token ap_test_rui", 401),
        ("Bearer ap_test_vic", 403),
        (f"Bearer {TOKEN}", 403),
        ("bearer ap_test_rui", 200),
        ("BEARER  ap_test_rui", 200),
    ],
)
def test_token_edge_cases(client: FlaskClient, header: str, status: int) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    answer = command(client, incident_id, "notes", {"Authorization": header}, text="x")
    assert answer.status_code == status, answer.json
    assert answer.is_json


def test_no_answer_or_log_line_holds_a_token_or_its_hash(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (incident_id,) = post(client, latency()).json["incidents"]
    secrets = ["ap_test_vic", "ap_test_rui", TOKEN]
    secrets += [hashlib.sha256(f"ap_test_{n}".encode()).hexdigest() for n in ("ada", "rui", "vic")]
    answers = [
        command(client, incident_id, "resolve", VIEWER),
        command(client, incident_id, "resolve", AUTH),
        command(client, incident_id, "resolve", {"Authorization": "Bearer ap_test_rui_"}),
        command(client, incident_id, "notes", RESPONDER, text="x", token="ap_test_rui"),
        command(client, incident_id, "notes", RESPONDER, text="ok"),
    ]
    seen = "".join(a.get_data(as_text=True) for a in answers) + caplog.text
    seen += str(client.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json)
    assert not [s for s in secrets if s in seen]


# --- input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"text": "\\ud800"}', "application/json"),
        (b'{"text": "a", "text": 1}', "application/json"),
        (b"[" * 30000 + b"]" * 30000, "application/json"),
        (b'{"text": ' + b"1" * 5000 + b"}", "application/json"),
        (b'{"text": NaN}', "application/json"),
        (b'{"text": "x"}', "text/plain"),
        (b'{"text": "x"}', "application/x-www-form-urlencoded"),
        (b'{"\\ud800": "x"}', "application/json"),
        (b"\xff\xfe{", "application/json"),
        (b'{"text": "' + b"x" * (10 * 1024 * 1024) + b'"}', "application/json"),
    ],
)
def test_odd_bodies_are_4xx_json_and_change_nothing(
    client: FlaskClient, redis: Redis, data: bytes, content_type: str
) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    before = redis.llen(f"aptest:incident:{incident_id}:timeline")
    answer = client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        data=data,
        content_type=content_type,
        headers=RESPONDER,
    )
    assert 400 <= answer.status_code < 500, answer.status_code
    assert answer.is_json and answer.json["error"]["code"]
    assert redis.llen(f"aptest:incident:{incident_id}:timeline") == before


def test_empty_body_with_json_content_type_is_an_empty_object(client: FlaskClient) -> None:
    (incident_id,) = post(client, latency()).json["incidents"]
    url = f"/api/v1/incidents/{incident_id}/resolve"
    answer = client.post(url, data=b"", content_type="application/json", headers=RESPONDER)
    assert answer.status_code == 200, answer.json
    notes = client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        data=b"",
        content_type="application/json",
        headers=RESPONDER,
    )
    assert (notes.status_code, notes.json["error"]["details"]["field"]) == (400, "text")


@pytest.mark.parametrize("incident_id", ["..", "a b", "x" * 129, "%00", "é", "a%2Fb"])
def test_ids_that_are_not_incident_ids(client: FlaskClient, incident_id: str) -> None:
    answer = command(client, incident_id, "notes", RESPONDER, text="x")
    assert answer.status_code in (400, 404), answer.status_code
    assert answer.is_json


def test_chat_mentions_in_a_title_or_a_person_do_not_ping_the_channel(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    """Slack mrkdwn: `<!channel>` in a message pings everyone; a person's text must be
    escaped (&lt; &gt; &amp;) before it reaches chat."""
    chat = vendors[2]
    body = {"title": "<!channel> checkout down", "severity": "SEV2", "service": "checkout"}
    answer = live.post("/api/v1/incidents", json=body, headers=RESPONDER)
    assert answer.status_code == 201, answer.json
    incident_id = answer.json["incident"]["id"]
    stranger = command(live, incident_id, "assign", RESPONDER, role="ic", person="<!here>")
    assert (stranger.status_code, stranger.json["error"]["details"]["field"]) == (400, "person")
    assert command(live, incident_id, "severity", RESPONDER, severity="SEV1").status_code == 200
    run_jobs(queue)
    texts = _texts(chat)
    assert texts and all("&lt;!channel&gt; checkout down" in t for t in texts)
    assert [t for t in texts if "<!channel>" in t or "<!here>" in t] == []


def test_template_syntax_and_a_4000_character_title_go_out_as_text_once(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd, sp, chat = vendors
    title = "{{ 7 * 7 }} {% raw %}" + "t" * 3979
    assert len(title) == 4000
    body = {"title": title, "severity": "SEV1", "service": "checkout", "summary": "{{ config }}"}
    answer = live.post("/api/v1/incidents", json=body, headers=RESPONDER)
    assert answer.status_code == 201, answer.json
    incident_id = answer.json["incident"]["id"]
    note = command(live, incident_id, "notes", RESPONDER, text="{{ ''.__class__ }}\x00\x1b[31m")
    assert note.status_code == 200, note.json
    run_jobs(queue)
    assert len(pd.events("trigger")) == 1
    assert len(sp.incidents) == 1
    (declared,) = [t for t in _texts(chat) if "declared" in t]
    assert "{{ 7 * 7 }}" in declared and "49" not in declared.split("\n")[0]


# --- state: races and collisions -------------------------------------------------------


def _gated(app: Flask, gate: threading.Barrier) -> None:
    """The app's commands, each thread waiting at `gate` after its first read (under
    WATCH): two commands read the same incident before either writes."""
    s = services_of(app)
    local = threading.local()

    def policy() -> Policy:
        if not getattr(local, "waited", False):
            local.waited = True
            gate.wait(timeout=10)
        return s.policies.get()

    commands = Commands(s.redis, s.commands.writer, policy)
    app.extensions["alertpilot"] = replace(s, commands=commands)


def test_two_people_escalating_at_once_page_exactly_once(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd = vendors[0]
    (incident_id,) = post(live, latency()).json["incidents"]
    run_jobs(queue)
    assert live.application is not None
    _gated(live.application, threading.Barrier(2))
    answers: list[int] = []

    def escalate(headers: dict[str, str]) -> None:
        client = live.application.test_client()
        answers.append(
            command(client, incident_id, "severity", headers, severity="SEV1").status_code
        )

    threads = [threading.Thread(target=escalate, args=(h,)) for h in (RESPONDER, ADMIN)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers) == [200, 409]
    run_jobs(queue)
    run_jobs(queue)
    assert len(pd.events("trigger")) == 2
    assert len(_kinds(live, incident_id, "escalated")) == 1


def test_an_alert_resolving_between_read_and_write_makes_the_command_decide_again(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd = vendors[0]
    doc = latency()
    (incident_id,) = post(live, doc).json["incidents"]
    run_jobs(queue)
    app = live.application
    s = services_of(app)
    done = {"posted": False}

    def policy() -> Policy:
        if not done["posted"]:
            done["posted"] = True
            gone = copy.deepcopy(doc)
            gone["alerts"][0]["status"] = "resolved"
            gone["alerts"][0]["endsAt"] = "2026-11-27T00:30:00Z"
            gone["status"] = "resolved"
            assert post(app.test_client(), gone).json["status"] == "accepted"
        return s.policies.get()

    app.extensions["alertpilot"] = replace(s, commands=Commands(s.redis, s.commands.writer, policy))
    answer = command(live, incident_id, "severity", RESPONDER, severity="SEV1")
    assert answer.status_code == 409, answer.json
    run_jobs(queue)
    assert len(pd.events("trigger")) == 1
    assert [e["event_action"] for e in pd.events()][-1] == "resolve"
    incident = live.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json
    assert (incident["status"], incident["severity"]) == ("resolved", "SEV2")


def test_an_alert_driven_rise_after_a_persons_downgrade_pages_and_tells_chat_again(
    live: FlaskClient,
    vendors: Vendors,
    queue: Queue,
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alert escalation job ids are `escalated-<SEV>` whatever the revision: the second
    alert-driven rise to SEV1 reuses the first one's ids, whose effect markers say done."""
    pd, _, chat = vendors
    app = _app(tmp_path, settings, redis, monkeypatch, TWO_ROUTES)
    base = fixture("firing-two-alerts.json")
    calm = _alert(base, 0)
    doc = {**base, "alerts": [calm]}
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    critical = _alert(base, 1, tier="critical")
    assert post(app, {**base, "alerts": [calm, critical]}).json["incidents"] == [incident_id]
    run_jobs(queue)
    assert len(pd.events("trigger")) == 2
    down = command(app, incident_id, "severity", RESPONDER, severity="SEV2")
    assert down.status_code == 200, down.json
    run_jobs(queue)
    another = _alert(base, 1, tier="critical", deployment="api-blue")
    another["fingerprint"] = "b0b0b0b0b0b0b0b0"
    again = post(app, {**base, "alerts": [calm, critical, another]})
    assert again.json["incidents"] == [incident_id]
    run_jobs(queue)
    assert app.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json["severity"] == "SEV1"
    assert len(pd.events("trigger")) == 3
    assert len([t for t in _texts(chat) if "Escalated to SEV1" in t]) == 2


def test_a_reopened_incident_gets_its_status_updates_again(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    """The restarted cadence's ticks queue `update-<SEV>-<n>` jobs, the ids of the first
    chain's updates: already done, so after a reopen no status update ever goes out
    until the tick count passes the first chain's."""
    chat = vendors[2]
    (incident_id,) = post(live, latency()).json["incidents"]  # SEV2: every 4h
    run_jobs(queue)
    due(queue, 4 * 3600 + 1)
    updates = [t for t in _texts(chat) if "*Update (SEV2)*" in t]
    assert len(updates) == 1
    assert command(live, incident_id, "resolve", RESPONDER).status_code == 200
    run_jobs(queue)
    assert command(live, incident_id, "reopen", RESPONDER).status_code == 200
    run_jobs(queue)
    assert len([t for t in _texts(chat) if "*Update (SEV2)*" in t]) == 2  # the reopen's
    due(queue, 4 * 3600 + 1)
    assert len([t for t in _texts(chat) if "*Update (SEV2)*" in t]) == 3


def test_a_downgrade_back_restarts_the_lower_severitys_status_updates(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    """SEV2 -> SEV1 -> SEV2: the new SEV2 chain's ticks reuse the first chain's ids."""
    chat = vendors[2]
    (incident_id,) = post(live, latency()).json["incidents"]
    run_jobs(queue)
    due(queue, 4 * 3600 + 1)
    assert len([t for t in _texts(chat) if "*Update (SEV2)*" in t]) == 1
    assert command(live, incident_id, "severity", RESPONDER, severity="SEV1").status_code == 200
    assert command(live, incident_id, "severity", RESPONDER, severity="SEV2").status_code == 200
    run_jobs(queue)
    downgraded = len([t for t in _texts(chat) if "*Update (SEV2)*" in t])
    due(queue, 4 * 3600 + 1)
    assert len([t for t in _texts(chat) if "*Update (SEV2)*" in t]) == downgraded + 1


def test_a_second_rise_to_sev1_without_a_commander_says_so_in_chat_again(
    live: FlaskClient,
    vendors: Vendors,
    queue: Queue,
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check's chat job is `no-ic-<SEV>`: the second check writes its timeline entry
    but its chat message is taken for the first one's."""
    chat = vendors[2]
    app = _app(tmp_path, settings, redis, monkeypatch, route("[notify]"), COMMANDED)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    for _ in range(2):
        assert command(app, incident_id, "severity", RESPONDER, severity="SEV1").status_code == 200
        run_jobs(queue)
        due(queue, 16 * 60)
        assert command(app, incident_id, "severity", RESPONDER, severity="SEV2").status_code == 200
        run_jobs(queue)
    assert len(_kinds(app, incident_id, "no_commander")) == 2
    assert len([t for t in _texts(chat) if "A person is needed" in t]) == 2


def test_a_declared_sev1_has_its_declarer_as_commander_and_no_check_fires(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    chat = vendors[2]
    body = {"title": "Checkout down", "severity": "SEV1", "service": "checkout"}
    incident_id = live.post("/api/v1/incidents", json=body, headers=RESPONDER).json["incident"][
        "id"
    ]
    run_jobs(queue)
    due(queue, 16 * 60)
    assert _kinds(live, incident_id, "no_commander") == []
    assert [t for t in _texts(chat) if "A person is needed" in t] == []


def test_a_hand_resolve_then_a_still_firing_alert_after_the_stale_window_declares_anew(
    settings: Settings, redis: Redis, ahead_clock: AheadClock
) -> None:
    """docs: "after it, a still-firing alert declares a new incident". The group's
    last digest (kept for ALERTPILOT_DEDUP_TTL, 7 days) still holds the firing state the
    hand resolve overrode, so every resend is a duplicate for a week."""
    app = create_app(
        replace(settings, resend_cache_seconds=0), redis=redis, registry=CollectorRegistry()
    ).test_client()
    doc = latency()
    (first,) = post(app, doc).json["incidents"]
    assert command(app, first, "resolve", RESPONDER).status_code == 200
    ahead_clock.advance(settings.stale_window_seconds + 60)
    doc["alerts"][0]["annotations"]["resent"] = "after the window"
    again = post(app, doc).json
    assert len(again["incidents"]) == 1 and again["incidents"] != [first], again


def test_a_reopened_incident_keeps_its_mitigation(
    mitigation: MitigationBench, queue: Queue
) -> None:
    """The resolve queued the scale-up's revert after the stabilisation window; a reopen
    does not cancel it, so the reopened (ongoing) incident loses its mitigation."""
    kube = mitigation.kube
    app = mitigation.app(route("[{scale_up: {by: 4, max_replicas: 20}}]"), stabilisation="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    assert command(app, incident_id, "resolve", RESPONDER).status_code == 200
    run_jobs(queue)
    assert command(app, incident_id, "reopen", RESPONDER).status_code == 200
    due(queue, 2)
    assert app.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json["status"] == "open"
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8


def test_an_old_record_without_phase_roles_or_revision_takes_every_command(
    client: FlaskClient, redis: Redis
) -> None:
    import json

    (incident_id,) = post(client, latency()).json["incidents"]
    key = f"aptest:incident:{incident_id}"
    doc = json.loads(redis.get(key) or b"{}")
    for name in ("phase", "roles", "revision"):
        doc.pop(name)
    redis.set(key, json.dumps(doc))
    steps = [
        ("notes", {"text": "old"}, 200),
        ("assign", {"role": "ic", "person": "rui"}, 200),
        ("status", {"status": "identified"}, 200),
        ("severity", {"severity": "SEV1"}, 200),
        ("acknowledge", {}, 200),
        ("resolve", {}, 200),
        ("reopen", {}, 200),
        ("severity", {"severity": "SEV2"}, 200),
        ("resolve", {}, 200),
    ]
    for name, body, status in steps:
        answer = command(client, incident_id, name, RESPONDER, **body)
        assert answer.status_code == status, (name, answer.json)
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json
    assert (incident["status"], incident["roles"]) == ("resolved", {"ic": ["rui"]})


def test_a_declared_incident_resolves_without_alerts_and_ignores_alert_notifications(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd, sp, _ = vendors
    body = {"title": "Checkout down", "severity": "SEV1", "service": "api"}
    incident_id = live.post("/api/v1/incidents", json=body, headers=RESPONDER).json["incident"][
        "id"
    ]
    run_jobs(queue)
    (other,) = post(live, latency()).json["incidents"]
    assert other != incident_id
    assert command(live, incident_id, "resolve", RESPONDER).status_code == 200
    run_jobs(queue)
    run_jobs(queue)
    assert [e["dedup_key"] for e in pd.events("resolve")] == [incident_id]
    (opened,) = sp.incidents.values()
    assert opened["status"] == "resolved"
    assert live.get(f"/api/v1/incidents/{other}", headers=VIEWER).json["status"] == "open"


def test_escalating_to_a_severity_the_reloaded_policy_no_longer_has_is_400(
    live: FlaskClient,
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _app(tmp_path, settings, redis, monkeypatch, route("[notify]"), SEVERITIES)
    (incident_id,) = post(app, latency()).json["incidents"]
    directory = tmp_path / "policies"
    (directory / "00-severities.yaml").write_text(
        SEVERITIES.replace(
            "  SEV0: {name: Critical, response_time: 5m, update_every: 30m, public: true}\n", ""
        )
    )
    services_of(app.application).policies.reload()
    answer = command(app, incident_id, "severity", RESPONDER, severity="SEV0")
    assert answer.status_code == 400, answer.json
    assert command(app, incident_id, "severity", RESPONDER, severity="SEV3").status_code == 200


# --- exactly once ----------------------------------------------------------------------


def _requeue_finished(queue: Queue) -> int:
    """Every finished job queued again, as a crashed worker's requeue would."""
    count = 0
    for lane in lanes(queue):
        for job_id in lane.finished_job_registry.get_job_ids():
            job = lane.fetch_job(job_id)
            if job is not None:
                lane.finished_job_registry.remove(job)
                lane.enqueue_job(job)
                count += 1
    return count


def test_declared_sev1_jobs_run_twice_and_requeued_act_once(
    live: FlaskClient, vendors: Vendors, queue: Queue
) -> None:
    pd, sp, chat = vendors
    body = {"title": "Checkout down", "severity": "SEV1", "service": "checkout"}
    incident_id = live.post("/api/v1/incidents", json=body, headers=RESPONDER).json["incident"][
        "id"
    ]
    run_jobs(queue)
    run_jobs(queue)
    assert _requeue_finished(queue) >= 3
    run_jobs(queue)
    assert len(pd.events("trigger")) == 1
    assert len(sp.incidents) == 1
    assert len([t for t in _texts(chat) if "declared" in t]) == 1
    assert command(live, incident_id, "severity", RESPONDER, severity="SEV0").status_code == 200
    run_jobs(queue)
    _requeue_finished(queue)
    run_jobs(queue)
    assert len(pd.events("trigger")) == 2
    assert len([t for t in _texts(chat) if "Escalated to SEV0" in t]) == 1


# --- Redis down ------------------------------------------------------------------------


def test_every_command_with_redis_unreachable_is_a_503_json(settings: Settings) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    connection = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    app = create_app(
        replace(settings, redis_url=url), redis=connection, registry=CollectorRegistry()
    ).test_client()
    calls = [
        ("/api/v1/incidents", {"title": "t", "severity": "SEV1", "service": "s"}),
        ("/api/v1/incidents/abc-1/acknowledge", {}),
        ("/api/v1/incidents/abc-1/notes", {"text": "x"}),
        ("/api/v1/incidents/abc-1/assign", {"role": "ic", "person": "rui"}),
        ("/api/v1/incidents/abc-1/status", {"status": "identified"}),
        ("/api/v1/incidents/abc-1/severity", {"severity": "SEV1"}),
        ("/api/v1/incidents/abc-1/resolve", {}),
        ("/api/v1/incidents/abc-1/reopen", {}),
        ("/api/v1/actions/0123456789abcdef/approve", {}),
        ("/api/v1/actions/0123456789abcdef/reject", {"reason": "no"}),
    ]
    for url_path, body in calls:
        answer = app.post(url_path, json=body, headers=RESPONDER)
        assert answer.status_code == 503, (url_path, answer.status_code)
        assert answer.json["error"]["code"] == "unavailable"
    assert app.get("/api/v1/actions", headers=VIEWER).status_code == 503


# --- the users file --------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _with_users(app: Flask, path: Path, clock: _Clock) -> None:
    s = services_of(app)
    app.extensions["alertpilot"] = replace(s, users=UsersFile(path, interval=2.0, clock=clock))


def test_a_person_removed_from_the_users_file_loses_access_at_the_next_check(
    app: Flask, tmp_path: Path
) -> None:
    path = write_users_file(tmp_path)
    clock = _Clock()
    _with_users(app, path, clock)
    client = app.test_client()
    (incident_id,) = post(client, latency()).json["incidents"]
    assert command(client, incident_id, "notes", RESPONDER, text="a").status_code == 200
    text = path.read_text()
    rui = hashlib.sha256(b"ap_test_rui").hexdigest()
    lines = text.splitlines()
    start = lines.index("  - name: rui")
    kept = lines[:start] + lines[start + 5 :]
    assert rui not in "\n".join(kept)
    replacement = tmp_path / "users.new"
    replacement.write_text("\n".join(kept) + "\n")
    os.replace(replacement, path)
    clock.now = 2.1
    assert command(client, incident_id, "notes", RESPONDER, text="b").status_code == 401
    assert command(client, incident_id, "notes", ADMIN, text="c").status_code == 200


def test_a_broken_deleted_or_swapped_users_file_keeps_the_last_good_people_and_never_logs_a_hash(
    app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = tmp_path / "..2026_01"
    data.mkdir()
    write_users_file(data)
    (tmp_path / "..data").symlink_to(data.name)
    path = tmp_path / "users.yaml"
    path.symlink_to("..data/users.yaml")
    clock = _Clock()
    _with_users(app, path, clock)
    client = app.test_client()
    (incident_id,) = post(client, latency()).json["incidents"]
    assert command(client, incident_id, "notes", RESPONDER, text="a").status_code == 200

    rui = hashlib.sha256(b"ap_test_rui").hexdigest()
    broken = tmp_path / "..2026_02"
    broken.mkdir()
    text = (data / "users.yaml").read_text()
    (broken / "users.yaml").write_text(text.replace(rui, rui[:-1] + "G") + "  - :\n")
    (tmp_path / "..data_tmp").symlink_to(broken.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    clock.now = 2.1
    assert command(client, incident_id, "notes", RESPONDER, text="b").status_code == 200
    clock.now = 4.2
    assert command(client, incident_id, "notes", RESPONDER, text="c").status_code == 200
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "keeping the users loaded before" in warnings[0].getMessage()

    os.remove(broken / "users.yaml")
    clock.now = 6.3
    assert command(client, incident_id, "notes", RESPONDER, text="d").status_code == 200

    swapped = tmp_path / "..2026_03"
    swapped.mkdir()
    (swapped / "users.yaml").write_text(
        "users:\n  - name: vic\n    role: responder\n    token_sha256: "
        + hashlib.sha256(b"ap_test_vic").hexdigest()
        + "\n"
    )
    (tmp_path / "..data_tmp").symlink_to(swapped.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    clock.now = 8.4
    assert command(client, incident_id, "notes", RESPONDER, text="e").status_code == 401
    assert command(client, incident_id, "notes", VIEWER, text="f").status_code == 200
    hashes = [hashlib.sha256(f"ap_test_{n}".encode()).hexdigest() for n in ("ada", "rui", "vic")]
    hashes.append(rui[:-1] + "G")
    assert not [h for h in hashes if h in caplog.text]
