"""`alertpilot jobs failed` and `jobs retry`: the jobs that failed for good, and sending
them again. A job's line says what it was for and why it failed, never more than
one line, and never a payload (they carry no secrets, but they can be long).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from workers.config import Settings
from workers.jobs.contract import lanes


def _failed_registries(settings: Settings) -> list[Any]:
    """The failed registry of each lane (workers/jobs/contract.py LANES), most urgent first."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    from workers.redis_connection import connect

    redis = connect(settings)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    return [lane.failed_job_registry for lane in lanes(queue)]


def list_failed(args: argparse.Namespace, settings: Settings) -> int:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    found = False
    for registry in _failed_registries(settings):
        for job_id in registry.get_job_ids():
            found = True
            try:
                job = Job.fetch(
                    job_id, connection=registry.connection, serializer=registry.serializer
                )
            except NoSuchJobError:
                print(f"{_short(job_id)}  (job data expired)")
                continue
            print(_failed_line(job))
    if not found:
        print("no failed jobs")
    return 0


ERROR_CHARS = 200
"""A failed job's error is cut to this: one short line per job, whatever the exception said."""
FIELD_CHARS = 80


def _failed_line(job: Any) -> str:
    """`ID  ACTION TRANSITION  incident ID  attempts N  LAST ERROR`, one line.

    Attempts count the first run, the job's own retries after transient errors
    (`number_of_retries`) and RQ's crash retries (`retries_left` below the budget).
    `perform` zeroes the crash budget when it fails a job for good (`ActionFailed`),
    so for those the crash retries before it, if any, are not counted.
    """
    from workers.jobs.contract import CRASH_RETRIES

    payload = job.args[0] if job.args and isinstance(job.args[0], dict) else {}
    action = payload.get("action") or job.func_name.rsplit(".", 1)[-1]
    what = " ".join(str(v) for v in (action, payload.get("transition")) if v)
    error = _last_error(job)
    attempts = 1 + (job.number_of_retries or 0)
    if job.retries_left is not None and not error.startswith("ActionFailed:"):
        attempts += max(CRASH_RETRIES.max - job.retries_left, 0)
    incident = payload.get("incident_id", "?")
    fields = [_short(job.id), _short(what), f"incident {_short(str(incident))}"]
    return "  ".join([*fields, f"attempts {attempts}", _short(error, ERROR_CHARS)])


def _last_error(job: Any) -> str:
    """The last non-empty line of the job's traceback, the exception's module path dropped."""
    result = job.latest_result()
    exc_string = getattr(result, "exc_string", None) or ""
    lines = [line.strip() for line in exc_string.splitlines() if line.strip()]
    if not lines:
        return "no error recorded"
    return re.sub(r"^(?:\w+\.)+(?=\w+(?::|$))", "", lines[-1])


def _short(text: str, limit: int = FIELD_CHARS) -> str:
    text = " ".join(text.split())  # no newline or tab from a payload splits the line
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _fresh_attempts(registry: Any, job_id: str) -> None:
    """A retried job gets its full retry budget again, not one last attempt."""
    from rq.job import Job

    from workers.jobs.contract import CRASH_RETRIES

    job = Job.fetch(job_id, connection=registry.connection, serializer=registry.serializer)
    job.number_of_retries = 0
    job.retries_left = CRASH_RETRIES.max
    job.save()


def retry(args: argparse.Namespace, settings: Settings) -> int:
    from rq.exceptions import InvalidJobOperation, NoSuchJobError

    registries = _failed_registries(settings)
    code = 0
    for job_id in args.job_ids:
        registry = next((r for r in registries if job_id in r), None)
        try:
            if registry is None:
                raise NoSuchJobError(job_id)
            _fresh_attempts(registry, job_id)
            registry.requeue(job_id)
            print(f"requeued {job_id}")
        except (InvalidJobOperation, NoSuchJobError):
            print(f"alertpilot: {job_id}: not in the failed registry", file=sys.stderr)
            code = 1
    return code
