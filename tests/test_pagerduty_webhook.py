"""POST /api/v1/pagerduty: PagerDuty webhooks v3 acknowledgements and resolves.

Every rejected or ignored delivery must leave Redis exactly as it was, and every
accepted one must be safe to deliver again (PagerDuty delivers at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis import Redis

from tests.conftest import ADMIN, fixture, post
from tests.support.redis_server import free_port
from webhook.app import create_app
from workers.config import Settings
from workers.incident.keys import Keys

URL = "/api/v1/pagerduty"
SECRET = "pd-whsec-5e1f9a"
HEADER = "X-PagerDuty-Signature"


@pytest.fixture
def app(settings: Settings, redis: Redis) -> Flask:
    signed = replace(settings, pagerduty_webhook_secret=SECRET)
    return create_app(signed, redis=redis, registry=CollectorRegistry())


def sign(body: bytes, secret: str = SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event(
    incident_id: str | None,
    occurred_at: datetime,
    *,
    event_type: str = "incident.acknowledged",
    event_id: str = "01DEN7ZQ8U4MKS5OEC1BWVFVX1",
    agent: str = "Jane Doe",
) -> dict[str, Any]:
    return {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
            "agent": {"id": "PLH1HKV", "type": "user_reference", "summary": agent},
            "client": None,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "self": "https://api.pagerduty.com/incidents/PGR0VU2",
                "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                "number": 2,
                "status": "acknowledged",
                "incident_key": incident_id,
                "title": "p95 latency above 2s for 5m",
            },
        }
    }


def deliver(client: FlaskClient, doc: Any, signature: str | None = None) -> Any:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {HEADER: sign(body) if signature is None else signature}
    return client.post(URL, data=body, headers=headers, content_type="application/json")


def declare(client: FlaskClient) -> tuple[str, datetime]:
    """An open SEV2 incident (response time 1h) and when alertpilot declared it."""
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    return incident_id, datetime.fromisoformat(incident(client, incident_id)["started_at"])


def incident(client: FlaskClient, incident_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = client.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    return doc


def snapshot(redis: Redis) -> dict[bytes, bytes | None]:
    return {key: redis.dump(key) for key in redis.keys("*")}


def sample(app: Flask, name: str, **labels: str) -> float | None:
    value: float | None = app.extensions["alertpilot"].metrics.registry.get_sample_value(
        name, labels
    )
    return value


def test_signed_ack_is_recorded_and_shown_in_the_api(client: FlaskClient, redis: Redis) -> None:
    incident_id, started = declare(client)
    acked = started + timedelta(minutes=4, seconds=12)
    response = deliver(client, event(incident_id, acked))
    assert (response.status_code, response.json) == (200, {"status": "recorded"})
    shown = incident(client, incident_id)
    assert shown["acknowledged_at"] == acked.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    assert shown["acknowledged_by"] == "Jane Doe"
    assert shown["time_to_acknowledge_seconds"] == 252.0
    assert shown["acknowledged_within_response_time"] is True
    entry = shown["timeline"][-1]
    assert entry["kind"] == "acknowledged"
    assert entry["message"] == (
        "acknowledged in PagerDuty by Jane Doe after 4m12s (SEV2 response time 1h: within)"
    )
    assert (entry["by"], entry["pagerduty_incident"]) == ("Jane Doe", "PGR0VU2")
    assert redis.hget(f"aptest:incident:{incident_id}:ack", "acknowledged_by") == b"Jane Doe"
    assert SECRET not in json.dumps(shown)


def test_unacknowledged_incident_shows_nulls(client: FlaskClient) -> None:
    incident_id, _ = declare(client)
    shown = incident(client, incident_id)
    assert shown["acknowledged_at"] is None
    assert shown["acknowledged_within_response_time"] is None


def test_ack_after_the_response_time_is_marked_missed(client: FlaskClient) -> None:
    incident_id, started = declare(client)
    deliver(client, event(incident_id, started + timedelta(hours=1, minutes=30)))
    shown = incident(client, incident_id)
    assert shown["acknowledged_within_response_time"] is False
    assert shown["timeline"][-1]["message"].endswith("after 1h30m (SEV2 response time 1h: missed)")


def test_redelivery_and_a_second_ack_change_nothing(client: FlaskClient, redis: Redis) -> None:
    incident_id, started = declare(client)
    first = event(incident_id, started + timedelta(minutes=3))
    assert deliver(client, first).status_code == 200
    before = snapshot(redis)
    again = deliver(client, first)
    later = event(
        incident_id, started + timedelta(minutes=9), event_id="01DEN8SECOND", agent="John Roe"
    )
    second = deliver(client, later)
    for response in (again, second):
        assert (response.status_code, response.json) == (200, {"status": "duplicate"})
    assert snapshot(redis) == before
    assert incident(client, incident_id)["acknowledged_by"] == "Jane Doe"


def test_time_to_acknowledge_is_observed_once_with_its_labels(
    app: Flask, client: FlaskClient
) -> None:
    incident_id, started = declare(client)
    doc = event(incident_id, started + timedelta(minutes=4, seconds=12))
    deliver(client, doc)
    deliver(client, doc)
    deliver(client, event(incident_id, started + timedelta(hours=2), event_id="01DEN8SECOND"))
    histogram = "alertpilot_time_to_acknowledge_seconds"
    assert sample(app, f"{histogram}_count", severity="SEV2") == 1
    assert sample(app, f"{histogram}_sum", severity="SEV2") == pytest.approx(252, abs=0.01)
    assert sample(app, f"{histogram}_bucket", severity="SEV2", le="120.0") == 0
    assert sample(app, f"{histogram}_bucket", severity="SEV2", le="300.0") == 1
    counter = "alertpilot_acknowledgements_total"
    assert sample(app, counter, severity="SEV2", within="true") == 1
    assert sample(app, counter, severity="SEV2", within="false") is None


@pytest.mark.parametrize(
    "signature",
    ["", "v1=" + "0" * 64, "sha256=SIGNED", "v0=SIGNED", "v1=OTHER-SECRET", "v1=OTHER-BODY"],
    ids=["missing", "wrong", "other-scheme", "v0", "other-secret", "other-body"],
)
def test_missing_or_wrong_signature_is_401_and_writes_nothing(
    client: FlaskClient, redis: Redis, signature: str
) -> None:
    incident_id, started = declare(client)
    body = json.dumps(event(incident_id, started + timedelta(minutes=1))).encode()
    good = sign(body).removeprefix("v1=")
    signature = (
        signature.replace("SIGNED", good)
        .replace("OTHER-SECRET", sign(body, "not-the-secret")[3:])
        .replace("OTHER-BODY", sign(body + b" ")[3:])
    )
    before = snapshot(redis)
    headers = {HEADER: signature} if signature else {}
    response = client.post(URL, data=body, headers=headers, content_type="application/json")
    assert response.status_code == 401
    assert response.json["error"]["details"]["field"] == HEADER
    assert SECRET not in response.get_data(as_text=True)
    assert snapshot(redis) == before


def test_no_secret_configured_is_401(settings: Settings, redis: Redis) -> None:
    client = create_app(settings, redis=redis, registry=CollectorRegistry()).test_client()
    incident_id, started = declare(client)
    before = snapshot(redis)
    body = json.dumps(event(incident_id, started)).encode()
    for signature in (sign(body), sign(body, "")):
        assert deliver(client, body, signature).status_code == 401
    assert snapshot(redis) == before


def test_any_matching_v1_signature_is_accepted_during_rotation(client: FlaskClient) -> None:
    incident_id, started = declare(client)
    body = json.dumps(event(incident_id, started + timedelta(minutes=2))).encode()
    rotating = f"{sign(body, 'old-secret')}, {sign(body)}"
    assert deliver(client, body, rotating).status_code == 200
    assert incident(client, incident_id)["acknowledged_by"] == "Jane Doe"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda doc: json.dumps(doc).encode()[:-5], "body"),
        (lambda doc: b"[1, 2]", "body"),
        (lambda doc: {}, "event"),
        (lambda doc: {"event": "x"}, "event"),
        (lambda doc: {"event": {**doc["event"], "id": None}}, "event.id"),
        (lambda doc: {"event": {**doc["event"], "data": []}}, "event.data"),
        (lambda doc: {"event": {**doc["event"], "occurred_at": "yesterday"}}, "event.occurred_at"),
        (
            lambda doc: {"event": {**doc["event"], "occurred_at": "2026-11-27T00:00:00"}},
            "event.occurred_at",
        ),
        (lambda doc: {"event": {**doc["event"], "agent": "Jane"}}, "event.agent"),
        (
            lambda doc: {"event": {**doc["event"], "data": {"id": "PGR0VU2"}}},
            "event.data.incident_key",
        ),
    ],
    ids=[
        "truncated",
        "not-an-object",
        "no-event",
        "event-not-object",
        "no-id",
        "data-not-object",
        "bad-time",
        "time-without-zone",
        "agent-not-object",
        "no-incident-key",
    ],
)
def test_malformed_body_is_400_naming_the_field(
    client: FlaskClient, redis: Redis, edit: Any, field: str
) -> None:
    incident_id, started = declare(client)
    doc = edit(event(incident_id, started))
    before = snapshot(redis)
    response = deliver(client, doc)
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == field
    assert snapshot(redis) == before


@pytest.mark.parametrize("event_type", ["incident.acknowledged", "incident.resolved"])
def test_unknown_incident_is_202_and_writes_nothing(
    client: FlaskClient, redis: Redis, event_type: str
) -> None:
    declare(client)
    before = snapshot(redis)
    for key in ("0123456789ab-nope", None):  # not ours; a PagerDuty incident without a key
        doc = event(key, datetime.fromisoformat("2026-11-27T00:00:00Z"), event_type=event_type)
        response = deliver(client, doc)
        assert (response.status_code, response.json) == (202, {"status": "ignored"})
    assert snapshot(redis) == before


@pytest.mark.parametrize(
    "doc",
    [
        {"event": {"id": "01X", "event_type": "incident.annotated", "data": {}}},
        {"event": {"event_type": "pagey.ping", "resource_type": "pagey", "data": None}},
    ],
    ids=["annotated", "ping"],
)
def test_unknown_event_type_is_202_and_writes_nothing(
    client: FlaskClient, redis: Redis, doc: dict[str, Any]
) -> None:
    declare(client)
    before = snapshot(redis)
    response = deliver(client, doc)
    assert (response.status_code, response.json) == (202, {"status": "ignored"})
    assert snapshot(redis) == before


def test_resolve_in_pagerduty_is_recorded_once_and_leaves_the_incident_open(
    app: Flask, client: FlaskClient, redis: Redis
) -> None:
    incident_id, started = declare(client)
    doc = event(incident_id, started + timedelta(minutes=20), event_type="incident.resolved")
    assert deliver(client, doc).json == {"status": "recorded"}
    before = snapshot(redis)
    again = deliver(client, doc)
    assert (again.status_code, again.json) == (200, {"status": "duplicate"})
    assert snapshot(redis) == before
    shown = incident(client, incident_id)
    assert shown["status"] == "open"
    assert shown["acknowledged_at"] is None
    assert [e["kind"] for e in shown["timeline"]] == ["declared", "pagerduty_resolved"]
    assert shown["timeline"][-1]["message"] == "resolved in PagerDuty by Jane Doe"
    assert 0 < redis.ttl(f"aptest:pagerduty:event:{doc['event']['id']}") <= 7 * 24 * 3600
    assert sample(app, "alertpilot_time_to_acknowledge_seconds_count", severity="SEV2") is None


def test_redis_down_is_503(settings: Settings) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    signed = replace(settings, redis_url=url, pagerduty_webhook_secret=SECRET)
    connection = Redis.from_url(url, socket_connect_timeout=1)
    client = create_app(signed, redis=connection, registry=CollectorRegistry()).test_client()
    response = deliver(client, event("0123456789ab-x", datetime.fromisoformat("2026-11-27T00:00Z")))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "unavailable"


def test_secret_is_read_from_the_environment_and_hidden_from_repr() -> None:
    settings = Settings.from_env({"ALERTPILOT_PAGERDUTY_WEBHOOK_SECRET": SECRET})
    assert settings.pagerduty_webhook_secret == SECRET
    assert SECRET not in repr(settings)


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_an_occurred_at_outside_years_1_to_9999_in_utc_is_400_naming_it(
    client: FlaskClient, redis: Redis, occurred_at: str
) -> None:
    incident_id, started = declare(client)
    doc = event(incident_id, started)
    doc["event"]["occurred_at"] = occurred_at
    before = snapshot(redis)
    response = deliver(client, doc)
    assert response.status_code == 400, response.get_data()
    assert response.json["error"]["details"]["field"] == "event.occurred_at"
    assert snapshot(redis) == before


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("id",), "event.id"),
        (("agent", "summary"), "event.agent.summary"),
        (("data", "id"), "event.data.id"),
        (("data", "incident_key"), "event.data.incident_key"),
    ],
)
def test_a_lone_surrogate_in_a_field_alertpilot_stores_is_400_naming_it(
    client: FlaskClient, redis: Redis, path: tuple[str, ...], field: str
) -> None:
    incident_id, started = declare(client)
    doc = event(incident_id, started + timedelta(minutes=1))
    parent = doc["event"]
    for name in path[:-1]:
        parent = parent[name]
    parent[path[-1]] = "Jane \udc80"
    before = snapshot(redis)
    response = deliver(client, doc)
    assert response.status_code == 400, response.get_data()
    assert response.json["error"]["details"]["field"] == field
    assert snapshot(redis) == before


# --- any signed body: 200, 202 or 400, never a 5xx --------------------------------------

HUGE = "\x00HUGE\x00"
"""Stands for a number too big for JSON's usual readers, spliced in after json.dumps."""

