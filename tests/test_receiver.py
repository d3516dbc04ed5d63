"""POST /api/v1/alertmanager: the HTTP contract Alertmanager relies on.

Every rejected request must leave Redis untouched: nothing half-applied, no job.
"""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis

from tests.conftest import ADMIN, AUTH, LANE_SUFFIXES, TOKEN, fixture, post
from webhook.app import create_app
from workers.config import Settings

URL = "/api/v1/alertmanager"


def test_accepted_notification_is_stored_and_answered_with_its_jobs(
    client: FlaskClient, redis: Redis
) -> None:
    response = post(client, fixture("firing-two-alerts.json"))
    assert response.status_code == 200
    assert response.json["status"] == "accepted"
    (incident_id,) = response.json["incidents"]
    assert response.json["jobs"] == [
        f"{incident_id}-declared-page",
        f"{incident_id}-declared-notify",
        f"{incident_id}-declared-scale_up",
    ]
    assert redis.exists(f"aptest:incident:{incident_id}")
    assert sum(redis.llen(f"rq:queue:aptest{s}") for s in LANE_SUFFIXES) == 3


def _assert_rejected(response: object, redis: Redis, status: int, field: str) -> None:
    assert response.status_code == status  # type: ignore[attr-defined]
    error = response.json["error"]  # type: ignore[attr-defined]
    assert error["details"]["field"] == field
    assert error["message"]
    assert redis.dbsize() == 0, "a rejected request wrote to Redis"


def test_truncated_json_is_400_naming_the_body(client: FlaskClient, redis: Redis) -> None:
    raw = json.dumps(fixture("firing-two-alerts.json"))[:-20]
    response = client.post(URL, data=raw, headers=AUTH, content_type="application/json")
    _assert_rejected(response, redis, 400, "body")


def test_wrong_type_is_400_naming_the_field(client: FlaskClient, redis: Redis) -> None:
    doc = fixture("firing-two-alerts.json")
    doc["alerts"][0]["labels"] = ["not", "a", "map"]
    _assert_rejected(post(client, doc), redis, 400, "alerts[0].labels")


def test_missing_alerts_is_400(client: FlaskClient, redis: Redis) -> None:
    doc = fixture("firing-two-alerts.json")
    del doc["alerts"]
    _assert_rejected(post(client, doc), redis, 400, "alerts")


def test_version_other_than_4_is_400(client: FlaskClient, redis: Redis) -> None:
    doc = fixture("firing-two-alerts.json")
    doc["version"] = "5"
    _assert_rejected(post(client, doc), redis, 400, "version")


def test_body_over_the_limit_is_413(client: FlaskClient, redis: Redis) -> None:
    doc = fixture("firing-two-alerts.json")
    doc["commonAnnotations"]["padding"] = "x" * (2 * 1024 * 1024)
    _assert_rejected(post(client, doc), redis, 413, "body")


