"""Job functions for worker tests: the real `perform` glue with handlers that fail on purpose.

RQ imports these by dotted name, as it imports `workers.jobs.run_action`.
"""

from __future__ import annotations

import time
from typing import Any

from rq import Retry, get_current_job

from workers.actions import Outcome, dry_run
from workers.incident.errors import PermanentError, TransientError
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.jobs.dispatch import perform

calls: list[str] = []


def _flaky(request: ActionRequest, incident: Incident) -> Outcome:
    calls.append(request.action)
    if len(calls) == 1:
        raise TransientError("PagerDuty answered 429", retry_after=30)
    return dry_run(request, incident)


def _refused(request: ActionRequest, incident: Incident) -> Outcome:
    calls.append(request.action)
    raise PermanentError("PagerDuty answered 400: Event object is invalid")


def _buggy(request: ActionRequest, incident: Incident) -> Outcome:
    calls.append(request.action)
    raise KeyError("routing_key")


def _slow(request: ActionRequest, incident: Incident) -> Outcome:
    calls.append(f"{request.action}:{request.transition}:start")
    time.sleep(0.3)
    calls.append(f"{request.action}:{request.transition}:end")
    return dry_run(request, incident)


SLOW_HANDLERS = {"page": _slow}


def _busy(request: ActionRequest, incident: Incident) -> Outcome:
    calls.append(request.action)
    raise TransientError("PagerDuty answered 503")


def run_busy(payload: dict[str, Any]) -> dict[str, Any] | Retry:
    return perform(payload, {"page": _busy})


def run_buggy(payload: dict[str, Any]) -> dict[str, Any] | Retry:
    return perform(payload, {"page": _buggy})


def run_flaky(payload: dict[str, Any]) -> dict[str, Any] | Retry:
    return perform(payload, {"page": _flaky})


def run_refused(payload: dict[str, Any]) -> dict[str, Any] | Retry:
    return perform(payload, {"page": _refused})


def record(payload: dict[str, Any]) -> None:
    """Append `payload["name"]` and the time to the Redis list `payload["key"]`."""
    job = get_current_job()
    assert job is not None
    job.connection.rpush(payload["key"], f"{payload['name']} {time.time():.3f}")
