"""page, statuspage and notify for real, against stand-ins that speak the vendors' contracts.

The jobs run through the production entry point (workers.entry.run_action),
which reads its configuration from the environment as a deployed worker does.
"""

from __future__ import annotations

import copy
import json
import logging
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
    REDIS_URL,
    ROUTING_KEY,
    STATUSPAGE_KEY,
    TOKEN,
    fetch,
    fixture,
    page_lane,
    post,
    run_jobs,
    run_retries,
    timeline,
    write_policy,
)
from webhook import cli
from webhook.app import create_app
from workers.config import Settings
from workers.jobs.contract import lane_queue


def payments(status: str = "firing") -> dict[str, Any]:
    doc = copy.deepcopy(fixture("firing-two-alerts.json"))
    doc["groupKey"] = '{}:{alertname="HighLatency", service="payments"}'
    for alert in doc["alerts"]:
        alert["labels"]["service"] = "payments"
        alert["status"] = status
        if status == "resolved":
            alert["endsAt"] = "2026-11-27T00:10:00Z"
    doc["status"] = status
    return doc


def test_declared_incident_pages_once_with_dedup_key_links_and_details(
    live: FlaskClient, queue: Queue, vendors: Any
) -> None:
    pd, _, _ = vendors
    (incident_id,) = post(live, payments()).json["incidents"]
    run_jobs(queue)
    (event,) = pd.events("trigger")
    assert event["routing_key"] == ROUTING_KEY
    assert event["dedup_key"] == incident_id
    assert event["payload"]["severity"] == "critical"  # SEV1
    assert event["payload"]["summary"] == "[SEV1] p95 latency above 2s for 5m"
    assert event["payload"]["source"] == "payments"
    details = event["payload"]["custom_details"]
    assert details["incident"] == f"https://alertpilot.example/api/v1/incidents/{incident_id}"
    assert (details["route"], details["alerts_firing"]) == ("payments-latency", 2)
    texts = {link["text"]: link["href"] for link in event["links"]}
    assert texts["Runbook"] == "https://runbooks.example.com/high-api-latency"
    assert texts["Silence in Alertmanager"].startswith("http://vm:19093/#/silences/new?filter=")
    pages = [e for e in timeline(live, incident_id) if e.get("action") == "page"]
    assert [(e["kind"], e["message"]) for e in pages] == [
        ("succeeded", f"PagerDuty triggered (critical), dedup_key {incident_id}")
    ]


def test_resolving_resolves_the_page_the_status_page_and_posts_to_chat(
    live: FlaskClient, queue: Queue, vendors: Any
) -> None:
    pd, sp, chat = vendors
    (incident_id,) = post(live, payments()).json["incidents"]
    run_jobs(queue)
    post(live, payments("resolved"))
    run_jobs(queue)
    assert [e["event_action"] for e in pd.events()] == ["trigger", "resolve"]
    assert pd.alerts[(ROUTING_KEY, incident_id)] == "resolved"
    (incident,) = sp.incidents.values()
    assert incident["status"] == "resolved"
    assert incident["metadata"] == {"alertpilot": {"incident_id": incident_id}}
    texts = [m.body["text"].splitlines()[0] for m in chat.messages]
    assert texts == [
        ":rotating_light: *SEV1 declared*: p95 latency above 2s for 5m",
        ":white_check_mark: *Resolved*: p95 latency above 2s for 5m",
    ]


def test_statuspage_create_sends_the_oauth_key_and_tags_the_incident(
    live: FlaskClient, queue: Queue, vendors: Any
) -> None:
    _, sp, _ = vendors
    (incident_id,) = post(live, payments()).json["incidents"]
    run_jobs(queue)
    (create,) = [r for r in sp.requests if r.method == "POST"]
    assert create.path == "/v1/pages/pg1/incidents"
    assert create.headers["authorization"] == f"OAuth {STATUSPAGE_KEY}"
    fields = create.body["incident"]
    assert (fields["status"], fields["impact_override"]) == ("investigating", "major")
    assert fields["metadata"] == {"alertpilot": {"incident_id": incident_id}}


