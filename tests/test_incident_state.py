"""Incident state that input cannot corrupt: zone-less times, alerts that leave their group
without a resolve, incident keys whose labels are missing."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import ADMIN, fixture, post, queued_ids, write_policy
from webhook.app import create_app
from webhook.policy.commands import explain_alerts
from workers.config import Settings
from workers.policy import evaluate, load_policy


def _incident(client: FlaskClient, incident_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = client.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    return doc


def _firing() -> dict[str, Any]:
    return copy.deepcopy(fixture("firing-two-alerts.json"))


def _resolved(doc: dict[str, Any], *fingerprints: str) -> dict[str, Any]:
    done = copy.deepcopy(doc)
    for alert in done["alerts"]:
        if not fingerprints or alert["fingerprint"] in fingerprints:
            alert["status"], alert["endsAt"] = "resolved", "2026-11-27T00:30:00Z"
    if all(a["status"] == "resolved" for a in done["alerts"]):
        done["status"] = "resolved"
    return done


def test_a_time_without_a_zone_is_a_400_naming_the_field_and_changes_nothing(
    client: FlaskClient, redis: Redis
) -> None:
    doc = _firing()
    doc["alerts"][1]["startsAt"] = "0001-01-01T00:00:00"
    response = post(client, doc)
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "alerts[1].startsAt"
    assert redis.keys("aptest:*") == []


def test_times_out_of_range_or_not_rfc3339_are_a_400(client: FlaskClient) -> None:
    for bad in ("9999-12-31T23:59:59-01:00", "2026-11-27", "2026-W48", "20261127T000000Z"):
        doc = _firing()
        doc["alerts"][0]["endsAt"] = bad
        response = post(client, doc)
        assert response.status_code == 400, bad
        assert response.json["error"]["details"]["field"] == "alerts[0].endsAt"


def test_go_zero_time_and_nanoseconds_are_accepted(client: FlaskClient) -> None:
    doc = _firing()
    doc["alerts"][0]["startsAt"] = "0001-01-01T00:00:00Z"
    doc["alerts"][1]["startsAt"] = "2026-11-26T23:10:00.123456789+01:00"
    assert post(client, doc).json["status"] == "accepted"


def test_a_stored_time_without_a_zone_does_not_stop_the_incident_from_resolving(
    client: FlaskClient, redis: Redis
) -> None:
    (incident_id,) = post(client, _firing()).json["incidents"]
    # A record written before times were checked strictly, with a zone-less startsAt.
    key = f"aptest:incident:{incident_id}"
    record = json.loads(redis.get(key) or b"{}")
    for state in record["alerts"].values():
        state["starts_at"] = "0001-01-01T00:00:00"
    redis.set(key, json.dumps(record))

    response = post(client, _resolved(_firing()))

    assert response.status_code == 200
    assert _incident(client, incident_id)["status"] == "resolved"


def test_an_alert_missing_from_a_complete_notification_has_ended(
    client: FlaskClient, queue: Queue
) -> None:
    both = _firing()
    (incident_id,) = post(client, both).json["incidents"]
    only_a = copy.deepcopy(both)
    only_a["alerts"] = [both["alerts"][0]]  # B silenced: Alertmanager stops listing it
    assert post(client, only_a).json["status"] == "accepted"
    incident = _incident(client, incident_id)
    assert incident["status"] == "open"
    left = incident["timeline"][-1]
    assert left["kind"] == "alert_left"
    assert left["fingerprint"] == both["alerts"][1]["fingerprint"]

    post(client, _resolved(only_a))

    assert _incident(client, incident_id)["status"] == "resolved"
    assert f"{incident_id}-resolved-page" in queued_ids(queue)


def test_an_alert_missing_from_a_truncated_notification_is_still_firing(
    client: FlaskClient,
) -> None:
    both = _firing()
    (incident_id,) = post(client, both).json["incidents"]
    only_a = copy.deepcopy(both)
    only_a["alerts"], only_a["truncatedAlerts"] = [both["alerts"][0]], 1

    post(client, _resolved(only_a))

    incident = _incident(client, incident_id)
    assert incident["status"] == "open"
    assert [e["kind"] for e in incident["timeline"]][-1] != "alert_left"


def test_a_lagging_twin_listing_an_alert_that_left_does_not_bring_it_back(
    client: FlaskClient,
) -> None:
    both = _firing()
    (incident_id,) = post(client, both).json["incidents"]
    only_a = copy.deepcopy(both)
    only_a["alerts"] = [both["alerts"][0]]
    post(client, only_a)
    post(client, _resolved(only_a))

    late = post(client, both)  # the other Alertmanager, before the silence reached it

    assert late.json["incidents"] == []
    assert _incident(client, incident_id)["status"] == "resolved"


def test_an_alert_of_another_group_is_not_ended_by_this_groups_notification(
    tmp_path: Path, settings: Any, redis: Redis
) -> None:
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from webhook.app import create_app

    routes = """\
