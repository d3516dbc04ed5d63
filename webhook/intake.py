"""Apply one notification to incident state and enqueue its jobs, in one Redis transaction.

The read of the current incidents is WATCHed and the writes (incident
documents, indexes, timeline, the jobs themselves, the seen-marker) go out in
one MULTI/EXEC, so a notification is applied whole or not at all: a 200
means its effect is in Redis, and a crash or a Redis error before EXEC leaves
nothing behind for the retry to trip over.

Resends cost one round trip: a notification whose alert set (fingerprint,
status, startsAt) was applied before hits the seen-marker and stops there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import Queue

from webhook.incidents import Change, Context, JobSpec, apply
from webhook.payload import Alert, Notification
from webhook.policy import Match, Policy, evaluate
from webhook.policy.engine import key_hash
from workers import timeline
from workers.incidents import Incident
from workers.keys import Keys, text

JOB_FUNCTION = "workers.jobs.run_action"
JOB_TIMEOUT = 300
RESULT_TTL = 24 * 3600
FAILURE_TTL = 30 * 24 * 3600
MAX_ATTEMPTS = 20
"""Optimistic-lock retries before giving up with 503 (Alertmanager then retries)."""

Outcome = Literal["accepted", "duplicate"]


class Contention(Exception):
    """Too many concurrent writers on the same incidents; safe to retry later."""


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    incidents: list[str] = field(default_factory=list)
    jobs: list[JobSpec] = field(default_factory=list)


@dataclass(frozen=True)
class _Group:
    key: str
    hash: str
    alerts: list[tuple[Alert, Match]]


class Intake:
    def __init__(
        self,
        *,
        redis: Redis,
        queue: Queue,
        keys: Keys,
        policy: Callable[[], Policy],
        dedup_ttl_seconds: int,
        retention_seconds: int,
        dry_run: bool,
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.keys = keys
        self.policy = policy
        self.dedup_ttl_seconds = dedup_ttl_seconds
        self.retention_seconds = retention_seconds
        self.dry_run = dry_run

    def apply(self, notification: Notification) -> IntakeResult:
        seen = self.keys.seen(digest(notification))
        if self.redis.exists(seen):
            return IntakeResult("duplicate")
        policy = self.policy()  # one whole set for the whole notification
        groups = _group(notification, policy)
        ctx = Context(policy, notification, timeline.utcnow(), self.dry_run)
        for _ in range(MAX_ATTEMPTS):
            try:
                return self._transaction(seen, groups, ctx)
            except WatchError:
                continue
        raise Contention(f"gave up after {MAX_ATTEMPTS} conflicting writes")

    def _transaction(self, seen: str, groups: list[_Group], ctx: Context) -> IntakeResult:
        with self.redis.pipeline() as pipe:
            pipe.watch(seen, *(self.keys.incident_key(g.hash) for g in groups))  # type: ignore[no-untyped-call]
            if pipe.exists(seen):
                return IntakeResult("duplicate")
            changes = [self._change(pipe, group, ctx) for group in groups]
            pipe.multi()
            done = [c for c in changes if c is not None]
            for change in done:
                self._write(pipe, change)
            pipe.set(seen, "1", ex=self.dedup_ttl_seconds)
            pipe.execute()
        if not done:
            return IntakeResult("duplicate")
        jobs = [job for change in done for job in change.jobs]
        return IntakeResult("accepted", [c.incident.id for c in done], jobs)

    def _change(self, pipe: Pipeline, group: _Group, ctx: Context) -> Change | None:
        index = self.keys.incident_key(group.hash)
        open_id, seq = pipe.hmget(index, ["open", "seq"])
        current = None
        if open_id is not None:
            doc_key = self.keys.incident(text(open_id))
            pipe.watch(doc_key)  # type: ignore[no-untyped-call]
            raw = pipe.get(doc_key)
            current = Incident.from_json(raw) if raw is not None else None
        new_id = f"{group.hash[:12]}-{int(seq or 0) + 1}"
        return apply(current, group.alerts, ctx, key=group.key, new_id=new_id)

    def _write(self, pipe: Pipeline, change: Change) -> None:
        incident = change.incident
        index = self.keys.incident_key(key_hash(incident.key))
        pipe.set(self.keys.incident(incident.id), incident.to_json())
        if change.transition == "declared":
            pipe.hset(index, mapping={"open": incident.id, "seq": incident.id.rsplit("-", 1)[1]})
            pipe.zadd(self.keys.open_incidents, {incident.id: _score(incident.started_at)})
        elif change.transition == "resolved":
            self._retire(pipe, incident, index)
        timeline.append(pipe, self.keys, incident.id, *change.entries)
        for job in change.jobs:
            self.queue.enqueue_call(
                JOB_FUNCTION,
                args=(self._payload(incident, job),),
                job_id=job.job_id,
                timeout=JOB_TIMEOUT,
                result_ttl=RESULT_TTL,
                failure_ttl=FAILURE_TTL,
                description=f"{job.action.name} {job.transition} {incident.id}",
                pipeline=pipe,
            )

    def _retire(self, pipe: Pipeline, incident: Incident, index: str) -> None:
        """Close the incident: off the open index, kept for the retention period, then gone."""
        resolved_at = _score(incident.resolved_at or incident.updated_at)
        pipe.hdel(index, "open")
        pipe.zrem(self.keys.open_incidents, incident.id)
        pipe.zadd(self.keys.resolved_incidents, {incident.id: resolved_at})
        expired = resolved_at - self.retention_seconds
        pipe.zremrangebyscore(self.keys.resolved_incidents, "-inf", expired)
        pipe.expire(self.keys.incident(incident.id), self.retention_seconds)
        pipe.expire(self.keys.timeline(incident.id), self.retention_seconds)

    def _payload(self, incident: Incident, job: JobSpec) -> dict[str, object]:
        return {
            "prefix": self.keys.prefix,
            "incident_id": incident.id,
            "action": job.action.name,
            "params": job.action.params,
            "transition": job.transition,
            "severity": job.severity,
            "dry_run": job.dry_run,
        }


def digest(notification: Notification) -> str:
    """Identity of a notification's content: same group, same alerts in the same states.

    startsAt is part of it, so an alert that resolves and later fires again is
    new, while a stale resend of the first firing is not.
    """
    alerts = sorted((a.fingerprint, a.status, a.starts_at) for a in notification.alerts)
    body = json.dumps([notification.receiver, notification.group_key, alerts])
    return hashlib.sha256(body.encode()).hexdigest()


def _group(notification: Notification, policy: Policy) -> list[_Group]:
    """Alerts by incident key; an alert on two routes (`continue`) is in two groups."""
    groups: dict[str, list[tuple[Alert, Match]]] = {}
    for alert in notification.alerts:
        for match in evaluate(
            policy, alert.labels, annotations=alert.annotations, group_key=notification.group_key
        ):
            groups.setdefault(match.incident_key, []).append((alert, match))
    return [_Group(key, key_hash(key), alerts) for key, alerts in groups.items()]


def _score(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
