"""alertpilot's own metrics, on an explicit registry.

Per-process metrics (notifications, alerts, request latency, jobs enqueued)
are prometheus-client counters; under gunicorn they go through the
multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, set by `alertpilot serve`).
State that lives in Redis (open incidents, jobs finished by any worker, the
incidents' response figures, the job queues, the workers and the scheduler RQ
registers there, the kill switch) is read from Redis at scrape time by
`RedisStateCollector`, so it is the same on every replica: aggregate it with max(),
not sum().
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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
from rq import Queue
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from webhook import replay
from workers.incident import clock, figures_store
from workers.incident.acknowledgement import Acknowledgement
from workers.incident.figures import FIGURES, Figure
from workers.incident.keys import Keys, text
from workers.incident.record import open_counts_by_severity
from workers.jobs.contract import LANES, lanes

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


LANE_LABELS = {name: name or "bulk" for name in LANES}
"""The `lane` label of each lane (workers/jobs/contract.py LANES): the queue itself,
where mitigations, reverts and status ticks go, is `bulk`."""
HEAD_PEEK = 10
"""Job ids read at a lane's head for its oldest job's age: RQ skips an id whose job is
gone, so the first of these whose job still exists is the one a worker takes next."""


class RedisStateCollector(Collector):
    """Open incidents, finished jobs, response figures, the job queues, workers and
    scheduler, and the kill switch, read from Redis when scraped."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        severities: Callable[[], Iterable[str]],
        *,
        queue: Queue | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.severities = severities
        """Severity names of the policy in force: each gets a sample, zero included."""
        self.queue = queue
        """Any lane of the installation's queue (ALERTPILOT_QUEUE): its lanes' queues,
        workers and scheduler are read through it. None: no queue metrics."""

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
            paused = GaugeMetricFamily(
                "alertpilot_mitigations_paused",
                "1 while an admin has paused automatic mitigations (the kill switch), else 0.",
            )
            paused.add_metric([], int(self.redis.exists(self.keys.mitigations_paused)))
            since = GaugeMetricFamily(
                "alertpilot_mitigations_paused_since_seconds",
                "When the kill switch was turned on (Unix time); absent while it is off.",
            )
            paused_at = self.redis.get(self.keys.mitigations_paused_at)
            if paused_at is None and self.redis.exists(self.keys.mitigations_paused):
                # Paused by a version that kept no start: from the first scrape that sees
                # it, so the alert about a long pause can still fire.
                self.redis.set(self.keys.mitigations_paused_at, f"{clock.timestamp():.0f}", nx=True)
                paused_at = self.redis.get(self.keys.mitigations_paused_at)
            if paused_at is not None and text(paused_at).isdigit():
                since.add_metric([], float(text(paused_at)))
            queues = self.queues() if self.queue is not None else []
        except RedisError:
            # /readyz reports Redis too, and takes the receiver out of its Service: no
            # 503 is counted then, so this is what says Redis is away.
            yield _redis_up(0)
            return
        yield _redis_up(1)
        yield open_incidents
        yield finished
        yield recorded
        yield from figures
        yield paused
        yield since
        yield from queues

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

    def queues(self) -> list[GaugeMetricFamily]:
        """Per lane: jobs waiting and the oldest one's wait, scheduled jobs overdue, jobs
        in RQ's failed registry, live workers, and whether a scheduler holds the lane."""
        assert self.queue is not None
        now = time.time()
        families = [GaugeMetricFamily(name, doc, labels=["lane"]) for name, doc in QUEUE_METRICS]
        named = dict(zip((LANE_LABELS[n] for n in LANES), lanes(self.queue), strict=True))
        for state in read_lanes(self.redis, named, now):
            values = (
                state.waiting,
                state.oldest_age,
                state.overdue,
                state.failed,
                state.workers,
                int(state.scheduler),
            )
            for family, value in zip(families, values, strict=True):
                family.add_metric([state.lane], value)
        return families