_odd_text = st.text(st.characters() | st.characters(categories=("Cs",)), max_size=40) | (
    st.sampled_from(["", " ", HUGE, "\x00", "Z", "+01:00", "T", "9" * 400])
)
_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats()
    | _odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_odd_text, inner, max_size=3),
    max_leaves=8,
)
_offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_edge_years = st.sampled_from([1, 2, 1970, 9998, 9999]).flatmap(
    lambda year: st.datetimes(datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999))
)
_iso_times = (
    st.tuples(_edge_years | st.datetimes(), _offsets)
    .map(lambda pair: pair[0].replace(tzinfo=pair[1]).isoformat())
    .flatmap(lambda iso: st.sampled_from([iso, iso.replace("+00:00", "Z"), iso.replace("T", " ")]))
)
_times = _iso_times | st.sampled_from(
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z"]
)


MISSING = object()
"""A key left out of the event."""
SPOILABLE = [("id",), ("event_type",), ("occurred_at",), ("agent",), ("agent", "summary")]
SPOILABLE += [("data",), ("data", "id"), ("data", "incident_key")]


def _signed_bodies(incident_id: str) -> st.SearchStrategy[bytes]:
    """Acknowledgements and resolves of `incident_id` at odd times, with at most one field
    made odd (a lone surrogate, junk of another type, left out); and bodies of any shape."""
    event = st.fixed_dictionaries(
        {
            "id": st.just("01DEN7ZQ8U4MKS5OEC1BWVFVX1"),
            "event_type": st.sampled_from([ACK, ACK, RESOLVE, "incident.annotated"]),
            "occurred_at": _times,
            "agent": st.fixed_dictionaries({"id": st.just("PLH1HKV"), "summary": _odd_text}),
            "data": st.fixed_dictionaries(
                {
                    "id": st.just("PGR0VU2"),
                    "incident_key": st.sampled_from([incident_id, incident_id, None, "0123-nope"]),
                }
            ),
        }
    )
    spoiled = st.tuples(
        event,
        st.sampled_from([None, None, None, *SPOILABLE]),
        _odd_text | _junk | st.just(MISSING),
    ).map(lambda drawn: {"event": _spoil(*drawn)})
    huge = st.sampled_from(["9" * 5000, "1e999999", "-1e-999999", "1" + "0" * 400 + ".5"])
    return st.one_of(
        st.tuples(spoiled | _junk, huge).map(
            lambda pair: json.dumps(pair[0]).replace(json.dumps(HUGE), pair[1]).encode()
        ),
        st.binary(max_size=64),
    )


def _spoil(event: dict[str, Any], path: tuple[str, ...] | None, value: Any) -> dict[str, Any]:
    """`event` with the field at `path` set to `value` (or left out, for MISSING)."""
    if path is None:
        return event
    parent = event
    for name in path[:-1]:
        parent = parent[name]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return event


ACK, RESOLVE = "incident.acknowledged", "incident.resolved"


@pytest.fixture
def declared(client: FlaskClient) -> str:
    incident_id, _ = declare(client)
    return incident_id


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_signed_body_is_a_5xx(
    client: FlaskClient, redis: Redis, keys: Keys, declared: str, data: st.DataObject
) -> None:
    redis.delete(keys.acknowledgement(declared))  # so every acknowledgement is a first one
    body = data.draw(_signed_bodies(declared), label="body")
    response = deliver(client, body)
    assert response.status_code in (200, 202, 400), (body, response.get_data())
    if response.status_code == 400:
        assert isinstance(response.json["error"]["details"]["field"], str)
