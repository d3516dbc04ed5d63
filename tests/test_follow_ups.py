"""After the incident (issue 17): follow-ups (action items) recorded with their person,
and a postmortem due `postmortem_within` after resolve: written in time, nothing more
is said; overdue, the timeline and chat say so once. Alertpilot's clock is advanced
(`due`), nothing sleeps."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from rq import Queue

from tests.conftest import (
    RESPONDER,
    SEVERITIES,
    VIEWER,
    due,
    post,
    run_jobs,
    timeline,
    write_policy,
)
from tests.support.chat_standin import ChatStandIn
from tests.support.mitigation import MitigationBench, latency, resolved, route
from webhook.app import create_app
from workers.incident.timeline import seconds as timeline_seconds

WITH_POSTMORTEM = SEVERITIES.replace(
    "SEV2: {name: Medium, response_time: 1h, update_every: 4h}",
    "SEV2: {name: Medium, response_time: 1h, update_every: 4h, postmortem_within: 5d}",
)


def _app(mitigation: MitigationBench) -> FlaskClient:
    """Chat (the live stand-ins), and SEV2 asks for a postmortem within 5 days."""
    directory = write_policy(mitigation.tmp_path / "policies", route("[notify]"), WITH_POSTMORTEM)
    mitigation.monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
    changed = replace(mitigation.settings, policies_dir=directory, dry_run=False)
    return create_app(changed, redis=mitigation.redis, registry=CollectorRegistry()).test_client()


def _command(app: FlaskClient, incident_id: str, name: str, **body: str) -> Any:
    return app.post(f"/api/v1/incidents/{incident_id}/{name}", json=body, headers=RESPONDER)


@pytest.fixture
def chat(vendors: tuple[Any, Any, ChatStandIn]) -> ChatStandIn:
    return vendors[2]


def test_follow_ups_are_recorded_with_their_person_and_marked_done(
    mitigation: MitigationBench, chat: ChatStandIn
) -> None:
    app = _app(mitigation)
    (incident_id,) = post(app, latency()).json["incidents"]
    added = _command(
        app,
        incident_id,
        "follow-ups",
        text="Alert on p95 per endpoint",
        owner="ada",
        due="2026-12-19",
        priority="P1",
    )
    assert added.status_code == 200, added.json
    assert added.json["entries"][0]["message"] == (
        "follow-up F1 by rui: Alert on p95 per endpoint (owner ada, due 2026-12-19, P1)"
    )
    second = _command(
        app, incident_id, "follow-ups", text="Load test", owner="vic", due="2027-01-04"
    )
    assert second.json["entries"][0]["follow_up"] == "F2"
    assert second.json["entries"][0]["priority"] == "P2"  # the default
    done = _command(app, incident_id, "follow-up-done", id="F1")
    assert done.status_code == 200 and done.json["entries"][0]["by"] == "rui"
    again = _command(app, incident_id, "follow-up-done", id="F1")
    assert again.status_code == 409
    unknown = _command(app, incident_id, "follow-up-done", id="F9")
    assert unknown.status_code == 404 and unknown.json["error"]["details"]["field"] == "id"
    kinds = [e["kind"] for e in timeline(app, incident_id)]
    assert kinds.count("follow_up") == 2 and kinds.count("follow_up_done") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "x", "owner": "ada", "due": "19/12/2026"}, "due"),
        ({"text": "x", "owner": "ada", "due": "2026-02-30"}, "due"),
        ({"text": "x", "owner": "ada", "due": "2026-12-19", "priority": "urgent"}, "priority"),
        ({"text": " ", "owner": "ada", "due": "2026-12-19"}, "text"),
        ({"text": "x", "owner": "a\nb", "due": "2026-12-19"}, "owner"),
        ({"text": "x", "owner": "ada"}, "due"),
    ],
)
def test_a_bad_follow_up_is_400_naming_the_field_and_changes_nothing(
    mitigation: MitigationBench, body: dict[str, str], field: str
) -> None:
    app = _app(mitigation)
    (incident_id,) = post(app, latency()).json["incidents"]
    before = timeline(app, incident_id)
    refused = _command(app, incident_id, "follow-ups", **body)
    assert refused.status_code == 400
    assert refused.json["error"]["details"]["field"] == field
    assert timeline(app, incident_id) == before
    viewer = app.post(
        f"/api/v1/incidents/{incident_id}/follow-ups",
        json={"text": "x", "owner": "ada", "due": "2026-12-19"},
        headers=VIEWER,
    )
    assert viewer.status_code == 403


def test_an_overdue_postmortem_is_said_once_on_the_timeline_and_in_chat(
    mitigation: MitigationBench, chat: ChatStandIn, queue: Queue
) -> None:
    app = _app(mitigation)
    doc = latency()
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    post(app, resolved(doc))
    run_jobs(queue)
    incident = app.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json
    assert incident["status"] == "resolved"
    due_at = incident["postmortem"]["due_at"]
    resolved_at = incident["resolved_at"]
    assert timeline_seconds(due_at) - timeline_seconds(resolved_at) == pytest.approx(
        5 * 86400, abs=1
    )
    (done,) = [m.body["text"] for m in chat.messages if m.body["text"].startswith(":white_check")]
    link = f"https://alertpilot.example/incidents/{incident_id}/postmortem"
    assert f"Postmortem draft: {link} (due {due_at})" in done
    before = len(chat.messages)
    due(queue, 4 * 24 * 3600)  # not due yet
    assert "postmortem_overdue" not in [e["kind"] for e in timeline(app, incident_id)]
    due(queue, 24 * 3600 + 60)
    overdue = [e for e in timeline(app, incident_id) if e["kind"] == "postmortem_overdue"]
    assert len(overdue) == 1
    assert f"alertpilot postmortem {incident_id}" in overdue[0]["message"]
    (reminder,) = [m.body["text"] for m in chat.messages[before:]]
    assert "A person is needed" in reminder and "postmortem" in reminder
    due(queue, 24 * 3600)
    assert len(chat.messages) == before + 1  # once


def test_a_postmortem_written_in_time_stays_quiet_and_needs_a_resolved_incident(
    mitigation: MitigationBench, chat: ChatStandIn, queue: Queue
) -> None:
    app = _app(mitigation)
    doc = latency()
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    early = _command(app, incident_id, "postmortem-written")
    assert early.status_code == 409  # still open
    post(app, resolved(doc))
    run_jobs(queue)
    bad = _command(app, incident_id, "postmortem-written", url="javascript:alert(1)")
    assert bad.status_code == 400 and bad.json["error"]["details"]["field"] == "url"
    written = _command(
        app, incident_id, "postmortem-written", url="https://docs.example/pm/incident-42"
    )
    assert written.status_code == 200
    assert written.json["entries"][0]["message"] == (
        "postmortem written, says rui: https://docs.example/pm/incident-42"
    )
    before = len(chat.messages)
    due(queue, 6 * 24 * 3600)
    kinds = [e["kind"] for e in timeline(app, incident_id)]
    assert "postmortem_overdue" not in kinds
    assert len(chat.messages) == before


def test_a_severity_without_postmortem_within_asks_for_none(
    mitigation: MitigationBench, queue: Queue
) -> None:
    app = mitigation.app(route("[notify]"))  # the test severities: no postmortem_within
    doc = latency()
    (incident_id,) = post(app, doc).json["incidents"]
    post(app, resolved(doc))
    run_jobs(queue)
    due(queue, 90 * 24 * 3600)
    assert "postmortem_overdue" not in [e["kind"] for e in timeline(app, incident_id)]
