"""/metrics: what alertpilot says about itself, scraped and parsed as Prometheus would."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue

from tests.conftest import ADMIN, TOKEN, fixture, post, run_jobs
from webhook.app import create_app
from workers.config import Settings


def _samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def test_notifications_are_counted_by_outcome(client: FlaskClient) -> None:
    post(client, fixture("firing-two-alerts.json"))
    post(client, fixture("firing-two-alerts.json"))
    client.post("/api/v1/alertmanager", json={"version": "4"})  # no credentials
    samples = _samples(client)
    name = "alertpilot_notifications_received_total"
    assert samples[(name, (("outcome", "accepted"),))] == 1
    assert samples[(name, (("outcome", "duplicate"),))] == 1
    assert samples[(name, (("outcome", "rejected"),))] == 1
    assert samples[("alertpilot_alerts_received_total", (("status", "firing"),))] == 4


def test_jobs_enqueued_and_finished_are_counted_by_action(
    client: FlaskClient, queue: Queue
) -> None:
    post(client, fixture("firing-two-alerts.json"))
    run_jobs(queue)
    samples = _samples(client)
    enqueued = ("alertpilot_jobs_enqueued_total", (("action", "page"), ("transition", "declared")))
    finished = ("alertpilot_jobs_finished_total", (("action", "page"), ("outcome", "dry_run")))
    assert samples[enqueued] == 1
    assert samples[finished] == 1


def test_open_incidents_by_severity_follow_state(client: FlaskClient) -> None:
    post(client, fixture("firing-two-alerts.json"))
    samples = _samples(client)
    assert samples[("alertpilot_incidents_open", (("severity", "SEV2"),))] == 1
    assert samples[("alertpilot_incidents_open", (("severity", "SEV0"),))] == 0


def test_request_latency_is_observed_per_endpoint(client: FlaskClient) -> None:
    post(client, fixture("firing-two-alerts.json"))
    samples = _samples(client)
    key = (
        "alertpilot_http_request_duration_seconds_count",
        (("code", "200"), ("endpoint", "/api/v1/alertmanager"), ("method", "POST")),
    )
    assert samples[key] == 1


METRICS_TOKEN = "metrics-t0ken-91c2"


@pytest.fixture
def guarded(settings: Settings, redis: Redis) -> FlaskClient:
    """The app with ALERTPILOT_METRICS_TOKEN set."""
    token = replace(settings, metrics_token=METRICS_TOKEN)
    return create_app(token, redis=redis, registry=CollectorRegistry()).test_client()


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", f"Basic {METRICS_TOKEN}", f"Bearer {TOKEN}", f"Bearer {METRICS_TOKEN}x"],
    ids=["none", "wrong", "basic", "webhook-token", "longer"],
)
def test_metrics_with_a_token_set_is_401_without_it(
    guarded: FlaskClient, header: str | None
) -> None:
    response = guarded.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.json["error"]["details"]["field"] == "Authorization"
    assert "alertpilot_" not in response.get_data(as_text=True)


def test_metrics_with_a_token_set_answer_that_bearer_token(guarded: FlaskClient) -> None:
    response = guarded.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert "alertpilot_notifications_received_total" in response.get_data(as_text=True)


@pytest.mark.parametrize("variable", ["ALERTPILOT_METRICS_TOKEN", "ALERTPILOT_METRICS_TOKEN_FILE"])
def test_metrics_token_is_read_from_the_environment_or_a_file_and_hidden_from_repr(
    tmp_path: Path, variable: str
) -> None:
    path = tmp_path / "token"
    path.write_text(METRICS_TOKEN + "\n")
    value = str(path) if variable.endswith("_FILE") else METRICS_TOKEN
    settings = Settings.from_env({variable: value})
    assert settings.metrics_token == METRICS_TOKEN
    assert METRICS_TOKEN not in repr(settings)


def test_no_label_carries_a_secret_a_url_or_the_policy_path(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    secret = replace(settings, pagerduty_webhook_secret="pd-whsec-77", metrics_token=METRICS_TOKEN)
    app = create_app(secret, redis=redis, registry=CollectorRegistry())
    client = app.test_client()
    post(client, fixture("firing-two-alerts.json"))
    client.get(f"/api/v1/incidents/{TOKEN}", headers=ADMIN)
    client.get(f"/api/v1/incidents?limit={TOKEN}", headers=ADMIN)
    client.get(f"/no/such/path/{TOKEN}")
    run_jobs(queue)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    labels = {
        (name, value)
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
        for name, value in s.labels.items()
    }
    routes = {rule.rule for rule in app.url_map.iter_rules()} | {"unmatched"}
    assert {v for n, v in labels if n == "endpoint"} <= routes  # templates, never a real path
    for name, value in labels:
        for secret_value in (TOKEN, METRICS_TOKEN, "pd-whsec-77", str(settings.policies_dir)):
            assert secret_value not in value, name
        assert name == "endpoint" or ("/" not in value and ":" not in value), (name, value)
