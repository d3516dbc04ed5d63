"""Jobs the workers queue themselves: ticks, handoffs, follow-ups. Each exactly once.

A deterministic job id with `unique` makes a second enqueue of the same job (a
requeued tick, a rerun handler) a no-op, so queueing before the effect is
recorded is safe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus

from workers.jobs import CRASH_RETRIES, JOB_TIMEOUT

RUN_ACTION = "workers.entry.run_action"
RUN_TICK = "workers.entry.run_tick"


def enqueue_once(
    queue: Queue, function: str, payload: dict[str, Any], job_id: str, when: datetime | None = None
) -> bool:
    """Queue `function(payload)` as `job_id` (at `when`, if given); False if it was already."""
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