def test_chunked_body_over_the_limit_is_413(live_server: str, redis: Redis) -> None:
    """No Content-Length to check up front: the limit must hold while reading."""
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MiB, never valid JSON
    connection = http.client.HTTPConnection(live_server.removeprefix("http://"), timeout=10)
    try:
        connection.request(
            "POST",
            URL,
            body=chunks,
            headers={**AUTH, "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        status, doc = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 413, doc
    assert doc["error"]["details"]["field"] == "body"
    assert redis.dbsize() == 0


def test_wrong_content_type_is_415(client: FlaskClient, redis: Redis) -> None:
    raw = json.dumps(fixture("firing-two-alerts.json"))
    response = client.post(URL, data=raw, headers=AUTH, content_type="text/plain")
    _assert_rejected(response, redis, 415, "Content-Type")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="}],
    ids=["none", "wrong-token", "basic-when-bearer"],
)
def test_missing_or_wrong_credentials_are_401(
    client: FlaskClient, redis: Redis, headers: dict[str, str]
) -> None:
    doc = fixture("firing-two-alerts.json")
    response = client.post(URL, json=doc, headers=headers)
    _assert_rejected(response, redis, 401, "Authorization")
    assert "test-token" not in response.get_data(as_text=True)


def test_basic_auth_is_accepted_when_configured(settings: Settings, redis: Redis) -> None:
    basic = replace(settings, webhook_token=None, webhook_username="am", webhook_password="s3cret")
    client = create_app(basic, redis=redis, registry=CollectorRegistry()).test_client()
    good = base64.b64encode(b"am:s3cret").decode()
    bad = base64.b64encode(b"am:guess").decode()
    doc = fixture("firing-two-alerts.json")
    assert client.post(URL, json=doc, headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert client.post(URL, json=doc, headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_unknown_payload_fields_are_accepted(client: FlaskClient) -> None:
    doc = fixture("firing-two-alerts.json")
    doc["notification_reason"] = "first notification"
    doc["routeLabels"] = {"receiver": "alertpilot"}
    assert post(client, doc).status_code == 200


def test_incident_api_requires_the_same_credentials(client: FlaskClient) -> None:
    assert client.get("/api/v1/incidents").status_code == 401
    assert client.get("/api/v1/incidents", headers=ADMIN).status_code == 200


def test_incident_api_rejects_unknown_status_filter(client: FlaskClient) -> None:
    response = client.get("/api/v1/incidents?status=closed", headers=ADMIN)
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "status"


def test_unknown_incident_is_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/incidents/nope-1", headers=ADMIN)
    assert response.status_code == 404


def test_readyz_reports_policy_hash(client: FlaskClient, app: object) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    policy = app.extensions["alertpilot"].policies.get()  # type: ignore[attr-defined]
    assert response.json["policy"]["hash"] == policy.content_hash


def test_lone_surrogate_in_a_label_is_400_naming_it(client: FlaskClient, redis: Redis) -> None:
    raw = json.dumps(fixture("firing-two-alerts.json")).replace('"api"', '"api\\udc80"', 1)
    response = client.post(URL, data=raw, headers=AUTH, content_type="application/json")
    _assert_rejected(response, redis, 400, "alerts[0].labels.deployment")


def test_deeply_nested_body_is_400_not_500(client: FlaskClient, redis: Redis) -> None:
    raw = '{"version":"4","x":' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(URL, data=raw, headers=AUTH, content_type="application/json")
    _assert_rejected(response, redis, 400, "body")


def test_previous_token_is_accepted_during_rotation(settings: Settings, redis: Redis) -> None:
    rotating = replace(settings, webhook_token="new-token", webhook_previous_token="old-token")
    client = create_app(rotating, redis=redis, registry=CollectorRegistry()).test_client()
    doc = fixture("firing-two-alerts.json")
    for token, status in (("old-token", 200), ("new-token", 200), ("older-token", 401)):
        response = client.post(URL, json=doc, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status, token


def test_settings_repr_hides_secrets(settings: Settings) -> None:
    secret = replace(settings, webhook_password="pw-9q", webhook_previous_token="old-7z")
    text = repr(secret)
    for value in ("pw-9q", "old-7z", TOKEN):
        assert value not in text


@pytest.mark.parametrize("escape", ["\\udc80", "\\uDC80", "\\ud800", "\\uDBFF"])
def test_every_spelling_of_a_lone_surrogate_escape_is_caught(
    client: FlaskClient, redis: Redis, escape: str
) -> None:
    """The receiver skips the per-string check when the body has no surrogate escape:
    upper and lower case, high and low halves all count as one."""
    raw = json.dumps(fixture("firing-two-alerts.json")).replace('"api"', f'"api{escape}"', 1)
    response = client.post(URL, data=raw, headers=AUTH, content_type="application/json")
    _assert_rejected(response, redis, 400, "alerts[0].labels.deployment")


def test_an_escaped_backslash_before_u_is_text_not_a_surrogate(client: FlaskClient) -> None:
    """`\\\\udc80` in JSON is a backslash and the letters udc80: a valid label value."""
    raw = json.dumps(fixture("firing-two-alerts.json")).replace('"api"', '"api\\\\udc80"', 1)
    response = client.post(URL, data=raw, headers=AUTH, content_type="application/json")
    assert response.status_code == 200, response.json
    incident = client.get(f"/api/v1/incidents/{response.json['incidents'][0]}", headers=ADMIN)
    deployments = {a["labels"]["deployment"] for a in incident.json["alerts"]}
    assert "api\\udc80" in deployments


def test_a_valid_surrogate_pair_escape_is_accepted(client: FlaskClient) -> None:
    raw = json.dumps(fixture("firing-two-alerts.json")).replace('"api"', '"api\\ud83d\\ude80"', 1)
    response = client.post(URL, data=raw, headers=AUTH, content_type="application/json")
    assert response.status_code == 200, response.json