def test_a_429_then_202_pages_once(live: FlaskClient, queue: Queue, vendors: Any) -> None:
    pd, _, _ = vendors
    pd.fail_next(429)
    post(live, payments())
    run_jobs(queue)
    assert len(pd.events("trigger")) == 1
    assert [r.status for r in pd.requests if r.path == "/v2/enqueue"] == [429, 202]


def test_a_400_is_permanent_with_pagerduty_error_text_and_no_key(
    live: FlaskClient, queue: Queue, vendors: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pd, _, _ = vendors
    pd.fail_next(400)
    (incident_id,) = post(live, payments()).json["incidents"]
    run_jobs(queue)
    (failed,) = [e for e in timeline(live, incident_id) if e["kind"] == "failed"]
    assert failed["action"] == "page"
    assert failed["message"].startswith("PagerDuty answered 400")
    failed = page_lane(queue).failed_job_registry.get_job_ids()
    assert any(j.endswith("-declared-page") for j in failed)
    everything = str(timeline(live, incident_id)) + caplog.text
    assert ROUTING_KEY not in everything and STATUSPAGE_KEY not in everything


def test_crash_between_statuspage_create_and_store_opens_one_incident(
    live: FlaskClient, queue: Queue, vendors: Any, redis: Redis
) -> None:
    """The POST reached Statuspage, the answer never came back: the retry must adopt it."""
    _, sp, _ = vendors
    sp.fail_after_create()
    (incident_id,) = post(live, payments()).json["incidents"]
    run_jobs(queue)
    job_id = f"{incident_id}-declared-statuspage"
    comms = lane_queue(queue, "comms")
    assert job_id in comms.scheduled_job_registry.get_job_ids()  # transient: retried later
    run_retries(queue, job_id)
    (adopted,) = sp.incidents.values()
    assert len(adopted["incident_updates"]) == 1  # adopted, not posted to twice
    assert len([r for r in sp.requests if r.method == "POST"]) == 1
    stored = redis.hget(f"aptest:incident:{incident_id}:external", "statuspage")
    assert stored is not None and stored.decode() in sp.incidents


OVERRIDES = """\
routes:
  - name: payments
    matchers: ['alertname="HighLatency"', 'service="payments"']
    severity: SEV1
    actions: [page, {statuspage: {components: [cmp1]}}]
"""


def test_severity_overrides_reach_pagerduty_and_statuspage_components(
    live: FlaskClient, settings: Settings, redis: Redis, queue: Queue, vendors: Any, tmp_path: Path
) -> None:
    pd, sp, _ = vendors
    directory = write_policy(tmp_path / "p", OVERRIDES)
    severities = (directory / "00-severities.yaml").read_text()
    severities = severities.replace(
        "SEV1: {name: High, response_time: 15m, update_every: 1h, public: true}",
        "SEV1: {name: High, response_time: 15m, public: true, pagerduty_severity: warning,"
        " statuspage_impact: minor, component_status: degraded_performance}",
    )
    (directory / "00-severities.yaml").write_text(severities)
    app = create_app(
        replace(settings, policies_dir=directory, dry_run=False),
        redis=redis,
        registry=CollectorRegistry(),
    ).test_client()
    post(app, payments())
    run_jobs(queue)
    assert pd.events("trigger")[0]["payload"]["severity"] == "warning"
    (create,) = [r.body["incident"] for r in sp.requests if r.method == "POST"]
    assert create["components"] == {"cmp1": "degraded_performance"}
    assert create["impact_override"] == "minor"
    assert sp.components["cmp1"]["status"] == "degraded_performance"
    post(app, payments("resolved"))
    run_jobs(queue)
    assert sp.components["cmp1"]["status"] == "operational"


def test_chat_wording_comes_from_the_teams_template(
    live: FlaskClient,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    vendors: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, chat = vendors
    directory = write_policy(
        tmp_path / "p", OVERRIDES.replace("actions: [page,", "actions: [notify,")
    )
    (directory / "templates").mkdir()
    (directory / "templates" / "declared.md.j2").write_text(
        "INCIDENT {{ severity }} ({{ firing }}/{{ total }}): {{ title }} -> {{ link }}"
    )
    live_env = replace(settings, policies_dir=directory, dry_run=False)
    app = create_app(live_env, redis=redis, registry=CollectorRegistry()).test_client()
    monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))  # what the worker reads
    (incident_id,) = post(app, payments()).json["incidents"]
    run_jobs(queue)
    assert [m.body["text"] for m in chat.messages] == [
        f"INCIDENT SEV1 (2/2): p95 latency above 2s for 5m -> "
        f"https://alertpilot.example/api/v1/incidents/{incident_id}"
    ]


