"""End to end with Debian's real Alertmanager posting to the running app.

Alertmanager groups, waits, re-sends on repeat_interval and sends the resolve;
alertpilot must turn that into one incident, one set of jobs, and a resolve.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from werkzeug.serving import make_server

from tests.conftest import ADMIN, TOKEN, queued_ids, run_jobs
from tests.support.alertmanager import run_alertmanager
from workers.jobs.contract import lanes

pytestmark = pytest.mark.e2e


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def scheduled_ids(queue: Queue) -> list[str]:
    """The chat messages waiting for their time, or for the runbook's run to release them."""
    return [
        job_id
        for lane in lanes(queue)
        for job_id in lane.scheduled_job_registry.get_job_ids()
        if job_id.endswith("-notify")
    ]


def _incidents(client: FlaskClient, status: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get(
        f"/api/v1/incidents?status={status}", headers=ADMIN
    ).json["incidents"]
    return found


def test_alertmanager_notifications_become_one_incident_and_resolve_it(
    app: Flask, client: FlaskClient, live_server: str, queue: Queue, redis: Redis, tmp_path: Path
) -> None:
    registry = app.extensions["alertpilot"].metrics.registry

    def received(outcome: str) -> float:
        value = registry.get_sample_value(
            "alertpilot_notifications_received_total", {"outcome": outcome}
        )
        return value or 0.0

    url = f"{live_server}/api/v1/alertmanager"
    with run_alertmanager(url, bearer_token=TOKEN, workdir=tmp_path) as am:
        labels = {"alertname": "HighLatency", "service": "payments", "namespace": "prod"}
        alerts = [
            am.firing({**labels, "deployment": "payments-api"}, {"summary": "p95 above 2s"}),
            am.firing({**labels, "deployment": "payments-worker"}, {"summary": "p95 above 2s"}),
        ]
        am.post_alerts(alerts)

        (incident,) = wait_for("the incident", lambda: _incidents(client, "open"))
        assert (incident["severity"], incident["route"]) == ("SEV1", "payments-latency")
        assert incident["alerts_firing"] == 2
        declared = sorted(queued_ids(queue) + scheduled_ids(queue))

        # repeat_interval (4s) makes Alertmanager send the same group again.
        wait_for("a repeat notification", lambda: received("duplicate") >= 1, timeout=30)
        assert received("accepted") == 1, am.log()
        assert len(_incidents(client, "open")) == 1
        assert sorted(queued_ids(queue) + scheduled_ids(queue)) == declared
        book = f"{incident['id']}-runbook-declared"  # the route's runbook, run once
        actions = sorted(job_id.rsplit("-", 1)[1] for job_id in declared if job_id != book)
        # The route's page, statuspage, notify and scale_up; SEV1's war room (the policy).
        assert actions == ["notify", "page", "scale_up", "statuspage", "war_room"]
        assert book in declared

        run_jobs(queue)
        am.post_alerts([am.resolved(a) for a in alerts])
        (resolved,) = wait_for("the resolve", lambda: _incidents(client, "resolved"))
        assert resolved["id"] == incident["id"]
        assert _incidents(client, "open") == []
        resolve_jobs = sorted(queued_ids(queue) + scheduled_ids(queue))
        assert resolve_jobs == sorted(
            [
                *(
                    f"{incident['id']}-resolved-{action}"
                    for action in ("page", "statuspage", "notify", "war_room")
                ),
                f"{incident['id']}-runbook-resolved",  # the last snapshot
            ]
        )


def test_ha_pair_of_alertmanagers_pages_and_opens_the_status_page_once(
    live: FlaskClient, queue: Queue, vendors: Any, redis: Redis, tmp_path: Path
) -> None:
    """Two Alertmanagers both post every notification (and repeat it); each effect happens once."""
    pd, sp, chat = vendors
    app = live.application
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/v1/alertmanager"
    try:
        with (
            run_alertmanager(url, bearer_token=TOKEN, workdir=tmp_path / "am1") as am1,
            run_alertmanager(url, bearer_token=TOKEN, workdir=tmp_path / "am2") as am2,
        ):
            labels = {"alertname": "HighLatency", "service": "payments", "namespace": "prod"}
            alert = am1.firing({**labels, "deployment": "payments-api"}, {"summary": "slow"})
            for am in (am1, am2):
                am.post_alerts([alert])
            (incident,) = wait_for("the incident", lambda: _incidents(live, "open"))
            registry = app.extensions["alertpilot"].metrics.registry

            def received(outcome: str) -> float:
                value = registry.get_sample_value(
                    "alertpilot_notifications_received_total", {"outcome": outcome}
                )
                return value or 0.0

            # Both peers' first sends and at least one repeat each have arrived.
            wait_for("repeats from both peers", lambda: received("duplicate") >= 3, timeout=30)
            run_jobs(queue)
            assert len(pd.events("trigger")) == 1
            assert len(sp.incidents) == 1

            for am in (am1, am2):
                am.post_alerts([am.resolved(alert)])
            wait_for("the resolve", lambda: _incidents(live, "resolved"))
            time.sleep(3)  # the other peer's resolve, and any repeat, arrive too
            run_jobs(queue)
    finally:
        server.shutdown()
    assert [e["event_action"] for e in pd.events()] == ["trigger", "resolve"]
    assert pd.events()[0]["dedup_key"] == incident["id"]
    (status_incident,) = sp.incidents.values()
    assert status_incident["status"] == "resolved"
    assert len([r for r in sp.requests if r.method == "POST"]) == 1
    assert len(chat.messages) == 2  # declared, resolved
