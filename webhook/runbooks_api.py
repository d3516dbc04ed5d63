"""GET /api/v1/routes/<route>/runbook: the runbook a route names, as the policy in
force has it (policies/runbooks/<name>.yaml). Any person; running it is a command
(POST /api/v1/incidents/<id>/runbook, webhook/operations.py)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify

from webhook.app_services import authenticated, services
from webhook.errors import BadRequest, NotFound
from workers.params import NAME_PATTERN

blueprint = Blueprint("runbooks", __name__, url_prefix="/api/v1")


@blueprint.get("/routes/<route>/runbook")
@authenticated
def runbook(route: str) -> Response:
    if re.fullmatch(NAME_PATTERN, route) is None:
        raise BadRequest("expected letters, digits, _ and - (at most 64)", field="route")
    policy = services().policies.get()
    found = policy.route(route)
    if found is None:
        raise NotFound(f"no route {route!r} in the policy in force", field="route")
    name = found.runbook
    book = policy.runbooks.get(name) if name else None
    if name is None or book is None:
        raise NotFound(f"route {route!r} names no runbook", field="route")
    return jsonify({"route": route, "name": name, "runbook": book.model_dump(mode="json")})
