"""alertpilot's own metrics, on an explicit registry.

Per-process metrics (notifications, alerts, request latency, jobs enqueued)
are prometheus-client counters; under gunicorn they go through the
multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, set by `alertpilot serve`).
State that lives in Redis (open incidents, jobs finished by any worker, the
incidents' response figures) is read from Redis at scrape time by
`RedisStateCollector`, so it is the same on every replica: aggregate it with max(),
not sum().
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis import Redis
from redis.exceptions import RedisError

from webhook import replay
from workers.incident import figures_store
from workers.incident.acknowledgement import Acknowledgement
from workers.incident.figures import FIGURES, Figure
from workers.incident.keys import Keys, text
from workers.incident.record import open_counts_by_severity

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "RedisStateCollector"]

FIGURE_HELP: dict[Figure, str] = {
    "declare": "From an incident's first alert (its startsAt) to its declaration.",
    "acknowledge": "From an incident's first alert (its startsAt) to its first acknowledgement.",
    "mitigate": "From an incident's first alert (its startsAt) to its first mitigation "
    "that changed something.",
    "resolve": "From an incident's first alert (its startsAt) to its first resolve.",
}


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.notifications = Counter(
            "alertpilot_notifications_received_total",
            "Alertmanager notifications received, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.alerts = Counter(
            "alertpilot_alerts_received_total",
            "Alerts in notifications taken (accepted or duplicate), by alert status.",
            ["status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "alertpilot_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "endpoint", "code"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.jobs_enqueued = Counter(
            "alertpilot_jobs_enqueued_total",
            "Jobs enqueued at intake, by action and transition.",
            ["action", "transition"],
            registry=registry,
        )
        self.policy_reloads = Counter(
            "alertpilot_policy_reloads_total",
            "Policy sets loaded by hot reload.",
            registry=registry,
        )
        self.policy_reload_failures = Counter(
            "alertpilot_policy_reload_failures_total",
            "Changed policy sets rejected by hot reload (the previous set stays in force).",
            registry=registry,
        )
        self.time_to_acknowledge = Histogram(
            "alertpilot_time_to_acknowledge_seconds",
            "From incident declared to its first acknowledgement in PagerDuty.",
            ["severity"],
            registry=registry,
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400),
        )
        self.acknowledgements = Counter(
            "alertpilot_acknowledgements_total",
            "First acknowledgements in PagerDuty, by severity and within its response time.",
            ["severity", "within"],
            registry=registry,
        )
        for outcome in ("accepted", "duplicate", "rejected", "unavailable"):
            self.notifications.labels(outcome)
        for status in ("firing", "resolved"):
            self.alerts.labels(status)

    def acknowledged(self, severity: str, first: Acknowledgement) -> None:
        """A first acknowledgement (PagerDuty's or a person's)."""
        self.time_to_acknowledge.labels(severity).observe(first.seconds)
        if first.within is not None:
            self.acknowledgements.labels(severity, str(first.within).lower()).inc()

    def policy_reloaded(self, ok: bool) -> None:
        (self.policy_reloads if ok else self.policy_reload_failures).inc()

    def exposition(self, state: Collector) -> bytes:
        """The text format: this registry, or every process's files under gunicorn."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry(support_collectors_without_names=True)
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = self.registry
        text = generate_latest(registry)
        scratch = CollectorRegistry(auto_describe=False)
        scratch.register(state)
        return text + generate_latest(scratch)


class RedisStateCollector(Collector):
    """Open incidents, finished jobs and response figures, read from Redis when scraped."""

    def __init__(self, redis: Redis, keys: Keys, severities: Callable[[], Iterable[str]]) -> None:
        self.redis = redis
        self.keys = keys
        self.severities = severities
        """Severity names of the policy in force: each gets a sample, zero included."""

    def collect(self) -> Iterator[Metric]:
        open_incidents = GaugeMetricFamily(
            "alertpilot_incidents_open", "Open incidents by severity.", labels=["severity"]
        )
        finished = CounterMetricFamily(
            "alertpilot_jobs_finished",
            "Jobs finished by any worker, by action and outcome.",
            labels=["action", "outcome"],
        )
        recorded = GaugeMetricFamily(
            "alertpilot_replay_bytes",
            "Bytes of the notifications recorded for policy diff --replay "
            "(at most ALERTPILOT_REPLAY_MAX_BYTES).",
        )
        try:
            recorded.add_metric([], replay.size(self.redis, self.keys))
            counts = open_counts_by_severity(self.redis, self.keys)
            for severity in dict.fromkeys([*self.severities(), *sorted(counts)]):
                open_incidents.add_metric([severity], counts.get(severity, 0))
            for field, value in sorted(self.redis.hgetall(self.keys.jobs_finished).items()):
                action, _, outcome = text(field).partition("|")
                finished.add_metric([action, outcome], int(value))
            figures = self.figures()
        except RedisError:
            return  # /readyz reports Redis; a scrape still shows the process metrics
        yield open_incidents
        yield finished
        yield recorded
        yield from figures

    def figures(self) -> list[HistogramMetricFamily]:
        """alertpilot_incident_time_to_<figure>_seconds{severity}: each incident counted
        once, when the figure became known (workers/incident/figures_store.py); every
        severity of the policy has one, zero included."""
        stored = figures_store.histograms(self.redis, self.keys)
        zero = figures_store.Histogram({}, 0, 0.0)
        families = []
        for figure in FIGURES:
            family = HistogramMetricFamily(
                f"alertpilot_incident_time_to_{figure}_seconds",
                FIGURE_HELP[figure],
                labels=["severity"],
            )
            found = stored[figure]
            for severity in dict.fromkeys([*self.severities(), *found]):
                histogram = found.get(severity, zero)
                buckets = [(_le(b), n) for b, n in histogram.cumulative()]
                family.add_metric([severity], buckets, histogram.sum)
            families.append(family)
        return families


def _le(bound: float) -> str:
    """A bucket's bound as prometheus-client writes its own ("300.0", "+Inf")."""
    found: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return found