routes:
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: "latency/{{ labels.namespace }}"
    actions: [notify]
"""
    directory = write_policy(tmp_path / "p", routes)
    client = create_app(
        replace(settings, policies_dir=directory), redis=redis, registry=CollectorRegistry()
    ).test_client()
    first = _firing()
    first["alerts"] = [first["alerts"][0]]
    second = copy.deepcopy(first)
    second["groupKey"] = '{}:{alertname="HighLatency", pod="other"}'
    second["alerts"][0]["fingerprint"] = "00000000000000aa"
    (incident_id,) = post(client, first).json["incidents"]
    assert post(client, second).json["incidents"] == [incident_id]  # same incident key

    resend = copy.deepcopy(first)
    resend["alerts"][0]["annotations"]["summary"] = "still slow"  # a changed resend
    resend["alerts"][0]["startsAt"] = "2026-11-26T23:11:00Z"
    post(client, resend)

    incident = _incident(client, incident_id)
    assert "00000000000000aa" in {a["fingerprint"] for a in incident["alerts"]}
    assert "alert_left" not in [e["kind"] for e in incident["timeline"]]


SHIPPED_KEY = "latency/{{ labels.service }}"


def test_an_incident_key_with_a_missing_label_falls_back_to_the_default_key(
    policies_dir: Path,
) -> None:
    policy = load_policy(policies_dir)
    labels = {"alertname": "HighLatency", "namespace": "production", "deployment": "api"}
    api = evaluate(policy, labels, group_key="{}:{namespace=production}")
    web = evaluate(
        policy, {**labels, "namespace": "staging", "deployment": "web"}, group_key="{}:{web}"
    )
    assert api[0].incident_key == "{}:{namespace=production}|api-latency"
    assert web[0].incident_key == "{}:{web}|api-latency"
    assert api[0].key_fallback is not None and "renders empty" in api[0].key_fallback
    with_service = evaluate(policy, {**labels, "service": "api"}, group_key="g")
    assert with_service[0].incident_key == "latency/api"


def test_two_unrelated_groups_without_the_keyed_label_get_two_incidents(
    client: FlaskClient,
) -> None:
    prod = _firing()
    prod["alerts"] = [prod["alerts"][0]]
    for alert in prod["alerts"]:
        alert["labels"].pop("service", None)
    staging = copy.deepcopy(prod)
    staging["groupKey"] = '{}:{alertname="HighLatency", namespace="staging"}'
    staging["alerts"][0]["labels"]["namespace"] = "staging"
    staging["alerts"][0]["fingerprint"] = "00000000000000bb"

    (first,) = post(client, prod).json["incidents"]
    (second,) = post(client, staging).json["incidents"]

    assert first != second


def test_validate_and_explain_show_the_key_fallback(
    tmp_path: Path, policies_dir: Path, capsys: Any
) -> None:
    policy = load_policy(policies_dir)
    assert any(
        "incident_key renders a part empty" in str(p) and "fall back" in str(p)
        for p in policy.warnings
    )
    import io

    out, err = io.StringIO(), io.StringIO()
    code = explain_alerts(
        policies_dir, out, err, labels={"alertname": "HighLatency"}, notification=None
    )
    assert code == 0
    assert "incident_key is not used: a part of it renders empty" in out.getvalue()


def _client(settings: Settings, redis: Redis, directory: Path) -> FlaskClient:
    changed = replace(settings, policies_dir=directory)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def test_an_alert_back_from_a_lifted_silence_counts_as_firing_again(
    client: FlaskClient,
) -> None:
    """B is silenced (missing from a complete notification: 'alert_left', counted as ended);
    the silence is lifted minutes later and Alertmanager lists B again, same startsAt (the
    alert never stopped firing in Prometheus). The stale window (15m) drops that as a
    'lagging twin', so B is invisible: when A resolves the incident resolves, the page and
    status page are resolved, while B is still firing."""
    both = _firing()
    (incident_id,) = post(client, both).json["incidents"]
    only_a = copy.deepcopy(both)
    only_a["alerts"] = [both["alerts"][0]]
    post(client, only_a)  # B silenced
    post(client, both)  # silence lifted: B listed again, still firing

    b = both["alerts"][1]["fingerprint"]
    state = {a["fingerprint"]: a["status"] for a in _incident(client, incident_id)["alerts"]}
    assert state[b] == "firing"

    a = both["alerts"][0]["fingerprint"]
    post(client, _resolved(both, a))  # A resolves, B still fires
    assert _incident(client, incident_id)["status"] == "open"


def test_a_lagging_twin_that_has_not_seen_a_new_alert_does_not_end_it(
    client: FlaskClient,
) -> None:
    """HA pair: Alertmanager 1 sends [A, B] (B just started); Alertmanager 2, whose
    group has not yet picked B up, sends its complete notification [A] a moment later.
    B is taken as 'left its group' and then every resend listing B (same startsAt) is
    dropped as stale for the whole stale window: A resolving resolves the incident
    while B fires."""
    doc = _firing()
    a_only = copy.deepcopy(doc)
    a_only["alerts"] = [doc["alerts"][0]]
    (incident_id,) = post(client, a_only).json["incidents"]
    post(client, doc)  # AM 1: B joins
    post(client, a_only)  # AM 2, lagging: has not seen B yet
    post(client, doc)  # AM 1's next resend: B still firing

    a = doc["alerts"][0]["fingerprint"]
    post(client, _resolved(doc, a))
    incident = _incident(client, incident_id)
    assert incident["status"] == "open", [e["kind"] for e in incident["timeline"]]


def test_an_alert_that_leaves_a_group_spread_over_two_incidents_ends(
    tmp_path: Path, settings: Settings, redis: Redis
) -> None:
    """One Alertmanager group, two routes (so two incidents, keyed groupKey|route). B
    (route 'canary') is silenced: the complete notification lists only A. `_left` runs
    only for incidents the notification has alerts for, so B's incident stays open and
    firing forever (issue 6, still there when a group spans routes)."""
    routes = """\
