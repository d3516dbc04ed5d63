"""The kill switch over HTTP: GET /api/v1/mitigations (any person) says whether
automatic mitigations are paused and why; POST /api/v1/mitigations/pause
{"reason"} and /resume are an admin's (workers/kill_switch.py)."""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from webhook.app_services import authenticated, caller, services
from webhook.commands_api import body_of
from webhook.errors import BadRequest, Unavailable
from workers import kill_switch

log = logging.getLogger(__name__)
blueprint = Blueprint("mitigations", __name__, url_prefix="/api/v1")
MAX_REASON = 500


@blueprint.get("/mitigations")
@authenticated
def state_view() -> Response:
    s = services()
    try:
        reason = kill_switch.reason(s.redis, s.keys, os.environ)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    return jsonify({"paused": reason is not None, "reason": reason})


@blueprint.post("/mitigations/pause")
def pause_view() -> Response:
    s = services()
    person = caller(s, "admin")
    reason = body_of({"reason": True})["reason"].strip()
    if not reason or len(reason) > MAX_REASON:
        raise BadRequest(f"required, 1 to {MAX_REASON} characters", field="reason")
    try:
        shown = kill_switch.pause(s.redis, s.keys, reason, by=person.name)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    log.warning("mitigations paused by %s", person.name)
    return jsonify({"paused": True, "reason": shown})


@blueprint.post("/mitigations/resume")
def resume_view() -> Response:
    s = services()
    person = caller(s, "admin")
    body_of({})
    try:
        kill_switch.resume(s.redis, s.keys)
        still = kill_switch.reason(s.redis, s.keys, os.environ)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    log.warning("mitigations resumed by %s", person.name)
    return jsonify({"paused": still is not None, "reason": still})
