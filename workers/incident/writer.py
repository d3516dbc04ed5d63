"""Writing an incident change into the caller's MULTI: the record, its indexes, its
timeline and its jobs land together or not at all.

The receiver's intake (webhook/intake.py, changes made by alerts) and people's
commands (workers/incident/commands.py) both write through `Writer`, under their own
WATCH of what they read, so a change and the jobs it queues are one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.client import Pipeline
from rq import Queue
from rq.job import Job

from workers.incident import clock, figures_store, timeline
from workers.incident.keys import Keys, text
from workers.incident.record import Incident
from workers.incident.transitions import Change, JobSpec
from workers.jobs.contract import (
    RUN_ACTION,
    RUN_COMMANDER_CHECK,
    RUN_POSTMORTEM_CHECK,
    RUN_RUNBOOK,
    RUN_TICK,
    ActionRequest,
    CommanderCheck,
    PostmortemCheck,
    RunbookRequest,
    TickRequest,
    enqueue,
    lane_queue,
)
from workers.policy.engine import key_hash

OPENING = ("declared", "reopened")
"""Transitions after which the incident is its key's open one."""
CANCELLING = ("resolved", "escalated", "severity")
"""Transitions that end the pending status-update chain (a new one may start)."""


@dataclass(frozen=True)
class Writer:
    keys: Keys
    queue: Queue
    retention_seconds: int
    """How long a resolved incident, its timeline and its key index are kept."""

    def pending_tick(self, pipe: Pipeline, incident_id: str) -> str | None:
        """The open incident's pending status-update tick, read under WATCH: a resolve or
        a new chain (a change of severity) cancels it."""
        key = self.keys.pending_tick(incident_id)
        pipe.watch(key)  # type: ignore[no-untyped-call]
        found = pipe.get(key)
        return text(found) if found is not None else None

    def write(self, pipe: Pipeline, change: Change, tick: str | None) -> None:
        """Queue the change's writes on `pipe`, in MULTI; `tick` is the pending tick read
        with `pending_tick` (None: none, or not read because nothing cancels it)."""
        incident = change.incident
        index = self.keys.incident_key(key_hash(incident.key))
        # A resolved incident's record keeps the expiry its resolve set (_retire): a note,
        # a follow-up or a runbook run on it later must not keep it past retention.
        kept = incident.status == "resolved" and change.transition != "resolved"
        pipe.set(self.keys.incident(incident.id), incident.to_json(), keepttl=kept)
        if change.transition in OPENING:
            pipe.hset(index, mapping={"open": incident.id, "last": incident.id})
            pipe.persist(index)
            if change.transition == "reopened":  # back from retirement: kept for good again
                for key in self._kept(incident, index)[1:]:
                    pipe.persist(key)
                pipe.zrem(self.keys.resolved_incidents, incident.id)
            pipe.zadd(
                self.keys.open_incidents, {incident.id: timeline.seconds(incident.started_at)}
            )
        elif change.transition == "resolved":
            self._retire(pipe, incident, index)
        timeline.append(pipe, self.keys, incident.id, *change.entries)
        figures_store.transition(pipe, self.keys, incident, change.transition)
        for job in change.jobs:
            enqueue(
                self.queue,
                RUN_ACTION,
                self._request(incident, job).to_json(),
                job.job_id,
                at=_later(job.delay_seconds),
                pipeline=pipe,
                description=f"{job.action.name} {job.transition} {incident.id}",
            )
        if tick is not None and (change.transition in CANCELLING or change.tick is not None):
            self._cancel_tick(pipe, incident.id, tick, resolved=change.transition == "resolved")
        if change.tick is not None:
            self._schedule_tick(pipe, change)
        for job_id in change.cancel:  # still waiting in the scheduler, or nothing to do
            registry = lane_queue(self.queue, "").scheduled_job_registry
            pipe.zrem(registry.key, job_id)
            pipe.delete(Job.key_for(job_id))
        book = self.runbook_request(change)
        if book is not None:  # read-only steps, in the bulk lane: never before a page
            enqueue(
                self.queue,
                RUN_RUNBOOK,
                book.to_json(),
                book.job_id,
                pipeline=pipe,
                description=f"runbook {book.runbook} {incident.id}",
            )
        if change.postmortem_due is not None:
            due = PostmortemCheck(self.keys.prefix, incident.id, change.postmortem_due)
            enqueue(
                self.queue,
                RUN_POSTMORTEM_CHECK,
                due.to_json(),
                due.job_id,
                at=datetime.fromisoformat(change.postmortem_due.replace("Z", "+00:00")),
                pipeline=pipe,
                description=f"postmortem due {incident.id}",
            )
        if change.commander_check is not None:
            check = CommanderCheck(self.keys.prefix, incident.id, incident.severity)
            enqueue(
                self.queue,
                RUN_COMMANDER_CHECK,
                check.to_json(),
                check.job_id,
                at=_later(change.commander_check),
                pipeline=pipe,
                description=f"commander check {incident.id}",
            )

    def runbook_request(self, change: Change) -> RunbookRequest | None:
        """The run of the route's runbook the change asks for, if any: named for its
        transition (declared, escalated-SEV1, resolved) or a person's ask."""
        if change.runbook is None:
            return None
        incident = change.incident
        if change.runbook_when is not None:
            when = change.runbook_when
        elif change.transition == "escalated":
            when = f"escalated-{incident.severity}"
        else:
            when = str(change.transition)
        return RunbookRequest(
            self.keys.prefix,
            incident.id,
            change.runbook,
            when,
            revision=incident.revision,
            release=change.waiting,
        )

    def _schedule_tick(self, pipe: Pipeline, change: Change) -> None:
        assert change.tick is not None
        incident = change.incident
        tick = TickRequest(
            prefix=self.keys.prefix,
            incident_id=incident.id,
            severity=change.tick.severity,
            n=1,
            every=change.tick.delay_seconds,
            public=change.tick.public,
            revision=change.tick.revision,
        )
        pipe.set(self.keys.pending_tick(incident.id), tick.job_id)
        enqueue(
            self.queue,
            RUN_TICK,
            tick.to_json(),
            tick.job_id,
            at=_later(tick.every),
            pipeline=pipe,
            description=f"status update tick {incident.id}",
        )

    def _cancel_tick(self, pipe: Pipeline, incident_id: str, tick: str, *, resolved: bool) -> None:
        """A resolve or a new chain ends the pending status-update chain."""
        pipe.zrem(self.queue.scheduled_job_registry.key, tick)
        pipe.delete(Job.key_for(tick))
        if resolved:
            pipe.delete(self.keys.pending_tick(incident_id))

    def _retire(self, pipe: Pipeline, incident: Incident, index: str) -> None:
        """Close the incident: off the open index, kept for the retention period, then gone."""
        resolved_at = timeline.seconds(incident.resolved_at or incident.updated_at)
        retention = self.retention_seconds
        pipe.hdel(index, "open")
        pipe.zrem(self.keys.open_incidents, incident.id)
        pipe.zadd(self.keys.resolved_incidents, {incident.id: resolved_at})
        pipe.zremrangebyscore(self.keys.resolved_incidents, "-inf", resolved_at - retention)
        for key in self._kept(incident, index):
            pipe.expire(key, retention)

    def _kept(self, incident: Incident, index: str) -> tuple[str, ...]:
        """What a resolved incident keeps for the retention period (the index first)."""
        return (
            index,
            self.keys.incident(incident.id),
            self.keys.timeline(incident.id),
            self.keys.external(incident.id),
            self.keys.acknowledgement(incident.id),
            self.keys.pending_tick(incident.id),
            self.keys.figures(incident.id),
        )

    def _request(self, incident: Incident, job: JobSpec) -> ActionRequest:
        return ActionRequest(
            prefix=self.keys.prefix,
            incident_id=incident.id,
            action=job.action.name,
            transition=job.transition,
            severity=job.severity,
            params=dict(job.action.params),
            dry_run=job.dry_run,
            public=job.public,
            update_every=job.update_every,
            route=job.route,
        )


def _later(seconds: int) -> datetime | None:
    """When a job `seconds` from now runs (RQ's scheduler); None: at once."""
    return clock.now() + timedelta(seconds=seconds) if seconds else None
