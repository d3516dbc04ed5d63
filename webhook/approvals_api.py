"""POST /api/v1/actions/<id>/approve: approving a proposed mitigation through the API
(`alertpilot actions approve` is the CLI's way; both call workers/approvals.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from webhook.app_services import authenticated, services
from webhook.errors import NotFound, Unavailable
from workers import approvals

blueprint = Blueprint("approvals", __name__, url_prefix="/api/v1")


@blueprint.post("/actions/<proposal_id>/approve")
@authenticated
def approve_view(proposal_id: str) -> tuple[Response, int]:
    s = services()
    try:
        job_id = approvals.approve(s.redis, s.queue, s.keys, proposal_id, by="through the API")
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if job_id is None:
        raise NotFound(f"no pending proposal {proposal_id!r} (expired or used)", field="id")
    return jsonify({"status": "approved", "job": job_id}), 202