routes:
  - name: canary
    matchers: ['deployment="api-canary"']
    severity: SEV2
    actions: [notify]
  - name: api
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    actions: [notify]
"""
    client = _client(settings, redis, write_policy(tmp_path / "p", routes))
    both = _firing()
    first, second = post(client, both).json["incidents"]
    only_a = copy.deepcopy(both)
    only_a["alerts"] = [both["alerts"][0]]  # B (api-canary) silenced
    post(client, only_a)
    post(client, _resolved(only_a))

    statuses = {i: _incident(client, i)["status"] for i in (first, second)}
    assert statuses == {first: "resolved", second: "resolved"}


def test_an_incident_key_whose_label_is_missing_inside_an_expression_falls_back(
    tmp_path: Path, settings: Settings, redis: Redis
) -> None:
    """`incident_key: "{{ 'latency/' ~ labels.service }}"` is the shipped key written as
    one expression: the missing label renders empty inside it, the part as a whole does
    not, so the fallback never triggers and production/api and staging/web (different
    groups, no service label) share incident 'latency/' again (issue 7)."""
    routes = """\
routes:
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: "{{ 'latency/' ~ labels.service }}"
    actions: [notify]
"""
    client = _client(settings, redis, write_policy(tmp_path / "p", routes))
    prod = _firing()
    prod["alerts"] = [prod["alerts"][0]]
    prod["alerts"][0]["labels"].pop("service")
    staging = copy.deepcopy(prod)
    staging["groupKey"] = '{}:{alertname="HighLatency", namespace="staging"}'
    staging["alerts"][0]["labels"] |= {"namespace": "staging", "deployment": "web"}
    staging["alerts"][0]["fingerprint"] = "00000000000000bb"

    (first,) = post(client, prod).json["incidents"]
    (second,) = post(client, staging).json["incidents"]
    assert first != second
