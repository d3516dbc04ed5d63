"""The communication rhythm: status updates at the severity's cadence, page_after.

The clock is shortened, not mocked: a policy with a 1s cadence, and RQ's own
scheduler moving due jobs onto the queue.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import ADMIN, SEVERITIES, due, fetch, post, run_jobs, write_policy
from tests.test_communication import payments
from webhook.app import create_app
from workers import cadence
from workers.config import Settings

FAST = SEVERITIES.replace("update_every: 30m", "update_every: 1s").replace(
    "update_every: 1h", "update_every: 1s"
)
"""SEV0 and SEV1 update every second."""
ROUTES = """\
routes:
  - name: payments
    matchers: ['alertname="HighLatency"', 'service="payments"']
    severity: SEV1
    actions: [{page: {page_after: 2s}}, statuspage, notify]
"""


@pytest.fixture
def fast(live: FlaskClient, settings: Settings, redis: Redis, tmp_path: Path) -> FlaskClient:
    """The live app (vendors' stand-ins, dry run off) on a policy with a 1s cadence."""
    directory = write_policy(tmp_path / "policies", ROUTES, FAST)
    changed = replace(settings, policies_dir=directory, dry_run=False)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def test_updates_go_out_at_the_cadence_and_stop_at_resolve(
    fast: FlaskClient, queue: Queue, vendors: Any
) -> None:
    _, sp, chat = vendors
    (incident_id,) = post(fast, payments()).json["incidents"]
    run_jobs(queue)
    due(queue, 1.1)  # first tick: queues the update jobs and the next tick
    due(queue, 1.1)
    heads = [m.body["text"].splitlines()[0] for m in chat.messages]
    assert heads[0].startswith(":rotating_light: *SEV1 declared*")
    assert heads[1:] == [":information_source: *Update (SEV1)*: p95 latency above 2s for 5m"] * 2
    assert "Next update: in 1s" in chat.messages[1].body["text"]
    (status,) = sp.incidents.values()
    assert len(status["incident_updates"]) == 3  # opened, and two updates

    post(fast, payments("resolved"))
    assert queue.scheduled_job_registry.get_job_ids() == []  # the pending tick is cancelled
    run_jobs(queue)
    due(queue, 1.1)
    due(queue, 1.1)
    heads = [m.body["text"].splitlines()[0] for m in chat.messages]
    assert heads[-1].startswith(":white_check_mark: *Resolved*")
    assert sum(h.startswith(":information_source:") for h in heads) == 2  # none after resolve
    assert queue.scheduled_job_registry.get_job_ids() == []  # the chain has stopped
    assert fast.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json["status"] == "resolved"


def test_incident_resolved_inside_page_after_never_pages(
    fast: FlaskClient, queue: Queue, vendors: Any
) -> None:
    pd, _, _ = vendors
    (incident_id,) = post(fast, payments()).json["incidents"]
    run_jobs(queue)
    post(fast, payments("resolved"))
    run_jobs(queue)
    due(queue, 2.1)
    assert pd.requests == []
    timeline = fast.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json["timeline"]
    pages = [(e["transition"], e["kind"]) for e in timeline if e.get("action") == "page"]
    assert pages == [("resolved", "skipped"), ("declared", "skipped")]


def test_incident_still_firing_after_page_after_pages_once(
    fast: FlaskClient, queue: Queue, vendors: Any
) -> None:
    pd, _, _ = vendors
    post(fast, payments())
    run_jobs(queue)
    assert pd.events() == []
    due(queue, 2.1)
    assert len(pd.events("trigger")) == 1


ESCALATING = """\
routes:
  - name: checkout-down
    matchers: ['alertname="CheckoutDown"']
    severity: SEV1
    incident_key: shop
    actions: [notify]
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: shop
    actions: [notify]
"""


def test_escalation_moves_the_cadence_to_the_new_severity(
    live: FlaskClient, settings: Settings, redis: Redis, queue: Queue, vendors: Any, tmp_path: Path
) -> None:
    _, _, chat = vendors
    directory = write_policy(tmp_path / "policies", ESCALATING)
    (directory / "00-severities.yaml").write_text(FAST)
    changed = replace(settings, policies_dir=directory, dry_run=False)
    app = create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()
    (incident_id,) = post(app, payments()).json["incidents"]  # HighLatency: SEV2, every 4h
    down = payments()
    down["groupKey"] = '{}:{alertname="CheckoutDown"}'
    down["alerts"] = [dict(down["alerts"][0], fingerprint="feedfacefeedface")]
    down["alerts"][0]["labels"] = {**down["alerts"][0]["labels"], "alertname": "CheckoutDown"}
    assert post(app, down).json["incidents"] == [incident_id]  # escalated to SEV1, every 1s
    run_jobs(queue)
    due(queue, 1.1)
    heads = [m.body["text"].splitlines()[0] for m in chat.messages]
    assert heads[-1] == ":information_source: *Update (SEV1)*: p95 latency above 2s for 5m"
    # The SEV2 chain's tick, due in 4h, was cancelled by the escalation.
    scheduled = queue.scheduled_job_registry.get_job_ids()
    assert f"{incident_id}-tick-SEV2-1" not in scheduled
    assert fetch(queue, f"{incident_id}-tick-SEV2-1") is None
    assert f"{incident_id}-tick-SEV1-2" in scheduled


def test_a_tick_that_runs_twice_queues_its_updates_and_the_next_tick_once(
    fast: FlaskClient, queue: Queue, redis: Redis, vendors: Any
) -> None:
    (incident_id,) = post(fast, payments()).json["incidents"]
    run_jobs(queue)
    tick = {"prefix": "aptest:", "incident_id": incident_id, "severity": "SEV1", "n": 5}
    tick |= {"every": 3600, "public": True}
    first = cadence.tick(redis, queue, tick)
    again = cadence.tick(redis, queue, tick)  # a crash retry, or a requeue
    assert first["queued"] == ["notify", "statuspage"]
    assert again["queued"] == []
    next_tick = fetch(queue, f"{incident_id}-tick-SEV1-6")
    assert next_tick is not None
    scheduled = queue.scheduled_job_registry.get_scheduled_time(next_tick)
    assert scheduled.timestamp() > time.time() + 3500  # not pushed back by the second run


PAGING = """\
routes:
  - name: checkout-down
    matchers: ['alertname="CheckoutDown"']
    severity: SEV1
    incident_key: shop
    actions: [{page: {routing_key_env: PD_KEY_CHECKOUT}}, notify]
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: shop
    actions: [{page: {routing_key_env: PD_KEY_API, page_after: 1s}}, notify]
"""
KEY_API = "A" * 32
KEY_CHECKOUT = "C" * 32


@pytest.fixture
def paging(
    live: FlaskClient,
    settings: Settings,
    redis: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FlaskClient:
    monkeypatch.setenv("PD_KEY_API", KEY_API)
    monkeypatch.setenv("PD_KEY_CHECKOUT", KEY_CHECKOUT)
    directory = write_policy(tmp_path / "policies", PAGING)
    (directory / "00-severities.yaml").write_text(FAST)
    changed = replace(settings, policies_dir=directory, dry_run=False)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def _checkout_down() -> dict[str, Any]:
    down = payments()
    down["groupKey"] = '{}:{alertname="CheckoutDown"}'
    down["alerts"] = [dict(down["alerts"][0], fingerprint="feedfacefeedface")]
    down["alerts"][0]["labels"] = {**down["alerts"][0]["labels"], "alertname": "CheckoutDown"}
    return down


def test_escalation_inside_page_after_pages_once_at_the_new_severity(
    paging: FlaskClient, queue: Queue, vendors: Any
) -> None:
    pd, _, _ = vendors
    post(paging, payments())  # SEV2: its page waits 1s
    post(paging, _checkout_down())  # SEV1 at once
    run_jobs(queue)
    due(queue, 1.1)  # the SEV2 page comes due: superseded
    triggers = pd.events("trigger")
    assert [(t["routing_key"], t["payload"]["severity"]) for t in triggers] == [
        (KEY_CHECKOUT, "critical")
    ]


def test_resolve_reaches_every_routing_key_that_was_paged(
    paging: FlaskClient, queue: Queue, vendors: Any
) -> None:
    pd, _, _ = vendors
    (incident_id,) = post(paging, payments()).json["incidents"]
    run_jobs(queue)
    due(queue, 1.1)  # SEV2 page to the API team's key
    post(paging, _checkout_down())  # escalation pages the checkout team's key
    run_jobs(queue)
    post(paging, payments("resolved"))
    down = _checkout_down()
    down["alerts"][0]["status"] = "resolved"
    post(paging, down)
    run_jobs(queue)
    assert pd.alerts[(KEY_API, incident_id)] == "resolved"
    assert pd.alerts[(KEY_CHECKOUT, incident_id)] == "resolved"
