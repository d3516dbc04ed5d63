"""Read API: GET /api/v1/incidents and GET /api/v1/incidents/<id>.

Query parameters are parsed strictly, each a 400 naming it: an unknown name, a
name given twice, a status other than open/resolved, a limit other than 1..1000
in ASCII digits ("²".isdigit() is true, and int() rejects it). A path id that
cannot be an incident id (alertpilot's are `<hex>-<base36>`) is a 400 too, before
it reaches Redis or the error message.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from webhook.app_services import Services, authenticated, services
from webhook.errors import BadRequest, NotFound, Unavailable
from workers.incident import timeline
from workers.incident.keys import text
from workers.incident.record import (
    Incident,
    IncidentStatus,
    acknowledgement,
    list_incidents,
    load_incident,
)

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_ID = 128
INCIDENT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID}}}", re.ASCII)
LIMIT = re.compile(r"[0-9]{1,4}", re.ASCII)
STATUSES: dict[str, IncidentStatus] = {"open": "open", "resolved": "resolved"}


@blueprint.get("/incidents")
@authenticated
def incidents() -> Response:
    s = services()
    args = _query({"status", "limit"})
    status, limit = _status(args.get("status")), _limit(args.get("limit", "100"))
    try:
        found = list_incidents(s.redis, s.keys, status=status, limit=limit)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    return jsonify({"incidents": [_summary(i) for i in found]})


@blueprint.get("/incidents/<incident_id>")
@authenticated
def incident(incident_id: str) -> Response:
    s = services()
    _query(())
    if not INCIDENT_ID.fullmatch(incident_id):
        message = f"expected letters, digits, _ and - (at most {MAX_ID}), got {_clip(incident_id)}"
        raise BadRequest(message, field="incident_id")
    try:
        found = load_incident(s.redis, s.keys, incident_id)
        entries = timeline.read(s.redis, s.keys, incident_id) if found else []
        ack = acknowledgement(s.redis, s.keys, incident_id) if found else {}

    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if found is None:
        raise NotFound(f"no incident {incident_id!r}", field="incident_id")
    try:
        where = rooms(s, found)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    runbook = runbook_view(entries)
    return jsonify(
        {**incident_view(s, found), **ack, **where, "runbook": runbook, "timeline": entries}
    )


def runbook_view(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The runbook's first and latest runs of the timeline (None before any ran): what
    the steps found at declaration and now."""
    runs = [e for e in entries if e.get("kind") == "runbook" and "results" in e]
    if not runs:
        return None

    def run(found: dict[str, Any]) -> dict[str, Any]:
        return {"when": found.get("when"), "at": found.get("at"), "results": found["results"]}

    return {
        "name": runs[-1].get("runbook"),
        "runs": len(runs),
        "first": run(runs[0]),
        "latest": run(runs[-1]),
    }


def rooms(s: Services, found: Incident) -> dict[str, str | None]:
    """Where people meet about the incident: its war room (once made) and the bridge."""
    room = s.redis.hget(s.keys.external(found.id), "slack_url")
    severity = s.policies.get().severities.get(found.severity)
    return {
        "war_room": text(room) if room else None,
        "bridge": severity.bridge if severity else None,
    }


def incident_view(s: Services, found: Incident) -> dict[str, Any]:
    """An incident as the API shows it, without its timeline and acknowledgement."""
    severity = s.policies.get().severities.get(found.severity)
    return {
        **_summary(found),
        "severity_name": severity.name if severity else None,
        "response_time": severity.response_time if severity else None,
        "key": found.key,
        "group_key": found.group_key,
        "alerts": [asdict(a) for a in found.alerts.values()],
        "actions": list(found.actions),
        "follow_ups": found.follow_ups,
        "postmortem": found.postmortem,
    }


def _query(known: Collection[str]) -> dict[str, str]:
    """The query parameters, each known and given once."""
    args: dict[str, str] = {}
    for name, value in request.args.items(multi=True):
        if name not in known:
            raise BadRequest(f"unknown query parameter {_clip(name)}", field=name[:64])
        if name in args:
            raise BadRequest(f"{name} given more than once", field=name)
        args[name] = value
    return args


def _status(value: str | None) -> IncidentStatus | None:
    if value is None:
        return None
    if value in STATUSES:
        return STATUSES[value]
    raise BadRequest(f'expected "open" or "resolved", got {_clip(value)}', field="status")


def _limit(value: str) -> int:
    if LIMIT.fullmatch(value) and 1 <= int(value) <= 1000:
        return int(value)
    raise BadRequest(f"expected a number from 1 to 1000, got {_clip(value)}", field="limit")


def _clip(value: str) -> str:
    """The value for an error message, cut short: a 10,000-character id is not echoed whole."""
    return repr(value if len(value) <= 64 else value[:64] + "...")


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
        "phase": incident.phase,
        "roles": incident.roles,
    }
