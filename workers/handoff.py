"""Handing an incident to a person when a mitigation has used its attempts.

The attempt cap stops the remediation loop; this makes sure a person hears of
it: a note on the page (an Events API trigger with the incident's dedup_key,
which PagerDuty adds to the open alert) when the incident pages, and a chat
message. Both are ordinary action jobs with transition "handoff", so they run
exactly once, retry, and land on the timeline like every other; their ids are
fixed per (incident, mitigation), so a rerun queues nothing new.
"""

from __future__ import annotations

from rq import Queue

from workers.incident.record import Incident
from workers.jobs.contract import RUN_ACTION, ActionRequest, action_job_id, enqueue


def hand_off(queue: Queue, request: ActionRequest, incident: Incident, reason: str) -> list[str]:
    """Queue the page note (if the incident pages) and the chat message; what was queued."""
    queued = []
    for action in ("page", "notify") if "page" in incident.actions else ("notify",):
        job = ActionRequest(
            prefix=request.prefix,
            incident_id=incident.id,
            action=action,
            transition="handoff",
            severity=incident.severity,
            params=incident.action_params.get(action, {}),
            note=reason,
            dry_run=request.dry_run or incident.dry_run,
        )
        job_id = action_job_id(incident.id, f"handoff-{request.action}", action)
        if enqueue(queue, RUN_ACTION, job.to_json(), job_id):
            queued.append(action)
    return queued
