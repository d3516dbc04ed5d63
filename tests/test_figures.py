"""Response figures (issue 17): time to declare, acknowledge, mitigate and resolve from
the first alert's startsAt, per severity over a period (GET /api/v1/figures) and as
histograms shared through Redis (/metrics), on incidents with known times: alertpilot's
clock is a stepped one here, never a sleep.

Until the call sites record the figures themselves (the Writer's declared and resolved
transitions, the first acknowledgement, a mitigation's success entry), these tests call
workers/incident/figures_store.py where those call sites will; a recorded figure is
recorded once, so the tests hold once they are wired too.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue

from tests.conftest import AUTH, REPO, RESPONDER, VIEWER, post, run_jobs, timeline
from tests.support.mitigation import MitigationBench, latency, resolved
from webhook import figures_api
from webhook.metrics import RedisStateCollector
from workers.incident import clock, figures_store
from workers.incident.figures import (
    Figures,
    incident_figures,
    is_mitigation,
    percentile,
    period_figures,
)
from workers.incident.keys import Keys
from workers.incident.record import AlertState, Incident, load_incident
from workers.policy.loader import load_policy

POLICY = load_policy(REPO / "policies")


class SteppedClock:
    """alertpilot's clock standing still at a known time until a test moves it on."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def stepped() -> Iterator[SteppedClock]:
    found = SteppedClock(datetime.now(UTC).replace(microsecond=0))
    previous = clock.install(found)
    yield found
    clock.install(previous)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def alert(service: str, starts_at: datetime) -> dict[str, Any]:
    """A firing HighLatency of `service` (incident key latency/<service>), started then."""
    doc = copy.deepcopy(latency())
    doc["alerts"][0]["labels"]["service"] = service
    doc["alerts"][0]["startsAt"] = iso(starts_at)
    doc["alerts"][0]["fingerprint"] = hashlib.sha256(service.encode()).hexdigest()[:16]
    doc["groupKey"] = f'{{}}:{{service="{service}"}}'
    return doc


def figures_app(app: Flask) -> FlaskClient:
    """`app` with GET /api/v1/figures (webhook/app.py registers it once it is wired)."""
    if figures_api.blueprint.name not in app.blueprints:
        app.register_blueprint(figures_api.blueprint)
    return app.test_client()


# The pure figures.


def test_percentiles_are_nearest_rank_on_known_lists() -> None:
    assert percentile([40, 15, 50, 35, 20], 50) == 35
    assert percentile([40, 15, 50, 35, 20], 90) == 50
    assert percentile(list(range(1, 11)), 50) == 5  # an even count: the lower middle one
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([7.5], 90) == 7.5
    assert percentile([], 50) is None


T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def incident(
    *,
    starts: tuple[float, ...] = (0.0,),
    declared: float = 90.0,
    resolved_after: float | None = None,
    severity: str = "SEV2",
    revision: int = 0,
) -> Incident:
    """An incident declared `declared` s after T0, its alerts started `starts` s after it."""
    alerts = {
        f"fp{n}": AlertState(
            fingerprint=f"fp{n}",
            status="firing",
            starts_at=iso(T0 + timedelta(seconds=s)),
            ends_at=None,
            labels={"alertname": "HighLatency"},
            annotations={},
            generator_url="",
            severity=severity,
            route="api-latency",
        )
        for n, s in enumerate(starts)
    }
    at = iso(T0 + timedelta(seconds=declared))
    done = iso(T0 + timedelta(seconds=resolved_after)) if resolved_after is not None else None
    return Incident(
        id="abc123def456-x1",
        key="latency/api",
        route="api-latency",
        severity=severity,
        status="resolved" if done else "open",
        started_at=at,
        resolved_at=done,
        updated_at=done or at,
        title="p95 latency",
        group_key="{}",
        receiver="alertpilot",
        external_url="",
        alerts=alerts,
        revision=revision,
    )


def acked(seconds: float) -> dict[str, Any]:
    return {"acknowledged_at": iso(T0 + timedelta(seconds=seconds))}


NO_ACK: dict[str, Any] = {"acknowledged_at": None}


def mitigated(seconds: float, **changes: Any) -> dict[str, Any]:
    entry = {
        "at": iso(T0 + timedelta(seconds=seconds)),
        "kind": "succeeded",
        "action": "scale_up",
        "transition": "declared",
        "message": "scaled production/api from 4 to 8",
    }
    return {**entry, **changes}


