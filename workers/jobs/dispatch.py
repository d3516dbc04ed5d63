"""The RQ job behind every action, and the one dispatch point all actions share.

`perform` runs every action job (workers/entry.py is the RQ entry point jobs
name, workers/jobs/contract.py what they carry). It keeps these promises
whatever the handler does:

- one run at a time per (incident, action): a lock orders the declared and
  the resolve job of one action across workers, and serialises reruns;
- an effect is recorded once per job id: a rerun (requeue, retry after a
  worker died after the effect was recorded) finds the effect marker and does
  nothing. A worker that dies between the vendor call and the record leaves
  no marker, so the rerun calls again: adapters pass stable idempotency keys
  (PagerDuty dedup_key, Statuspage metadata) so that second call is harmless;
- a job queued before its incident resolved does not act after it (checked
  under the lock);
- every outcome is on the timeline and counted: acted, dry run, skipped,
  retried (transient), failed (permanent, retries exhausted, or a bug).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from redis import Redis
from redis.exceptions import LockError
from rq import Retry, get_current_job

from workers.actions import Handler, Outcome
from workers.incident import figures_store, timeline
from workers.incident.errors import PermanentError, TransientError
from workers.incident.keys import Keys
from workers.incident.record import Incident, load_incident
from workers.jobs import locks
from workers.jobs.contract import (
    COMMUNICATION_ACTIONS,
    JOB_TIMEOUT,
    MITIGATION_ACTIONS,
    ActionRequest,
)

log = logging.getLogger(__name__)

RETRY_INTERVALS = (5, 15, 60, 120, 300)
"""Seconds between attempts after a transient failure; six attempts in all."""
LOCK_WAIT = 30
"""Seconds to wait for another run of the same action before retrying later."""
EFFECT_TTL = 30 * 24 * 3600
"""How long a job's effect marker is kept: longer than any retry or requeue."""


class ActionFailed(Exception):
    """Raised to RQ so the job lands in the failed registry; already on the timeline."""


@dataclass(frozen=True)
class Decision:
    outcome: str
    message: str
    retry_in: int | None = None


def perform(payload: dict[str, Any], handlers: Mapping[str, Handler]) -> dict[str, Any] | Retry:
    """Run inside the current RQ job: a retry becomes RQ's `Retry`, a failure an exception."""
    job = get_current_job()
    assert job is not None, "perform runs inside an RQ job"
    decision = execute(
        job.connection, payload, handlers, job_id=job.id, attempt=job.number_of_retries or 0
    )
    if decision.retry_in is not None:
        return Retry(max=len(RETRY_INTERVALS), interval=decision.retry_in)
    if decision.outcome == "failed":
        # Permanent: the crash retries configured at enqueue must not repeat it. RQ
        # decides on this same Job object after the exception, so zero stops them.
        job.retries_left = 0
        raise ActionFailed(decision.message)
    return {"outcome": decision.outcome, "message": decision.message}


def execute(
    redis: Redis,
    payload: Mapping[str, Any],
    handlers: Mapping[str, Handler],
    *,
    job_id: str,
    attempt: int = 0,
) -> Decision:
    """Run one action request through lock, guards, handler and bookkeeping."""
    try:
        request = ActionRequest.from_json(payload)
    except (KeyError, ValueError) as exc:
        return Decision("failed", f"malformed job payload: {exc}")
    keys = Keys(request.prefix)
    name = keys.action_lock(request.incident_id, request.action)
    held = keys.job_locks(job_id)
    lock = locks.acquire(redis, name, job_id, held, timeout=JOB_TIMEOUT, wait=LOCK_WAIT)
    if lock is None:
        busy = TransientError("another run of this action is still going")
        return _retry_or_fail(redis, keys, request, attempt, busy)
    try:
        return _locked(redis, keys, request, handlers, job_id=job_id, attempt=attempt)
    except Exception as exc:
        # A bug or an unwrapped vendor error: say so, then let RQ retry the job.
        _record_failure(redis, keys, request, f"unexpected {type(exc).__name__}; see worker log")
        raise
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("action lock of %s expired before the job ended", job_id)