QUEUE_METRICS = (
    ("alertpilot_queue_jobs", "Jobs waiting in each lane's queue."),
    (
        "alertpilot_queue_oldest_job_age_seconds",
        "How long the job at the head of each lane's queue has waited (0: none waits).",
    ),
    (
        "alertpilot_scheduled_jobs_overdue_seconds",
        "How far past its time the most overdue scheduled job of each lane is (0: none); "
        "RQ's scheduler moves a job into its queue once it is due.",
    ),
    (
        "alertpilot_failed_jobs",
        "Jobs in each lane's RQ failed job registry (failed for good, not yet retried).",
    ),
    ("alertpilot_workers", "Live RQ workers taking jobs from each lane."),
    ("alertpilot_scheduler_up", "1 while an RQ scheduler holds each lane's scheduler lock."),
)
"""The per-lane gauges, in the order of LaneState's figures."""


@dataclass(frozen=True)
class LaneState:
    lane: str
    waiting: int
    oldest_age: float
    overdue: float
    failed: int
    workers: int
    scheduler: bool


def read_lanes(redis: Redis, queues: dict[str, Queue], now: float) -> list[LaneState]:
    """What RQ keeps about each lane, read only (RQ's own counts clean up as they read)
    and in two round trips: the lists, sets and registries, then the head jobs' times
    and the workers' keys (a worker's key expires when its heartbeat stops).
    `queues`: each lane's queue by its label."""
    with redis.pipeline(transaction=False) as pipe:
        for q in queues.values():
            pipe.llen(q.key)
            pipe.lrange(q.key, 0, HEAD_PEEK - 1)
            scheduled = q.scheduled_job_registry.key  # score: when the job is due
            pipe.zrangebyscore(scheduled, "-inf", now, start=0, num=1, withscores=True)
            # Score: when the entry expires (-1: never); RQ drops the expired when it counts.
            pipe.zcard(q.failed_job_registry.key)
            pipe.zcount(q.failed_job_registry.key, 0, now)
            pipe.smembers(WORKERS_BY_QUEUE_KEY % q.name)
            pipe.exists(RQScheduler.get_locking_key(q.name))
        found = pipe.execute()
    per_lane = len(found) // len(queues)
    lists = [found[i : i + per_lane] for i in range(0, len(found), per_lane)]
    with redis.pipeline(transaction=False) as pipe:
        for _, heads, _, _, _, workers, _ in lists:
            for job_id in heads:
                pipe.hget(Job.key_for(text(job_id)), "enqueued_at")
            for worker in workers:
                pipe.exists(worker)
        answers = iter(pipe.execute())
    states = []
    for lane, found_of_lane in zip(queues, lists, strict=True):
        waiting, heads, due, failed, expired, workers, locked = found_of_lane
        enqueued = [next(answers) for _ in heads]
        alive = sum(1 for _ in workers if next(answers))
        ages = (_age(now, text(at)) for at in enqueued if at)
        oldest = next((age for age in ages if age is not None), 0.0) if waiting else 0.0
        overdue = max(0.0, now - float(due[0][1])) if due else 0.0
        failing = failed - expired
        states.append(LaneState(lane, waiting, oldest, overdue, failing, alive, bool(locked)))
    return states


def _le(bound: float) -> str:
    """A bucket's bound as prometheus-client writes its own ("300.0", "+Inf")."""
    found: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return found


def _age(now: float, enqueued_at: str) -> float | None:
    """Seconds since RQ's `enqueued_at` (UTC, "%Y-%m-%dT%H:%M:%S.%fZ"), never negative;
    None for a time RQ did not write (a scrape never fails on a job's field)."""
    try:
        return max(0.0, now - utcparse(enqueued_at).timestamp())
    except ValueError:
        return None


def _redis_up(value: int) -> GaugeMetricFamily:
    up = GaugeMetricFamily(
        "alertpilot_redis_up", "1 when this scrape read alertpilot's state from Redis, else 0."
    )
    up.add_metric([], value)
    return up