def test_generic_webhook_gets_the_message_and_the_incident(
    live: FlaskClient, queue: Queue, vendors: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, chat = vendors
    monkeypatch.setenv("ALERTPILOT_NOTIFY_WEBHOOK_URL", chat.generic_url)
    (incident_id,) = post(live, payments()).json["incidents"]
    run_jobs(queue)
    (body,) = [m.body for m in chat.messages if m.url == chat.generic_url]
    assert (body["version"], body["event"]) == ("1", "declared")
    assert body["incident"]["id"] == incident_id
    assert (body["incident"]["severity"], body["incident"]["alerts_firing"]) == ("SEV1", 2)
    assert body["text"].startswith(":rotating_light: *SEV1 declared*")
    assert "postmortem" not in body  # only the resolve carries the draft
    post(live, payments("resolved"))
    run_jobs(queue)
    (done,) = [m.body for m in chat.messages if m.url == chat.generic_url][1:]
    assert done["event"] == "resolved"
    assert done["postmortem"].startswith("# Postmortem: p95 latency above 2s for 5m")
    assert "| Time | Event | Who | What |" in done["postmortem"]


def test_no_secret_reaches_logs_timeline_or_api_over_a_whole_incident(
    live: FlaskClient, queue: Queue, vendors: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, chat = vendors
    caplog.set_level(logging.DEBUG)
    (incident_id,) = post(live, payments()).json["incidents"]
    run_jobs(queue)
    post(live, payments("resolved"))
    run_jobs(queue)
    seen = caplog.text + json.dumps(
        live.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    )
    seen += json.dumps(live.get("/api/v1/incidents", headers=ADMIN).json)
    slack_path = chat.slack_url.split("://", 1)[1].split("/", 1)[1]
    for secret in (ROUTING_KEY, STATUSPAGE_KEY, slack_path, TOKEN):
        assert secret not in seen


def test_a_500_storm_past_the_retry_budget_fails_then_retry_delivers_once(
    live: FlaskClient, queue: Queue, vendors: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every attempt meets 500s; the job ends in the failed registry; `jobs retry` sends it."""
    pd, _, _ = vendors
    pd.fail_next(*([500] * 12))  # six attempts, each a request and the client's one retry
    (incident_id,) = post(live, payments()).json["incidents"]
    page_job = f"{incident_id}-declared-page"
    run_retries(queue, page_job)
    assert page_job in page_lane(queue).failed_job_registry.get_job_ids()
    assert pd.events("trigger") == []
    kinds = [e["kind"] for e in timeline(live, incident_id) if e.get("action") == "page"]
    assert kinds[-1] == "failed" and kinds.count("retried") == 5

    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("ALERTPILOT_QUEUE", "aptest")
    assert cli.main(["jobs", "retry", page_job]) == 0  # PagerDuty is back
    requeued = fetch(queue, page_job)
    assert requeued is not None and not requeued.number_of_retries  # a full budget again
    run_jobs(queue)
    run_jobs(queue)
    assert len(pd.events("trigger")) == 1
