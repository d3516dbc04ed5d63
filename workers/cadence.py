"""Status updates on the severity's cadence: a chain of scheduled ticks per open incident.

Each tick queues the `update` jobs (chat, and Statuspage when public) and
schedules the next tick. A tick that finds the incident resolved, or at another
severity (an escalation started a new chain at its own cadence), stops the
chain: no update after resolve, and one chain at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus

from workers.incidents import load_incident
from workers.jobs import CRASH_RETRIES, JOB_TIMEOUT
from workers.keys import Keys

UPDATE_ACTIONS = ("notify", "statuspage")


def tick(redis: Redis, queue: Queue, payload: dict[str, Any]) -> dict[str, Any]:
    """One tick: payload {prefix, incident_id, severity, n, every (s), public}."""
    keys = Keys(str(payload["prefix"]))
    incident_id, severity, n = (
        str(payload["incident_id"]),
        str(payload["severity"]),
        int(payload["n"]),
    )
    every, public = int(payload["every"]), bool(payload.get("public"))
    incident = load_incident(redis, keys, incident_id)
    if incident is None or incident.status == "resolved" or incident.severity != severity:
        return {"outcome": "stopped", "n": n}
    queued = []
    for action in (a for a in UPDATE_ACTIONS if a in incident.actions):
        job = {
            "prefix": keys.prefix,
            "incident_id": incident_id,
            "action": action,
            "params": incident.action_params.get(action, {}),
            "transition": "update",
            "severity": severity,
            "dry_run": incident.dry_run,
            "public": public,
            "update_every": every,
        }
        if _enqueue(
            queue, "workers.entry.run_action", job, f"{incident_id}-update-{severity}-{n}-{action}"
        ):
            queued.append(action)
    following = {**payload, "n": n + 1}
    when = datetime.now(UTC) + timedelta(seconds=every)
    next_id = f"{incident_id}-tick-{severity}-{n + 1}"
    _enqueue(queue, "workers.entry.run_tick", following, next_id, when)
    redis.set(keys.pending_tick(incident_id), next_id)  # a resolve cancels it
    return {"outcome": "ticked", "n": n, "queued": queued}


def _enqueue(
    queue: Queue, function: str, payload: dict[str, Any], job_id: str, when: datetime | None = None
) -> bool:
    """Queue once: a tick that runs twice (a requeue) finds its jobs there already."""
    options: dict[str, Any] = {
        "job_id": job_id,
        "job_timeout": JOB_TIMEOUT,
        "retry": CRASH_RETRIES,
        "unique": True,
    }
    try:
        if when is None:
            queue.enqueue(function, payload, **options)
        else:
            # Not enqueue_at: RQ 2.12 drops its `unique` (a second call would reschedule).
            job = queue.create_job(
                function,
                args=(payload,),
                job_id=job_id,
                timeout=JOB_TIMEOUT,
                retry=CRASH_RETRIES,
                status=JobStatus.SCHEDULED,
            )
            queue.schedule_job(job, when, unique=True)
    except DuplicateJobError:
        return False
    return True
