"""The OpenAPI document (webhook/openapi.yaml) against the app that serves it: valid OpenAPI
3.1, every route documented and nothing more, the code's limits, and every operation
answering schemathesis' generated requests as documented, never with a 5xx.

schemathesis runs through `schema.parametrize()` on the document the app serves, loaded at
collection from an app that reaches no Redis for it; each operation then calls the test's
own app. Its `pytest.from_fixture` would load from the fixture, but it reads a pytest node
attribute that pytest 9.2 no longer has (schemathesis 4.32.5).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry
from redis import Redis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NOT_SET

from tests.conftest import ADMIN, REDIS_URL, REPO, TOKEN, fixture, post
from webhook.api import INCIDENT_ID
from webhook.app import create_app
from webhook.mitigations_api import MAX_REASON
from webhook.openapi import PATH, document
from webhook.pagerduty_webhook import SIGNATURE
from workers import approvals
from workers.config import Settings
from workers.incident import clock
from workers.incident.commands import MAX_NAME, MAX_TEXT
from workers.incident.keys import Keys
from workers.incident.record import PHASES, ROLES

PAGERDUTY_SECRET = "pd-whsec-0a9c"
METRICS_TOKEN = "metrics-t0ken"
AUTOMATIC = {"HEAD", "OPTIONS"}
"""Methods Flask answers for every rule by itself; the document leaves them out."""
EXAMPLE_INCIDENT = "3f9a1c2e7b4d-mf3k2x1q"
EXAMPLE_PROPOSAL = "9c1f0e4b7a2d5e83"
"""The document's example ids: the test sends those of a real incident and proposal."""
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",  # what the document says is invalid, the app refuses
    "ignored_auth",  # what the document says needs credentials, the app refuses without
)
CONFIG = {
    "seed": 14,
    "generation": {"max-examples": 25, "deterministic": True, "mode": "all"},
    "phases": {
        "examples": {"enabled": True, "fill-missing": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
    "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    "auth": {
        "openapi": {
            "person": {"bearer": ADMIN["Authorization"].removeprefix("Bearer ")},
            "alertmanager": {"bearer": TOKEN},
            "metrics_token": {"bearer": METRICS_TOKEN},
        }
    },
}


SLACK_SECRET = "openapi-slack-signing-secret"


@pytest.fixture
def app(settings: Settings, redis: Redis) -> Flask:
    """The test app with the two optional secrets set, so their checks are exercised."""
    secured = replace(
        settings,
        pagerduty_webhook_secret=PAGERDUTY_SECRET,
        metrics_token=METRICS_TOKEN,
        slack_signing_secret=SLACK_SECRET,
    )
    return create_app(secured, redis=redis, registry=CollectorRegistry())


@pytest.fixture
def served(client: FlaskClient) -> dict[str, Any]:
    response = client.get(PATH)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    doc: dict[str, Any] = response.json
    return doc


def test_the_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    assert served["openapi"].startswith("3.1.")
    validate(served)


def test_every_route_is_documented_and_nothing_else(app: Flask, served: dict[str, Any]) -> None:
    routes = {
        (rule.rule.replace("<", "{").replace(">", "}"), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in AUTOMATIC
    }
    documented = {(path, method) for path, item in served["paths"].items() for method in item}
    assert routes - documented == set(), "served but not documented"
    assert documented - routes == set(), "documented but not served"


def test_the_document_needs_no_credentials_and_holds_no_secret(client: FlaskClient) -> None:
    response = client.get(PATH, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 200
    for secret in (TOKEN, PAGERDUTY_SECRET, METRICS_TOKEN, "ap_test_"):
        assert secret not in response.get_data(as_text=True)


def test_the_document_states_the_limits_the_code_enforces() -> None:
    doc = document()
    schemas, parameters = doc["components"]["schemas"], doc["components"]["parameters"]
    assert parameters["IncidentId"]["schema"]["pattern"] == f"^{INCIDENT_ID.pattern}$"
    assert parameters["IncidentId"]["example"] == EXAMPLE_INCIDENT
    assert parameters["ProposalId"]["example"] == EXAMPLE_PROPOSAL
    assert schemas["Text"]["maxLength"] == MAX_TEXT
    assert schemas["Name"]["maxLength"] == MAX_NAME
    assert _body(doc, "/api/v1/incidents")["properties"]["summary"]["maxLength"] == MAX_TEXT
    assert _body(doc, "/api/v1/mitigations/pause")["properties"]["reason"]["maxLength"] == (
        MAX_REASON
    )
    assert _body(doc, "/api/v1/incidents/{incident_id}/assign")["properties"]["role"] == {
        "enum": list(ROLES)
    }
    assert _body(doc, "/api/v1/incidents/{incident_id}/status")["properties"]["status"] == {
        "enum": list(PHASES)
    }
    summary = schemas["IncidentSummary"]["properties"]
    assert summary["phase"]["enum"] == list(PHASES)
    assert summary["roles"]["propertyNames"]["enum"] == list(ROLES)
    assert doc["components"]["securitySchemes"]["pagerduty_signature"]["name"] == SIGNATURE


def _body(doc: dict[str, Any], path: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return found


def test_a_405_names_the_methods_allowed(client: FlaskClient) -> None:
    response = client.delete("/api/v1/incidents", headers=ADMIN)
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
    assert allowed == {"GET", "HEAD", "OPTIONS", "POST"}


SCHEMA = schemathesis.openapi.from_wsgi(
    PATH,
    create_app(Settings(redis_url=REDIS_URL, policies_dir=REPO / "policies")),
    config=SchemathesisConfig.from_dict(CONFIG),
)


@pytest.fixture
def real_ids(client: FlaskClient, redis: Redis, settings: Settings) -> dict[str, str]:
    """A real open incident with two alerts firing, and a pending proposal on it: the ids
    that stand in for the document's example ones."""
    (incident_id,) = post(client, fixture("firing-two-alerts.json")).json["incidents"]
    payload = {"incident_id": incident_id, "action": "rollout_restart", "params": {}}
    change = "rollout restart of deployment production/api"
    keys = Keys(settings.key_prefix)
    proposal = approvals.propose(redis, keys, payload, change, expires=1800)
    return {EXAMPLE_INCIDENT: incident_id, EXAMPLE_PROPOSAL: proposal}


@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_documented(
    case: Case, app: Flask, real_ids: dict[str, str]
) -> None:
    for name, value in (case.path_parameters or {}).items():
        if isinstance(value, str) and value in real_ids:
            case.path_parameters[name] = real_ids[value]
    if case.path == "/api/v1/slack/commands":
        # Slack signs the raw form body with the time: the generated body, signed now.
        form = case.body if isinstance(case.body, dict) else {}
        raw = urlencode({k: str(v) for k, v in form.items()}).encode()
        stamp = str(int(clock.timestamp()))
        mac = hmac.new(SLACK_SECRET.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256)
        headers = {
            "X-Slack-Signature": f"v0={mac.hexdigest()}",
            "X-Slack-Request-Timestamp": stamp,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        case.call_and_validate(app=app, data=raw, headers=headers)
        return
    if case.path != "/api/v1/pagerduty":
        case.call_and_validate(app=app)
        return
    # PagerDuty signs the raw body: the generated one, as bytes, signed with the secret.
    event = case.body.get("event") if isinstance(case.body, dict) else None
    data = event.get("data") if isinstance(event, dict) else None
    if isinstance(data, dict) and data.get("incident_key") == EXAMPLE_INCIDENT:
        data["incident_key"] = real_ids[EXAMPLE_INCIDENT]
    body = _raw(case.body)
    signature = hmac.new(PAGERDUTY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    case.call_and_validate(app=app, data=body, headers={SIGNATURE: f"v1={signature}"})


def _raw(body: Any) -> bytes:
    if body is NOT_SET:
        return b""
    return body if isinstance(body, bytes) else json.dumps(body).encode()
