"""Read API: GET /api/v1/incidents and GET /api/v1/incidents/<id>."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from webhook.app_services import require_auth, services
from webhook.errors import BadRequest, NotFound, Unavailable
from webhook.pagerduty_webhook import acknowledgement
from workers import timeline
from workers.incidents import Incident, list_incidents, load_incident

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@blueprint.get("/incidents")
def incidents() -> Response:
    s = services()
    require_auth(s)
    status = request.args.get("status")
    if status not in (None, "open", "resolved"):
        raise BadRequest(f'expected "open" or "resolved", got {status!r}', field="status")
    limit = request.args.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise BadRequest(f"expected a number from 1 to 1000, got {limit!r}", field="limit")
    try:
        found = list_incidents(s.redis, s.keys, status=status, limit=int(limit))  # type: ignore[arg-type]
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    return jsonify({"incidents": [_summary(i) for i in found]})


@blueprint.get("/incidents/<incident_id>")
def incident(incident_id: str) -> Response:
    s = services()
    require_auth(s)
    try:
        found = load_incident(s.redis, s.keys, incident_id)
        entries = timeline.read(s.redis, s.keys, incident_id) if found else []
        ack = acknowledgement(s.redis, s.keys, incident_id) if found else {}
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if found is None:
        raise NotFound(f"no incident {incident_id!r}", field="incident_id")
    severity = s.policies.get().severities.get(found.severity)
    return jsonify(
        {
            **_summary(found),
            "severity_name": severity.name if severity else None,
            "response_time": severity.response_time if severity else None,
            "key": found.key,
            "group_key": found.group_key,
            "alerts": [asdict(a) for a in found.alerts.values()],
            "actions": list(found.actions),
            **ack,
            "timeline": entries,
        }
    )


def _summary(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "route": incident.route,
        "started_at": incident.started_at,
        "resolved_at": incident.resolved_at,
        "updated_at": incident.updated_at,
        "alerts_firing": len(incident.firing),
        "alerts_total": len(incident.alerts),
    }
