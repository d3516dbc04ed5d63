"""The RQ entry point the webhook enqueues: `workers.entry.run_action`.

It reads the vendors' configuration from the environment for each job (so a
rotated secret file is picked up) and runs the job through `jobs.perform`.
Kept apart from workers/jobs/ so that importing the job machinery (as the
webhook does for its constants) never imports a vendor SDK.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from rq import Queue, Retry, get_current_job
from rq.serializers import JSONSerializer

from workers import cadence, oncall_job, runbook_steps
from workers.config import Settings
from workers.handlers import build_handlers, kube_for
from workers.incident.keys import Keys
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.jobs.dispatch import perform

log = logging.getLogger(__name__)


def run_action(payload: dict[str, Any]) -> dict[str, Any] | Retry:
    job = get_current_job()
    assert job is not None, "run_action runs inside an RQ job"
    try:
        request = ActionRequest.from_json(payload)
    except (KeyError, ValueError, TypeError):
        return perform(payload, {})  # records the malformed payload as a failure
    queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
    handlers = build_handlers(Settings.from_env(os.environ), job.connection, request.prefix, queue)
    return perform(payload, handlers)


def run_tick(payload: dict[str, Any]) -> dict[str, Any]:
    """A status-update tick (workers/cadence.py)."""
    job = get_current_job()
    assert job is not None, "run_tick runs inside an RQ job"
    queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
    settings = Settings.from_env(os.environ)

    def refresh(incident: Incident, when: str) -> None:
        name = runbook_steps.route_runbook(incident, settings.policies_dir)
        if name is None:
            return
        try:  # the numbers are a help; the update and the next tick must go without them
            keys = Keys(str(payload.get("prefix", "")))
            runbook_steps.run_for(
                job.connection,
                keys,
                incident,
                name,
                when,
                settings.integrations,
                kube_for(settings.integrations),
                settings.policies_dir,
            )
        except Exception:
            log.exception("runbook %s for %s at %s did not run", name, incident.id, when)

    return cadence.tick(job.connection, queue, payload, refresh)


def run_commander_check(payload: dict[str, Any]) -> dict[str, Any]:
    """Whether an incident that needs a commander has one (workers/cadence.py)."""
    job = get_current_job()
    assert job is not None, "run_commander_check runs inside an RQ job"
    queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
    return cadence.check_commander(job.connection, queue, payload)


def run_runbook(payload: dict[str, Any]) -> dict[str, Any]:
    """A route's runbook steps for an incident (workers/runbook_steps.py)."""
    job = get_current_job()
    assert job is not None, "run_runbook runs inside an RQ job"
    settings = Settings.from_env(os.environ)
    queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
    return runbook_steps.run_runbook(
        job.connection,
        queue,
        payload,
        settings.integrations,
        kube_for(settings.integrations),
        settings.policies_dir,
    )


def run_postmortem_check(payload: dict[str, Any]) -> dict[str, Any]:
    """Whether a resolved incident's postmortem is written by its due time (cadence.py)."""
    job = get_current_job()
    assert job is not None, "run_postmortem_check runs inside an RQ job"
    queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
    return cadence.check_postmortem(job.connection, queue, payload)


def run_handoff(payload: dict[str, Any]) -> dict[str, Any]:
    """The on-call handoff report, with the rollouts only a worker may read (oncall_job.py)."""
    return oncall_job.run_handoff(payload)
