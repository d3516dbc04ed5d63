"""Status updates on the severity's cadence: a chain of scheduled ticks per open incident.

Each tick queues the `update` jobs (chat, and Statuspage when public) and
schedules the next tick. A tick that finds the incident resolved, or at another
severity (an escalation started a new chain at its own cadence), stops the
chain: no update after resolve, and one chain at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from redis import Redis
from rq import Queue

from workers.incident import clock, timeline
from workers.incident.keys import Keys
from workers.incident.record import Incident, load_incident
from workers.jobs.contract import (
    RUN_ACTION,
    RUN_TICK,
    ActionRequest,
    CommanderCheck,
    PostmortemCheck,
    TickRequest,
    Transition,
    action_job_id,
    enqueue,
)

UPDATE_ACTIONS = ("notify", "statuspage")


def tick(
    redis: Redis,
    queue: Queue,
    payload: dict[str, Any],
    refresh: Callable[[Incident, str], None] | None = None,
) -> dict[str, Any]:
    """One tick (a `TickRequest`). `refresh(incident, when)` runs its route's runbook first,
    so the updates it queues carry metrics of now."""
    request = TickRequest.from_json(payload)
    keys = Keys(request.prefix)
    incident = load_incident(redis, keys, request.incident_id)
    if (
        incident is None
        or incident.status == "resolved"
        or incident.severity != request.severity
        or incident.revision != request.revision  # reopened, or the severity changed and back
    ):
        return {"outcome": "stopped", "n": request.n}
    if refresh is not None:
        refresh(incident, f"update-{request.n}")
    queued = []
    for action in (a for a in UPDATE_ACTIONS if a in incident.actions):
        update = ActionRequest(
            prefix=keys.prefix,
            incident_id=request.incident_id,
            action=action,
            transition="update",
            severity=request.severity,
            params=incident.action_params.get(action, {}),
            dry_run=incident.dry_run,
            public=request.public,
            update_every=request.every,
        )
        chain = f"r{request.revision}-{request.severity}" if request.revision else request.severity
        tag = f"update-{chain}-{request.n}"
        job_id = action_job_id(request.incident_id, tag, action)
        if enqueue(queue, RUN_ACTION, update.to_json(), job_id):
            queued.append(action)
    following = replace(request, n=request.n + 1)
    when = clock.now() + timedelta(seconds=request.every)
    enqueue(queue, RUN_TICK, following.to_json(), following.job_id, at=when)
    redis.set(keys.pending_tick(request.incident_id), following.job_id)  # a resolve cancels it
    return {"outcome": "ticked", "n": request.n, "queued": queued}


def check_commander(redis: Redis, queue: Queue, payload: dict[str, Any]) -> dict[str, Any]:
    """At the severity's response time (a `CommanderCheck`): an open incident still at
    that severity with nobody as incident commander says so, on its timeline and in chat
    (the handoff message: a person is needed)."""
    request = CommanderCheck.from_json(payload)
    keys = Keys(request.prefix)
    incident = load_incident(redis, keys, request.incident_id)
    if incident is None or incident.status != "open" or incident.severity != request.severity:
        return {"outcome": "not needed"}
    if incident.roles.get("ic"):
        return {"outcome": "has a commander", "ic": incident.roles["ic"]}
    note = (
        f"No incident commander yet for this {incident.severity}: assign one "
        f"(alertpilot incidents assign {incident.id} ic NAME)."
    )
    tag = f"no-ic-{incident.severity}"
    if incident.revision:  # a second rise into this severity asks again
        tag = f"r{incident.revision}-{tag}"
    _ask_a_person(redis, queue, keys, incident, "no_commander", "handoff", note, tag)
    return {"outcome": "no commander"}


def check_postmortem(redis: Redis, queue: Queue, payload: dict[str, Any]) -> dict[str, Any]:
    """When a postmortem falls due (a `PostmortemCheck`): a resolved incident whose
    postmortem is not written says so, on its timeline and in chat (a reminder)."""
    request = PostmortemCheck.from_json(payload)
    keys = Keys(request.prefix)
    incident = load_incident(redis, keys, request.incident_id)
    if incident is None or incident.postmortem.get("due_at") != request.due_at:
        return {"outcome": "not needed"}  # reopened and resolved again: a later check
    if incident.status != "resolved":
        return {"outcome": "reopened"}  # its next resolve sets a new due time
    if incident.postmortem.get("done_at"):
        return {"outcome": "written", "url": incident.postmortem.get("url", "")}
    note = (
        f"The postmortem of {incident.id} ({incident.severity}) was due {request.due_at}: "
        f"draft it (alertpilot postmortem {incident.id}) and say when it is written "
        f"(alertpilot postmortem {incident.id} --done URL)."
    )
    tag = f"postmortem-due-{request.due_at.replace(':', '')}"
    _ask_a_person(redis, queue, keys, incident, "postmortem_overdue", "reminder", note, tag)
    return {"outcome": "overdue"}


def _ask_a_person(
    redis: Redis,
    queue: Queue,
    keys: Keys,
    incident: Incident,
    kind: str,
    transition: Transition,
    note: str,
    tag: str,
) -> None:
    """`note` on the timeline (as `kind`), and in chat when the incident notifies: the
    message of `transition` (handoff, reminder) whose job id `tag` makes it once."""
    timeline.append(redis, keys, incident.id, timeline.entry(kind, note))
    if "notify" not in incident.actions:
        return
    message = ActionRequest(
        prefix=keys.prefix,
        incident_id=incident.id,
        action="notify",
        transition=transition,
        severity=incident.severity,
        params=incident.action_params.get("notify", {}),
        dry_run=incident.dry_run,
        note=note,
    )
    enqueue(queue, RUN_ACTION, message.to_json(), action_job_id(incident.id, tag, "notify"))