def test_times_count_from_the_first_alerts_starts_at_not_from_declaration() -> None:
    # Alertmanager's group_wait and the severity's page_after put declaration 90 s after
    # the alert began; the second alert of the group began 30 s after the first.
    # It resolved at 1200 s, was reopened, and resolved again at 1800 s.
    entries = [
        mitigated(400.0),
        mitigated(900.0),
        {"at": iso(T0 + timedelta(seconds=1200)), "kind": "resolved"},
        {"at": iso(T0 + timedelta(seconds=1300)), "kind": "reopened"},
        {"at": iso(T0 + timedelta(seconds=1800)), "kind": "resolved"},
    ]
    reopened = incident(starts=(30.0, 0.0), declared=90.0, resolved_after=1800.0, revision=1)
    found = incident_figures(reopened, entries, acked(300.0), POLICY)
    assert found.first_alert_at == T0
    assert found.declared_at == T0 + timedelta(seconds=90)
    assert (found.to_declare, found.to_acknowledge) == (90.0, 300.0)
    assert (found.to_mitigate, found.to_resolve) == (400.0, 1200.0)  # the first of each


def test_acknowledgement_within_the_response_time_is_measured_from_the_first_alert() -> None:
    # SEV0 responds in 5m: 290 s after declaration is within from there, not from the alert.
    late = incident_figures(incident(declared=60.0, severity="SEV0"), [], acked(350.0), POLICY)
    assert (late.to_acknowledge, late.within) == (350.0, False)
    on_time = incident_figures(incident(declared=60.0, severity="SEV0"), [], acked(300.0), POLICY)
    assert on_time.within is True
    assert incident_figures(incident(), [], NO_ACK, POLICY).within is None


def test_a_dry_run_a_proposal_and_a_revert_are_not_mitigations() -> None:
    assert is_mitigation(mitigated(0.0))
    assert is_mitigation(mitigated(0.0, transition="escalated"))
    assert not is_mitigation(mitigated(0.0, kind="dry_run"))
    assert not is_mitigation(mitigated(0.0, kind="proposed"))
    assert not is_mitigation(mitigated(0.0, transition="resolved"))  # a revert
    assert not is_mitigation(mitigated(0.0, action="page"))


def test_a_start_after_declaration_counts_as_declaration_and_no_alert_has_no_time_to_declare() -> (
    None
):
    ahead = incident_figures(incident(starts=(120.0,), declared=90.0), [], acked(150.0), POLICY)
    assert (ahead.to_declare, ahead.to_acknowledge) == (0.0, 60.0)
    by_hand = incident_figures(incident(starts=(), declared=90.0), [], acked(150.0), POLICY)
    assert (by_hand.to_declare, by_hand.to_acknowledge) == (None, 60.0)


def figures_of(severity: str, ack: float | None, within: bool | None, **times: float) -> Figures:
    at = T0
    return Figures(
        incident_id="x",
        severity=severity,
        first_alert_at=at,
        declared_at=at,
        acknowledged_at=None,
        mitigated_at=None,
        resolved_at=None,
        to_declare=times.get("declare"),
        to_acknowledge=ack,
        to_mitigate=times.get("mitigate"),
        to_resolve=times.get("resolve"),
        within=within,
    )


def test_period_figures_per_severity_with_the_share_within_over_acknowledged_ones() -> None:
    found = period_figures(
        [
            figures_of("SEV2", 600.0, True, declare=30.0, resolve=1800.0),
            figures_of("SEV2", 4000.0, False, declare=150.0),
            figures_of("SEV2", None, None, declare=60.0),
            figures_of("SEV1", 100.0, True, declare=10.0, mitigate=200.0),
            figures_of("SEV9", None, None),
        ],
        ["SEV0", "SEV1", "SEV2"],
    )
    assert list(found) == ["SEV0", "SEV1", "SEV2", "SEV9"]
    sev2 = found["SEV2"]
    assert sev2.count == 3
    assert (sev2.times["declare"].median, sev2.times["declare"].p90) == (60.0, 150.0)
    assert (sev2.times["acknowledge"].median, sev2.times["acknowledge"].p90) == (600.0, 4000.0)
    assert sev2.times["mitigate"].as_json() == {"count": 0, "median": None, "p90": None}
    assert (sev2.acknowledged, sev2.within, sev2.share_within) == (2, 1, 0.5)
    assert found["SEV1"].times["mitigate"].median == 200.0
    assert found["SEV0"].count == 0 and found["SEV0"].share_within is None


# The histograms, through Redis.


def exposition(redis: Redis, keys: Keys) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisStateCollector(redis, keys, lambda: ["SEV0", "SEV1", "SEV2"]))
    found = text_string_to_metric_families(generate_latest(registry).decode())
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in found
        if family.name.startswith("alertpilot_incident_time_to_")
        for s in family.samples
    }


ACK = "alertpilot_incident_time_to_acknowledge_seconds"


