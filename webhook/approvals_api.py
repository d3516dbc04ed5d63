"""Approving a proposed mitigation: POST /api/v1/actions/<id>/approve, and the CLI's twin."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Queue

from webhook.app_services import require_auth, services
from webhook.errors import NotFound, Unavailable
from workers import approvals
from workers.incident import timeline
from workers.incident.keys import Keys
from workers.jobs.contract import RUN_ACTION, approved_job_id, enqueue

blueprint = Blueprint("approvals", __name__, url_prefix="/api/v1")


def approve(redis: Redis, queue: Queue, keys: Keys, proposal_id: str, *, by: str) -> str | None:
    """Queue the proposed job, marked approved; its job id, or None if unknown or expired.

    One transaction: the proposal is removed, the approval written on the timeline
    and the job queued together, so an approval is never half done, and of two
    people approving at once only one queues the job.
    """
    key = keys.proposal(proposal_id)
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                if raw is None:
                    return None
                proposal = approvals.parse(raw)
                payload = proposal["payload"]
                if isinstance(payload.get("approved"), dict):  # the object it names
                    payload["approved"]["proposal"] = proposal_id
                job_id = approved_job_id(str(payload["incident_id"]), proposal_id)
                pipe.multi()  # RQ's enqueue(pipeline=) would open it after our first command
                pipe.delete(key)
                entry = timeline.entry(
                    "approved",
                    f"{proposal['change']} approved {by}",
                    action=payload["action"],
                    proposal=proposal_id,
                )
                timeline.append(pipe, keys, str(payload["incident_id"]), entry)
                enqueue(queue, RUN_ACTION, payload, job_id, pipeline=pipe)
                pipe.execute()
                return job_id
            except WatchError:
                continue  # someone else took or changed it: look again


@blueprint.post("/actions/<proposal_id>/approve")
def approve_view(proposal_id: str) -> tuple[Response, int]:
    s = services()
    require_auth(s)
    try:
        job_id = approve(s.redis, s.queue, s.keys, proposal_id, by="through the API")
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if job_id is None:
        raise NotFound(f"no pending proposal {proposal_id!r} (expired or used)", field="id")
    return jsonify({"status": "approved", "job": job_id}), 202
