"""The job contract: what the receiver and the workers agree a job is.

The RQ functions jobs name (by dotted path, so a job queued by one release runs
on the next), the actions and transitions there are, the payloads (plain JSON,
never pickles), the job ids (deterministic, within RQ's `[A-Za-z0-9_-]`), the
timeouts and TTLs, and `enqueue`, the one way any caller queues a job. Imports
nothing of alertpilot: the domain, the receiver and the workers all build on it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from pydantic import TypeAdapter
from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

RUN_ACTION = "workers.entry.run_action"
RUN_TICK = "workers.entry.run_tick"
RUN_COMMANDER_CHECK = "workers.entry.run_commander_check"
RUN_RUNBOOK = "workers.entry.run_runbook"
RUN_POSTMORTEM_CHECK = "workers.entry.run_postmortem_check"

Transition = Literal["declared", "escalated", "update", "resolved", "handoff", "reminder"]
TRANSITIONS = ("declared", "escalated", "update", "resolved", "handoff", "reminder")
"""handoff: a mitigation used its attempts and a person takes over (workers/handoff.py);
reminder: a resolved incident still needs a person (its postmortem is overdue)."""
COMMUNICATION_ACTIONS = ("page", "statuspage", "notify", "war_room")
MITIGATION_ACTIONS = ("scale_up", "rate_limit", "rollout_restart", "rollback")
ACTION_NAMES = COMMUNICATION_ACTIONS + MITIGATION_ACTIONS

LANES = ("urgent", "comms", "")
"""Queues by urgency, a worker takes from them in this order: pages (`<queue>-urgent`),
then the other communication (`<queue>-comms`), then the rest (the queue itself:
mitigations, their reverts, status ticks). One action always takes one lane, so each
action's jobs keep their order (a page's resolve after its trigger)."""


def lane(function: str, payload: Mapping[str, Any]) -> str:
    """The lane a job goes to (one of LANES)."""
    action = payload.get("action") if function == RUN_ACTION else None
    if action == "page":
        return "urgent"
    if action in COMMUNICATION_ACTIONS:
        return "comms"
    return ""


def base_name(name: str) -> str:
    """The installation's queue name (ALERTPILOT_QUEUE) from any of its lanes' names."""
    for suffix in (f"-{n}" for n in LANES if n):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def lane_queue(queue: Queue, name: str) -> Queue:
    """`queue`'s lane `name` (any lane's queue in, same connection and serializer)."""
    base = base_name(queue.name)
    full = f"{base}-{name}" if name else base
    if full == queue.name:
        return queue
    return _lane(full, queue.connection, cast(Hashable, queue.serializer))


@functools.lru_cache(maxsize=64)
def _lane(name: str, connection: Redis, serializer: Hashable) -> Queue:
    """A lane's Queue, made once per connection (RQ's Queue() checks its serializer
    against a Protocol each time: a tenth of a new alert's intake)."""
    return Queue(name, connection=connection, serializer=cast(Any, serializer))


def lanes(queue: Queue) -> list[Queue]:
    """Every lane of `queue`'s installation, most urgent first: what a worker listens to."""
    return [lane_queue(queue, name) for name in LANES]


JOB_TIMEOUT = 300
"""Seconds a job may run; also how long its action lock lives if the worker dies."""
CRASH_RETRIES = Retry(max=3, interval=[30, 120, 300])
"""For jobs that die (killed work horse, timeout, a bug): RQ requeues them."""
RESULT_TTL = 24 * 3600
FAILURE_TTL = 30 * 24 * 3600


def action_job_id(incident_id: str, tag: str, action: str) -> str:
    """`<incident>-<tag>-<action>`; tag: the transition, `escalated-<SEV>`,
    `update-<SEV>-<n>`, `attempt<n>` or `handoff-<mitigation>`."""
    return f"{incident_id}-{tag}-{action}"


def approved_job_id(incident_id: str, proposal_id: str) -> str:
    """The job an approval queues: one per proposal, which is used once."""
    return f"{incident_id}-approved-{proposal_id}"


def tick_job_id(incident_id: str, severity: str, n: int, revision: int = 0) -> str:
    """A chain of status updates per severity, and per revision once people reopened or
    changed the severity (a chain that restarts is a new one)."""
    chain = f"r{revision}-{severity}" if revision else severity
    return f"{incident_id}-tick-{chain}-{n}"