def _locked(
    redis: Redis,
    keys: Keys,
    request: ActionRequest,
    handlers: Mapping[str, Handler],
    *,
    job_id: str,
    attempt: int,
) -> Decision:
    if redis.exists(keys.effect(job_id)):
        return Decision("duplicate", "effect already recorded for this job")
    incident = load_incident(redis, keys, request.incident_id)
    if incident is None:
        return _record_failure(redis, keys, request, "incident not found")
    if request.transition not in ("resolved", "reminder") and incident.status == "resolved":
        outcome = Outcome("skipped", "incident resolved before the job ran; nothing done")
        return _record(redis, keys, request, job_id, outcome)
    if (
        request.transition == "resolved"
        and request.action in MITIGATION_ACTIONS
        and (incident.status == "open")
    ):  # a revert left behind by a resolve the incident was reopened after
        outcome = Outcome("skipped", "the incident was reopened; its mitigation stays")
        return _record(redis, keys, request, job_id, outcome)
    acts = request.action in MITIGATION_ACTIONS and request.transition != "resolved"
    if acts and not incident.firing:  # open, yet its alerts resolved (a truncated notification)
        outcome = Outcome("skipped", "no alert of the incident fires any more; nothing done")
        return _record(redis, keys, request, job_id, outcome)
    if (
        request.action in COMMUNICATION_ACTIONS
        and request.transition not in ("resolved", "handoff", "reminder")
        and request.severity != incident.severity
    ):
        # An escalation queued its own jobs at the new severity; this one would undo it.
        message = f"superseded: the incident is {incident.severity} now, not {request.severity}"
        return _record(redis, keys, request, job_id, Outcome("skipped", message))
    try:
        outcome = handlers[request.action](replace(request, job_id=job_id), incident)
    except TransientError as exc:
        return _retry_or_fail(redis, keys, request, attempt, exc)
    except PermanentError as exc:
        return _record_failure(redis, keys, request, str(exc))
    return _record(redis, keys, request, job_id, outcome, incident)


def _retry_or_fail(
    redis: Redis, keys: Keys, request: ActionRequest, attempt: int, exc: TransientError
) -> Decision:
    if attempt >= len(RETRY_INTERVALS):
        reason = f"gave up after {attempt + 1} attempts: {exc}"
        return _record_failure(redis, keys, request, reason)
    delay = RETRY_INTERVALS[attempt]
    if exc.retry_after is not None:
        delay = min(max(delay, int(exc.retry_after)), RETRY_INTERVALS[-1])
    message = f"{request.action} failed for now ({exc}); retry {attempt + 1} in {delay}s"
    with redis.pipeline() as pipe:
        timeline.append(pipe, keys, request.incident_id, _entry(request, "retried", message))
        pipe.hincrby(keys.jobs_finished, f"{request.action}|retried", 1)
        pipe.execute()
    return Decision("retried", message, retry_in=delay)


def _record_failure(redis: Redis, keys: Keys, request: ActionRequest, reason: str) -> Decision:
    log.warning("action %s for %s failed: %s", request.action, request.incident_id, reason)
    with redis.pipeline() as pipe:
        timeline.append(pipe, keys, request.incident_id, _entry(request, "failed", reason))
        pipe.hincrby(keys.jobs_finished, f"{request.action}|failed", 1)
        pipe.execute()
    return Decision("failed", reason)


def _record(
    redis: Redis,
    keys: Keys,
    request: ActionRequest,
    job_id: str,
    outcome: Outcome,
    incident: Incident | None = None,
) -> Decision:
    """Effect marker, timeline entry and count, together (the action lock is held)."""
    with redis.pipeline() as pipe:
        pipe.set(keys.effect(job_id), outcome.kind, ex=EFFECT_TTL)
        entry = _entry(request, outcome.kind, outcome.message, **outcome.details)
        timeline.append(pipe, keys, request.incident_id, entry)
        if incident is not None:  # a mitigation's first success: its time to mitigate
            figures_store.entry_written(pipe, keys, incident, entry)
        pipe.hincrby(keys.jobs_finished, f"{request.action}|{outcome.kind}", 1)
        pipe.execute()
    return Decision(outcome.kind, outcome.message)


def _entry(request: ActionRequest, kind: str, message: str, **details: Any) -> dict[str, Any]:
    return timeline.entry(
        kind,
        message,
        action=request.action,
        transition=request.transition,
        severity=request.severity,
        **details,
    )