def test_histograms_hold_bucket_counts_count_and_sum_per_severity(redis: Redis, keys: Keys) -> None:
    for n, seconds in enumerate((45.0, 250.0, 250.0, 9000.0)):
        figures_store.record(redis, keys, f"i{n}", "SEV2", "acknowledge", seconds)
    figures_store.record(redis, keys, "i9", "SEV1", "acknowledge", 700.0)
    samples = exposition(redis, keys)
    sev2 = (("severity", "SEV2"),)

    def bucket(le: str, severity: str = "SEV2") -> float:
        return samples[(f"{ACK}_bucket", (("le", le), ("severity", severity)))]

    assert (bucket("30.0"), bucket("60.0"), bucket("300.0"), bucket("7200.0")) == (0, 1, 3, 3)
    assert (bucket("14400.0"), bucket("+Inf")) == (4, 4)
    assert samples[(f"{ACK}_count", sev2)] == 4
    assert samples[(f"{ACK}_sum", sev2)] == 9545.0
    assert (bucket("600.0", "SEV1"), bucket("900.0", "SEV1")) == (0, 1)
    assert samples[(f"{ACK}_count", (("severity", "SEV0"),))] == 0  # zero, not missing
    resolve = "alertpilot_incident_time_to_resolve_seconds"
    assert samples[(f"{resolve}_count", sev2)] == 0


def test_a_retried_record_is_counted_once_inside_a_transaction_or_not(
    redis: Redis, keys: Keys
) -> None:
    figures_store.record(redis, keys, "i1", "SEV2", "acknowledge", 120.0)
    for _ in range(2):  # a retried job, or the HA twin's copy, in its own MULTI
        with redis.pipeline() as pipe:
            pipe.multi()
            figures_store.record(pipe, keys, "i1", "SEV2", "acknowledge", 999.0)
            pipe.execute()
    figures_store.record(redis, keys, "i1", "SEV2", "resolve", 600.0)  # another figure counts
    samples = exposition(redis, keys)
    assert samples[(f"{ACK}_count", (("severity", "SEV2"),))] == 1
    assert samples[(f"{ACK}_sum", (("severity", "SEV2"),))] == 120.0
    resolve = "alertpilot_incident_time_to_resolve_seconds_count"
    assert samples[(resolve, (("severity", "SEV2"),))] == 1


def test_the_once_only_marker_lives_as_long_as_its_incident(redis: Redis, keys: Keys) -> None:
    redis.set(keys.incident("open1"), "{}")
    redis.set(keys.incident("gone1"), "{}", ex=600)
    figures_store.record(redis, keys, "open1", "SEV2", "declare", 60.0)
    figures_store.record(redis, keys, "gone1", "SEV2", "resolve", 60.0)
    figures_store.record(redis, keys, "unknown", "SEV2", "declare", 60.0)
    assert redis.ttl(keys.figures("open1")) == -1
    assert 590 <= redis.ttl(keys.figures("gone1")) <= 600
    assert redis.ttl(keys.figures("unknown")) > 29 * 24 * 3600


# Through the receiver and the API.


def test_period_figures_of_incidents_with_known_times_through_the_receiver(
    app: Flask, redis: Redis, keys: Keys, queue: Queue, stepped: SteppedClock
) -> None:
    client = figures_app(app)
    start = stepped.now()
    (slow,) = post(client, alert("search", start - timedelta(seconds=150))).json["incidents"]
    (fast,) = post(client, alert("billing-api", start - timedelta(seconds=30))).json["incidents"]
    run_jobs(queue)  # page and notify; scale_up in dry run: not a mitigation
    assert any(e["kind"] == "dry_run" for e in timeline(client, slow))
    stepped.advance(450)
    assert (
        client.post(f"/api/v1/incidents/{slow}/acknowledge", headers=RESPONDER).status_code == 200
    )
    stepped.advance(1200)
    post(client, resolved(alert("search", start - timedelta(seconds=150))))
    stepped.advance(2050)  # SEV2 responds within 1h: 3730 s after its alert is late
    assert (
        client.post(f"/api/v1/incidents/{fast}/acknowledge", headers=RESPONDER).status_code == 200
    )

    answer = client.get("/api/v1/figures?since=1d", headers=VIEWER)
    assert answer.status_code == 200, answer.json
    assert (answer.json["incidents"], answer.json["complete"]) == (2, True)
    sev2 = answer.json["severities"]["SEV2"]
    assert sev2["response_time"] == "1h" and sev2["incidents"] == 2
    assert sev2["time_to_declare_seconds"] == {"count": 2, "median": 30.0, "p90": 150.0}
    assert sev2["time_to_acknowledge_seconds"] == {"count": 2, "median": 600.0, "p90": 3730.0}
    assert sev2["time_to_resolve_seconds"] == {"count": 1, "median": 1800.0, "p90": 1800.0}
    assert sev2["time_to_mitigate_seconds"] == {"count": 0, "median": None, "p90": None}
    assert (sev2["acknowledged"], sev2["acknowledged_within"], sev2["share_within"]) == (2, 1, 0.5)
    assert answer.json["severities"]["SEV0"]["incidents"] == 0

    for incident_id in (slow, fast):  # what the wired call sites record, once each
        found = load_incident(redis, keys, incident_id)
        assert found is not None
        figures_store.transition(redis, keys, found, "declared")
        figures_store.transition(redis, keys, found, found.status)
        ack = client.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).json
        at = datetime.fromisoformat(ack["acknowledged_at"].replace("Z", "+00:00"))
        figures_store.acknowledged(redis, keys, found, at)
        figures_store.acknowledged(redis, keys, found, at + timedelta(hours=1))  # a re-delivery
    samples = exposition(redis, keys)
    sev2_label = (("severity", "SEV2"),)
    assert samples[(f"{ACK}_count", sev2_label)] == 2
    assert samples[(f"{ACK}_sum", sev2_label)] == 600.0 + 3730.0
    declare = "alertpilot_incident_time_to_declare_seconds_sum"
    assert samples[(declare, sev2_label)] == 180.0
    resolve = "alertpilot_incident_time_to_resolve_seconds_sum"
    assert samples[(resolve, sev2_label)] == 1800.0