@dataclass(frozen=True)
class Approved:
    """What a person approved: the exact object, and what must still hold when it runs.

    The approved job acts on this object alone (never on whatever the incident's
    alerts name by then), and refuses, on the timeline, if it has changed.
    """

    proposal: str
    namespace: str
    kind: str
    """"deployment" (what restart and rollback change)."""
    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    """For a rollback: from_revision, to_revision, from_images, to_images."""

    @property
    def target(self) -> tuple[str, str]:
        return self.namespace, self.name

    def to_json(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Approved:
        return _decode(cls, doc)


@dataclass(frozen=True)
class ActionRequest:
    """The payload of a `RUN_ACTION` job: one action for one incident transition.

    `params` are the route's settings for the action (workers/params.py); what
    the run adds (attempt, note, approval, the object a follow-up keeps to) has
    fields of its own.
    """

    prefix: str
    incident_id: str
    action: str
    transition: Transition
    severity: str
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = True
    public: bool = False
    """The severity goes on the status page."""
    update_every: int | None = None
    """Seconds between status updates at this severity (None: no cadence)."""
    route: str = ""
    """The route whose action this is; a mitigation reads its settings in the policy in force."""
    attempt: int = 1
    """A mitigation's follow-up attempts count up from 1 (scale_up)."""
    note: str = ""
    """Why a person takes over (transition "handoff")."""
    approved: Approved | None = None
    """Set on the job an approval queued."""
    target: str = ""
    """"namespace/name" a follow-up attempt keeps to: the object attempt 1 changed."""
    job_id: str = ""
    """The RQ job running this request (set by workers/jobs/dispatch.py; not in the payload)."""

    def to_json(self) -> dict[str, Any]:
        doc = _plain(self)
        del doc["job_id"]  # the RQ job's, not the payload's
        if self.approved is not None:
            doc["approved"] = self.approved.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ActionRequest:
        if doc.get("action") not in ACTION_NAMES:
            raise ValueError(f"unknown action, got {doc.get('action')!r}")
        if doc.get("transition") not in TRANSITIONS:
            raise ValueError(f"unknown transition, got {doc.get('transition')!r}")
        return _decode(cls, {k: v for k, v in doc.items() if k != "job_id"})


@dataclass(frozen=True)
class TickRequest:
    """The payload of a `RUN_TICK` job: the n-th status update of an open incident at a
    severity's cadence (workers/cadence.py)."""

    prefix: str
    incident_id: str
    severity: str
    n: int
    every: int
    """Seconds between ticks."""
    public: bool = False
    revision: int = 0
    """The incident's revision when the chain started (a newer one stops it)."""

    @property
    def job_id(self) -> str:
        return tick_job_id(self.incident_id, self.severity, self.n, self.revision)

    def to_json(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TickRequest:
        return _decode(cls, doc)


@dataclass(frozen=True)
class CommanderCheck:
    """The payload of a `RUN_COMMANDER_CHECK` job: at its severity's response time, an
    incident whose severity needs a commander and has none says so (workers/cadence.py)."""

    prefix: str
    incident_id: str
    severity: str

    @property
    def job_id(self) -> str:
        return f"{self.incident_id}-ic-check-{self.severity}"

    def to_json(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CommanderCheck:
        return _decode(cls, doc)


@dataclass(frozen=True)
class PostmortemCheck:
    """The payload of a `RUN_POSTMORTEM_CHECK` job: when its postmortem falls due, a
    resolved incident whose postmortem is not written says so (workers/cadence.py)."""

    prefix: str
    incident_id: str
    due_at: str

    @property
    def job_id(self) -> str:
        return f"{self.incident_id}-postmortem-due-{self.due_at.replace(':', '')}"

    def to_json(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PostmortemCheck:
        return _decode(cls, doc)


@dataclass(frozen=True)
class RunbookRequest:
    """The payload of a `RUN_RUNBOOK` job: run the read-only steps of a route's runbook
    for an incident (workers/runbook_steps.py), at `when` (declared, escalated-SEV1...)."""

    prefix: str
    incident_id: str
    runbook: str
    when: str
    revision: int = 0
    """The incident's revision (a reopen, a person's severity change): a new run."""
    release: tuple[str, ...] = ()
    """Scheduled jobs that wait for this run (the declared chat message): queued when
    it is done, or at their time if this run never finishes."""

    @property
    def job_id(self) -> str:
        tag = f"r{self.revision}-{self.when}" if self.revision else self.when
        return f"{self.incident_id}-runbook-{tag}"

    def to_json(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunbookRequest:
        return _decode(cls, doc)


Payload = TypeVar(
    "Payload", Approved, ActionRequest, TickRequest, CommanderCheck, PostmortemCheck, RunbookRequest
)


def _plain(
    payload: Approved
    | ActionRequest
    | TickRequest
    | CommanderCheck
    | PostmortemCheck
    | RunbookRequest,
) -> dict[str, Any]:
    """Its fields as a new dict, values as they are (dataclasses.asdict deep-copies each:
    a tenth of a new alert's intake time; the JSON serializer reads them as they are)."""
    return {f.name: getattr(payload, f.name) for f in fields(payload)}


def _decode(cls: type[Payload], doc: Mapping[str, Any]) -> Payload:
    """A payload from its JSON, each field checked against its type (pydantic's
    ValidationError is a ValueError: a malformed payload fails as one)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:  # built once per process, on first use
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return cast(TypeAdapter[Payload], adapter).validate_python(dict(doc))


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def enqueue(
    queue: Queue,
    function: str,
    payload: dict[str, Any],
    job_id: str,
    *,
    at: datetime | None = None,
    pipeline: Pipeline | None = None,
    description: str | None = None,
) -> bool:
    """Queue `function(payload)` as `job_id`, now or at `at` (RQ's scheduler).

    With `pipeline` (a MULTI the caller executes with its state change): the job is
    written into that transaction, so it exists if and only if the change commits.
    A scheduled job is written by hand there: RQ 2.12's ScheduledJobRegistry.schedule
    ignores its pipeline and ZADDs at once. Deterministic ids make a repeat harmless.

    Without: at most once (`unique`): False if a job of that id is already there,
    so a rerun of whatever queues it (a requeued tick, a rerun handler) adds nothing.
    """
    queue = lane_queue(queue, lane(function, payload))
    options: dict[str, Any] = {
        "args": (payload,),
        "job_id": job_id,
        "timeout": JOB_TIMEOUT,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "retry": CRASH_RETRIES,
        "description": description,
    }
    if at is None and pipeline is not None:
        queue.enqueue_job(queue.create_job(function, **options), pipeline=pipeline)
        return True
    if at is not None and pipeline is not None:
        job = queue.create_job(function, **options, status=JobStatus.SCHEDULED)
        pipeline.sadd(queue.redis_queues_keys, queue.key)
        job.set_status(JobStatus.SCHEDULED, pipeline=pipeline)
        job.save(pipeline=pipeline)
        pipeline.zadd(queue.scheduled_job_registry.key, {job.id: int(at.timestamp())})
        return True
    try:
        if at is None:
            queue.enqueue_call(function, **options, unique=True)
        else:
            # Not enqueue_at: RQ 2.12 drops its `unique` (a second call would reschedule).
            job = queue.create_job(function, **options, status=JobStatus.SCHEDULED)
            queue.schedule_job(job, at, unique=True)
    except DuplicateJobError:
        return False
    return True


def release(queue: Queue, job_ids: Iterable[str]) -> list[str]:
    """Queue now the scheduled jobs `job_ids` (any lane of `queue`'s installation), ahead
    of their time; those no longer waiting (run, released, withdrawn) stay as they are.

    Taking the job out of the scheduler's set is the decision: of two takers (this and
    the scheduler, or two runs of the releasing job) only one removes it. Were the
    scheduler to have read the set just before, the job runs twice and its effect
    marker makes the second run a no-op (workers/jobs/dispatch.py).
    """
    released = []
    for job_id in job_ids:
        for lane_of in lanes(queue):
            if queue.connection.zrem(lane_of.scheduled_job_registry.key, job_id):
                try:
                    job = Job.fetch(
                        job_id, connection=lane_of.connection, serializer=lane_of.serializer
                    )
                except NoSuchJobError:
                    break
                lane_of.enqueue_job(job)
                released.append(job_id)
                break
    return released
