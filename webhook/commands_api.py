"""People's commands on incidents over HTTP: POST /api/v1/incidents (declare) and
POST /api/v1/incidents/<id>/<command>. A responder's (or an admin's) credential;
every command is recorded on the timeline with its person.

Bodies are JSON objects with exactly the fields a command takes (400 naming any
other, a missing one or one of the wrong type); 404 for an unknown incident; 409 for
a command the incident's state refuses (resolve a resolved one, assign the same
person twice). The answer is the incident after the command, the timeline entries
it wrote and the ids of the jobs it queued.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from webhook import operations
from webhook.api import INCIDENT_ID, incident_view
from webhook.app_services import Services, caller, services
from webhook.errors import BadRequest, Conflict, NotFound, Unavailable
from workers.incident.commands import CommandError, Done

blueprint = Blueprint("commands", __name__, url_prefix="/api/v1")

T = TypeVar("T")
MAX_BODY = 64 * 1024


@blueprint.post("/incidents")
def declare() -> tuple[Response, int]:
    s = services()
    person = caller(s, "responder")
    body = body_of(operations.DECLARE)
    return _answer(s, _attempt(lambda: operations.declare(s, person, body))), 201


def _command(name: str) -> None:
    """POST /incidents/<id>/<name>: the command `name` (webhook/operations.py)."""

    def view(incident_id: str) -> Response:
        s = services()
        person = caller(s, "responder")
        body = body_of(operations.FIELDS[name])
        _id(incident_id)
        return _answer(s, _attempt(lambda: operations.run(s, person, name, incident_id, body)))

    blueprint.add_url_rule(f"/incidents/<incident_id>/{name}", name, view, methods=["POST"])


for _name in operations.FIELDS:
    _command(_name)


def _attempt(call: Callable[[], T]) -> T:
    """Run a command; its refusals and a Redis outage as HTTP errors."""
    try:
        return call()
    except CommandError as exc:
        details = {"field": exc.field} if exc.field else {}
        if exc.reason == "not_found":
            raise NotFound(exc.message, **details) from None
        if exc.reason == "conflict":
            raise Conflict(exc.message, **details) from None
        raise BadRequest(exc.message, **details) from None
    except RedisError:
        raise Unavailable("incident store unavailable; retry later") from None


def body_of(fields: operations.Fields) -> dict[str, str]:
    """The JSON object of the request: exactly `fields`, each a string; an empty body is
    an empty object (commands without fields)."""
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        raise BadRequest(f"body is larger than {MAX_BODY} bytes", field="body")
    if not raw.strip():
        doc: Any = {}
    else:
        if request.mimetype != "application/json":
            raise BadRequest("expected Content-Type application/json", field="Content-Type")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadRequest("body is not valid JSON", field="body") from None
    if not isinstance(doc, dict):
        raise BadRequest("expected a JSON object", field="body")
    for name, value in doc.items():
        if name not in fields:
            raise BadRequest(f"unknown field {name[:64]!r}", field=name[:64])
        if not isinstance(value, str):
            raise BadRequest("expected a string", field=name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("not valid Unicode (lone surrogate)", field=name) from None
    for name, required in fields.items():
        if required and name not in doc:
            raise BadRequest("required", field=name)
    return doc


def _id(incident_id: str) -> None:
    if not INCIDENT_ID.fullmatch(incident_id):
        raise BadRequest("expected letters, digits, _ and -", field="incident_id")


def _answer(s: Services, done: Done) -> Response:
    return jsonify(
        {
            "incident": incident_view(s, done.incident),
            "entries": done.entries,
            "jobs": done.jobs,
        }
    )
