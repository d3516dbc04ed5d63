"""Incident state at intake: transitions, resends, HA twins, escalation, resolve."""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import ConnectionPool, Redis
from redis.connection import Connection
from rq import Queue

from tests.conftest import ADMIN, AUTH, REDIS_URL, fixture, post, queued_ids, write_policy
from webhook.app import create_app
from workers.config import Settings


def _queued(queue: Queue) -> list[str]:
    return list(queued_ids(queue))


def _incident(client: FlaskClient, incident_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = client.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    return doc


def test_first_firing_alert_declares_an_incident_with_the_policy_severity(
    client: FlaskClient, queue: Queue
) -> None:
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    incident = _incident(client, incident_id)
    assert (incident["severity"], incident["route"], incident["status"]) == (
        "SEV2",
        "api-latency",
        "open",
    )
    assert incident["severity_name"] == "Medium"
    assert {a["fingerprint"] for a in incident["alerts"]} == {
        "d9ccd8014b804fee",
        "a5614730762ac895",
    }
    assert [e["kind"] for e in incident["timeline"]] == ["declared"]
    assert len(_queued(queue)) == 3


def test_resend_of_same_notification_changes_nothing_and_enqueues_nothing(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    post(client, fixture("firing-two-alerts.json"))
    before = {k: redis.dump(k) for k in redis.keys("aptest:incident*")}
    again = post(client, fixture("firing-two-alerts.json"))
    assert again.json == {"status": "duplicate", "incidents": [], "jobs": [], "policy": None}
    assert {k: redis.dump(k) for k in redis.keys("aptest:incident*")} == before
    assert len(_queued(queue)) == 3


def test_ha_twins_arriving_together_declare_one_incident(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    """Both Alertmanagers of an HA pair post the same notification at the same moment."""
    apps = [create_app(settings, redis=redis, registry=CollectorRegistry()) for _ in range(2)]
    results: list[dict[str, Any]] = []
    start = threading.Barrier(8)

    def send(index: int) -> None:
        start.wait()
        results.append(post(apps[index % 2].test_client(), fixture("firing-two-alerts.json")).json)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(r["status"] for r in results) == ["accepted"] + ["duplicate"] * 7
    assert redis.zcard("aptest:incidents:open") == 1
    assert len(_queued(queue)) == 3


def test_one_alert_resolving_keeps_the_incident_open_without_jobs(
    client: FlaskClient, queue: Queue
) -> None:
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    response = post(client, fixture("one-resolved-one-firing.json"))
    assert response.json["status"] == "accepted"
    assert response.json["jobs"] == []
    incident = _incident(client, incident_id)
    assert incident["status"] == "open"
    assert [e["kind"] for e in incident["timeline"]] == ["declared", "alert_resolved"]
    assert len(_queued(queue)) == 3


def _all_resolved() -> dict[str, Any]:
    doc = copy.deepcopy(fixture("one-resolved-one-firing.json"))
    doc["status"] = "resolved"
    for alert in doc["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-26T23:40:00Z"
    return doc


def test_all_alerts_resolved_resolves_the_incident_and_queues_resolve_jobs(
    client: FlaskClient, queue: Queue
) -> None:
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    response = post(client, _all_resolved())
    assert response.json["jobs"] == [
        f"{incident_id}-resolved-page",
        f"{incident_id}-resolved-notify",
        f"{incident_id}-resolved-scale_up",  # the revert, after the stabilisation window
    ]
    incident = _incident(client, incident_id)
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] is not None
    resolved = client.get("/api/v1/incidents?status=resolved", headers=ADMIN).json
    assert [i["id"] for i in resolved["incidents"]] == [incident_id]
    assert client.get("/api/v1/incidents?status=open", headers=ADMIN).json["incidents"] == []


def test_resolved_incident_is_kept_for_the_retention_period_only(
    client: FlaskClient, redis: Redis, settings: Settings
) -> None:
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    assert redis.ttl(f"aptest:incident:{incident_id}") == -1  # open: kept
    post(client, _all_resolved())
    for key in (f"aptest:incident:{incident_id}", f"aptest:incident:{incident_id}:timeline"):
        assert 0 < redis.ttl(key) <= settings.retention_seconds


def test_alert_firing_again_after_resolve_declares_a_new_incident(client: FlaskClient) -> None:
    (first,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    post(client, _all_resolved())
    refire = fixture("firing-two-alerts.json")
    for alert in refire["alerts"]:
        alert["startsAt"] = "2026-11-27T02:00:00Z"
    (second,) = post(client, refire).json["incidents"]
    assert second != first
    assert _incident(client, second)["status"] == "open"
    assert _incident(client, first)["status"] == "resolved"


def test_lagging_ha_twin_after_resolve_neither_reopens_nor_pages(
    client: FlaskClient, queue: Queue
) -> None:
    """AM1 sent firing then resolved; AM2's delayed copies arrive after both."""
    post(client, fixture("firing-two-alerts.json"))
    post(client, _all_resolved())
    queued = sorted(queued_ids(queue))
    late_firing = post(client, fixture("firing-two-alerts.json"))
    late_resolve = post(client, _all_resolved())
    assert late_firing.json["status"] == "duplicate"
    assert (late_firing.json["incidents"], late_firing.json["jobs"]) == ([], [])
    assert late_resolve.json["status"] == "duplicate"
    assert client.get("/api/v1/incidents?status=open", headers=ADMIN).json["incidents"] == []
    assert sorted(queued_ids(queue)) == queued


def test_lagging_ha_twin_cannot_flip_a_resolved_alert_back_to_firing(
    client: FlaskClient,
) -> None:
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    post(client, fixture("one-resolved-one-firing.json"))  # AM1: d9cc resolved
    assert post(client, fixture("firing-two-alerts.json")).json["status"] == "duplicate"  # AM2
    incident = _incident(client, incident_id)
    firing = [a["fingerprint"] for a in incident["alerts"] if a["status"] == "firing"]
    assert firing == ["a5614730762ac895"]
    # So the last alert resolving resolves the incident (it would stay open forever).
    last = fixture("one-resolved-one-firing.json")
    last["alerts"] = [dict(last["alerts"][1], status="resolved", endsAt="2026-11-26T23:50:00Z")]
    assert post(client, last).json["jobs"]
    assert _incident(client, incident_id)["status"] == "resolved"


def test_same_alert_instance_firing_after_the_stale_window_declares_again(
    settings: Settings, redis: Redis
) -> None:
    """Alertmanager resolved it on endsAt (Prometheus unreachable), then it came back."""
    no_window = replace(settings, stale_window_seconds=0)
    client = create_app(no_window, redis=redis, registry=CollectorRegistry()).test_client()
    (first,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    post(client, _all_resolved())
    again = post(client, fixture("firing-two-alerts.json"))
    assert again.json["status"] == "accepted"
    assert again.json["incidents"] != [first]


def test_truncated_notification_does_not_resolve_the_incident(client: FlaskClient) -> None:
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    truncated = _all_resolved()
    truncated["truncatedAlerts"] = 3  # max_alerts cut firing alerts we cannot see
    assert post(client, truncated).json["jobs"] == []
    incident = _incident(client, incident_id)
    assert incident["status"] == "open"
    assert incident["timeline"][-1]["kind"] == "resolve_deferred"


def test_incident_whose_severity_left_the_policy_still_takes_alerts(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    """A policy PR renamed SEV2 while an incident of that severity was open."""
    old = write_policy(tmp_path / "old", ESCALATING_ROUTES)
    renamed = tmp_path / "new"
    renamed.mkdir()
    for path in old.iterdir():
        (renamed / path.name).write_text(path.read_text().replace("SEV2", "SEV2b"))
    before = create_app(replace(settings, policies_dir=old), redis=redis).test_client()
    (incident_id,) = post(before, fixture("firing-two-alerts.json")).json["incidents"]
    after = create_app(replace(settings, policies_dir=renamed), redis=redis).test_client()
    doc = fixture("firing-two-alerts.json")
    doc["alerts"][0]["fingerprint"] = "0123456789abcdef"
    response = post(after, doc)
    assert response.status_code == 200
    assert response.json["incidents"] == [incident_id]


def test_new_alert_joins_the_open_incident(client: FlaskClient, queue: Queue) -> None:
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    doc = fixture("firing-two-alerts.json")
    extra = copy.deepcopy(doc["alerts"][0])
    extra["fingerprint"] = "0123456789abcdef"
    extra["labels"]["deployment"] = "api-batch"
    doc["alerts"].append(extra)
    response = post(client, doc)
    assert (response.json["status"], response.json["jobs"]) == ("accepted", [])
    assert response.json["incidents"] == [incident_id]
    incident = _incident(client, incident_id)
    assert incident["alerts_firing"] == 3
    assert incident["timeline"][-1]["kind"] == "alert_added"


ESCALATING_ROUTES = """\
routes:
  - name: checkout-down
    matchers: ['alertname="CheckoutDown"']
    severity: SEV0
    incident_key: "svc/{{ labels.service }}"
    actions: [page, statuspage, notify, {scale_up: {by: 1}}]
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: "svc/{{ labels.service }}"
    actions: [page, notify, {scale_up: {by: 2}}]
"""


def test_higher_severity_alert_escalates_and_requeues_communication(
    settings: Settings, redis: Redis, queue: Queue, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policies", ESCALATING_ROUTES)
    client = create_app(
        replace(settings, policies_dir=policy),
        redis=redis,
        registry=CollectorRegistry(),
    ).test_client()
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    doc = fixture("firing-two-alerts.json")
    doc["groupKey"] = '{}:{alertname="CheckoutDown"}'
    doc["alerts"] = [copy.deepcopy(doc["alerts"][0])]
    doc["alerts"][0]["labels"]["alertname"] = "CheckoutDown"
    doc["alerts"][0]["fingerprint"] = "feedfacefeedface"
    response = post(client, doc)
    tag = f"{incident_id}-escalated-SEV0"
    assert response.json["incidents"] == [incident_id]
    assert response.json["jobs"] == [f"{tag}-page", f"{tag}-statuspage", f"{tag}-notify"]
    incident = _incident(client, incident_id)
    assert (incident["severity"], incident["route"]) == ("SEV0", "checkout-down")
    assert incident["timeline"][-1]["kind"] == "escalated"
    assert incident["actions"] == ["page", "notify", "scale_up", "statuspage"]


class CountingConnection(Connection):
    """A redis-py connection that counts round trips (every packed send is one)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


@pytest.mark.parametrize(("cache", "round_trips"), [(5.0, 0), (0.0, 1)])
def test_resend_costs_one_redis_round_trip_or_none_from_the_process_cache(
    settings: Settings, redis: Redis, cache: float, round_trips: int
) -> None:
    pool = ConnectionPool.from_url(REDIS_URL, connection_class=CountingConnection)
    counted = Redis(connection_pool=pool)
    cached = replace(settings, resend_cache_seconds=cache)
    client = create_app(cached, redis=counted, registry=CollectorRegistry()).test_client()
    post(client, fixture("firing-two-alerts.json"))
    CountingConnection.sends = 0
    assert post(client, fixture("firing-two-alerts.json")).json["status"] == "duplicate"
    assert CountingConnection.sends == round_trips  # none, or a GET of the group digest
    pool.disconnect()


def test_a_cached_digest_is_only_one_redis_held(settings: Settings, redis: Redis) -> None:
    """A notification whose alerts were stale leaves the group's digest as it was: its
    next copy must be evaluated again (round trips to Redis), not answered from the
    process cache."""
    pool = ConnectionPool.from_url(REDIS_URL, connection_class=CountingConnection)
    counted = Redis(connection_pool=pool)
    client = create_app(settings, redis=counted, registry=CollectorRegistry()).test_client()
    firing = fixture("firing-two-alerts.json")
    post(client, firing)
    resolved = fixture("firing-two-alerts.json")
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2030-01-01T00:00:00Z"
    assert post(client, resolved).json["status"] == "accepted"
    assert post(client, firing).json["status"] == "duplicate"  # a lagging twin: stale
    CountingConnection.sends = 0
    assert post(client, firing).json["status"] == "duplicate"
    assert CountingConnection.sends > 1  # read and evaluated again, not taken from the cache
    pool.disconnect()


def test_a_new_incident_costs_three_redis_round_trips(settings: Settings, redis: Redis) -> None:
    """The digest check; WATCH and every read the decision needs, in one batch;
    MULTI..EXEC. It was seven: the WATCH and each read under it were round trips."""
    pool = ConnectionPool.from_url(REDIS_URL, connection_class=CountingConnection)
    counted = Redis(connection_pool=pool)
    client = create_app(settings, redis=counted, registry=CollectorRegistry()).test_client()
    post(client, fixture("firing-two-alerts.json"))  # connections made, scripts seen
    other = fixture("firing-two-alerts.json")
    other["groupKey"] = '{}:{alertname="Other"}'
    for alert in other["alerts"]:
        alert["labels"]["alertname"] = "Other"
        alert["fingerprint"] = "f" + alert["fingerprint"][1:]
    CountingConnection.sends = 0
    assert post(client, other).json["status"] == "accepted"
    assert CountingConnection.sends == 3
    pool.disconnect()


def _counting_client(settings: Settings) -> tuple[FlaskClient, CollectorRegistry, ConnectionPool]:
    pool = ConnectionPool.from_url(REDIS_URL, connection_class=CountingConnection)
    registry = CollectorRegistry()
    app = create_app(settings, redis=Redis(connection_pool=pool), registry=registry)
    return app.test_client(), registry, pool


def _raw(client: FlaskClient, body: bytes, **headers: str) -> Any:
    return client.post(
        "/api/v1/alertmanager",
        data=body,
        headers={**AUTH, **headers},
        content_type="application/json",
    )


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_byte_for_byte_resend_is_counted_like_any_duplicate(
    settings: Settings, redis: Redis
) -> None:
    """Answered from the process's cache of bodies, without Redis: still one duplicate
    notification and its two firing alerts on the counters."""
    client, registry, pool = _counting_client(settings)
    body = json.dumps(fixture("firing-two-alerts.json")).encode()
    assert _raw(client, body).json["status"] == "accepted"
    CountingConnection.sends = 0
    answer = _raw(client, body).json
    assert answer == {"status": "duplicate", "incidents": [], "jobs": [], "policy": None}
    assert CountingConnection.sends == 0
    received = "alertpilot_notifications_received_total"
    assert _sample(registry, received, outcome="duplicate") == 1
    assert _sample(registry, "alertpilot_alerts_received_total", status="firing") == 4
    pool.disconnect()


def test_a_cached_body_still_needs_credentials_and_its_content_type(
    settings: Settings, redis: Redis
) -> None:
    client, registry, pool = _counting_client(settings)
    body = json.dumps(fixture("firing-two-alerts.json")).encode()
    _raw(client, body)
    assert _raw(client, body, Authorization="Bearer wrong").status_code == 401
    wrong_type = client.post("/api/v1/alertmanager", data=body, headers=AUTH)
    assert wrong_type.status_code == 415
    received = "alertpilot_notifications_received_total"
    assert _sample(registry, received, outcome="rejected") == 2
    assert _sample(registry, received, outcome="duplicate") == 0
    pool.disconnect()


def test_an_old_body_whose_group_moved_on_is_evaluated_again(
    settings: Settings, redis: Redis
) -> None:
    """The same bytes as an applied notification, after a later one changed its group
    (a resolve, then a lagging copy of the firing state), are not taken from the body
    cache: they are evaluated against Redis, and found stale there."""
    client, _, pool = _counting_client(settings)
    firing = fixture("firing-two-alerts.json")
    body = json.dumps(firing).encode()
    assert _raw(client, body).json["status"] == "accepted"
    resolved = copy.deepcopy(firing)
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2030-01-01T00:00:00Z"
    assert post(client, resolved).json["status"] == "accepted"
    CountingConnection.sends = 0
    assert _raw(client, body).json["status"] == "duplicate"  # stale, as decided by Redis
    assert CountingConnection.sends > 1
    incidents = client.get("/api/v1/incidents", headers=ADMIN).json["incidents"]
    assert [i["status"] for i in incidents] == ["resolved"]
    pool.disconnect()


def test_no_body_cache_when_the_resend_cache_is_off(settings: Settings, redis: Redis) -> None:
    client, _, pool = _counting_client(replace(settings, resend_cache_seconds=0))
    body = json.dumps(fixture("firing-two-alerts.json")).encode()
    _raw(client, body)
    CountingConnection.sends = 0
    assert _raw(client, body).json["status"] == "duplicate"
    assert CountingConnection.sends == 1  # the group's digest, read from Redis
    pool.disconnect()
