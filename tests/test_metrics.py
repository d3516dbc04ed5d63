"""/metrics: what alertpilot says about itself, scraped and parsed as Prometheus would."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from tests.conftest import fixture, post, run_jobs


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