def test_period_leaves_out_incidents_declared_before_it(app: Flask, stepped: SteppedClock) -> None:
    client = figures_app(app)
    post(client, alert("search", stepped.now() - timedelta(seconds=60)))
    stepped.advance(2 * 3600)
    post(client, alert("billing-api", stepped.now() - timedelta(seconds=60)))
    assert client.get("/api/v1/figures?since=1h", headers=VIEWER).json["incidents"] == 1
    assert client.get("/api/v1/figures?since=3h", headers=VIEWER).json["incidents"] == 2
    assert client.get("/api/v1/figures", headers=VIEWER).json["since"] == "7d"


def test_a_mitigation_that_changed_something_gives_the_time_to_mitigate(
    mitigation: MitigationBench, redis: Redis, keys: Keys, queue: Queue, stepped: SteppedClock
) -> None:
    app = mitigation.app()
    doc = latency()
    doc["alerts"][0]["startsAt"] = iso(stepped.now() - timedelta(seconds=60))
    (incident_id,) = post(app, doc).json["incidents"]
    stepped.advance(240)
    run_jobs(queue)  # scale_up for real, on the stand-in
    (done,) = [e for e in timeline(app, incident_id) if e.get("action") == "scale_up"]
    assert done["kind"] == "succeeded"
    found = load_incident(redis, keys, incident_id)
    assert found is not None
    figures_store.entry_written(redis, keys, found, done)  # where dispatch records it
    period = figures_store.load(
        redis,
        keys,
        POLICY,
        start=stepped.now() - timedelta(hours=1),
        end=stepped.now(),
        retention_seconds=90 * 86400,
    )
    (figures,) = period.figures
    assert (figures.to_declare, figures.to_mitigate) == (60.0, 300.0)
    samples = exposition(redis, keys)
    mitigate = "alertpilot_incident_time_to_mitigate_seconds_sum"
    assert samples[(mitigate, (("severity", "SEV2"),))] == 300.0


@pytest.mark.parametrize(
    "query",
    [
        "since=30m",
        "since=91d",
        "since=0h",
        "since=7",
        "since=1.5h",
        "since=7%20d",
        "since=-1h",
        "since=",
        "since=%C2%B2h",  # a superscript two
        "since=" + "1" * 5000 + "h",
        "since=1h&since=2h",
        "until=1h",
    ],
)
def test_figures_refuse_a_bad_since_naming_the_field(app: Flask, query: str) -> None:
    answer = figures_app(app).get(f"/api/v1/figures?{query}", headers=VIEWER)
    assert answer.status_code == 400
    field = "until" if query.startswith("until") else "since"
    assert answer.json["error"]["details"]["field"] == field


@pytest.mark.parametrize("since", ["1h", "36h", "2w", "90d", "1d12h"])
def test_figures_take_a_since_from_1h_to_90d(app: Flask, since: str) -> None:
    answer = figures_app(app).get(f"/api/v1/figures?since={since}", headers=VIEWER)
    assert answer.status_code == 200 and answer.json["since"] == since


def test_figures_are_for_people_only(app: Flask) -> None:
    client = figures_app(app)
    assert client.get("/api/v1/figures").status_code == 401
    assert client.get("/api/v1/figures", headers=AUTH).status_code == 403  # Alertmanager's


def test_a_period_longer_than_the_retention_says_it_is_incomplete(redis: Redis, keys: Keys) -> None:
    end = datetime.now(UTC)
    period = figures_store.load(
        redis, keys, POLICY, start=end - timedelta(days=30), end=end, retention_seconds=86400
    )
    assert (period.figures, period.complete, period.truncated) == ([], False, False)
