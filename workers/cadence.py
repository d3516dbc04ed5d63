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

from workers.enqueue import RUN_ACTION, RUN_TICK, enqueue_once
from workers.incident.keys import Keys
from workers.incident.record import load_incident

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
        if enqueue_once(queue, RUN_ACTION, job, f"{incident_id}-update-{severity}-{n}-{action}"):
            queued.append(action)
    following = {**payload, "n": n + 1}
    when = datetime.now(UTC) + timedelta(seconds=every)
    next_id = f"{incident_id}-tick-{severity}-{n + 1}"
    enqueue_once(queue, RUN_TICK, following, next_id, when)
    redis.set(keys.pending_tick(incident_id), next_id)  # a resolve cancels it
    return {"outcome": "ticked", "n": n, "queued": queued}
