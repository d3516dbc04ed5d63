"""Proposed mitigations waiting for a person: GET /api/v1/actions (any person) lists
them with their exact change and expiry; POST /api/v1/actions/<id>/approve and
/reject (a responder) decide, recorded on the timeline with the person. The CLI's
`alertpilot actions` calls these; both end in workers/approvals.py."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from webhook.app_services import authenticated, caller, services
from webhook.commands_api import body_of
from webhook.errors import Forbidden, NotFound, Unavailable
from webhook.users import ROLES, Person
from workers import approvals

blueprint = Blueprint("approvals", __name__, url_prefix="/api/v1")


@blueprint.get("/actions")
@authenticated
def pending_view() -> Response:
    s = services()
    try:
        found = approvals.pending(s.redis, s.keys)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    return jsonify({"actions": [asdict(p) for p in found]})


@blueprint.post("/actions/<proposal_id>/approve")
def approve_view(proposal_id: str) -> tuple[Response, int]:
    s = services()
    person = caller(s, "responder")
    body_of({})
    try:
        job_id = approvals.approve(
            s.redis,
            s.queue,
            s.keys,
            proposal_id,
            by=person.name,
            may=lambda r: may_approve(person, r),
        )
    except approvals.NotAllowed as exc:
        raise Forbidden(f"{exc}; {person.name} is {person.role}", role=exc.needed) from None
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if job_id is None:
        raise NotFound(f"no pending proposal {proposal_id[:64]!r} (expired or used)", field="id")
    return jsonify({"status": "approved", "job": job_id, "by": person.name}), 202


@blueprint.post("/actions/<proposal_id>/reject")
def reject_view(proposal_id: str) -> Response:
    s = services()
    person = caller(s, "responder")
    reason = body_of({"reason": False}).get("reason", "")
    try:
        done = approvals.reject(s.redis, s.keys, proposal_id, by=person.name, reason=reason)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if not done:
        raise NotFound(f"no pending proposal {proposal_id[:64]!r} (expired or used)", field="id")
    return jsonify({"status": "rejected", "by": person.name})


def may_approve(person: Person, needed: str) -> bool:
    """Whether `person` may approve what needs the role `needed` (an unknown one: no)."""
    role = next((r for r in ROLES if r == needed), None)
    return role is not None and person.may(role)
