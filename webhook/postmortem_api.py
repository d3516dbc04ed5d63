"""GET /api/v1/incidents/<id>/postmortem: the incident's blameless postmortem draft, in
Markdown (workers/postmortem.py), through the team's template in the policies folder.
Any person; open incidents too (the draft says "so far"). The path id is checked as
the incident API checks it, before it reaches Redis; a team template that does not
render is a 500 naming its file and line, not an empty draft."""

from __future__ import annotations

from flask import Blueprint, Response, request
from redis.exceptions import RedisError

from webhook.api import INCIDENT_ID, MAX_ID
from webhook.app_services import Services, authenticated, services
from webhook.errors import ApiError, BadRequest, NotFound, Unavailable
from workers.incident import clock, timeline
from workers.incident.record import acknowledgement, load_incident
from workers.policy.checks import TEMPLATES_FOLDER
from workers.postmortem import PostmortemTemplateError, postmortem_context, render

blueprint = Blueprint("postmortem", __name__, url_prefix="/api/v1")
MARKDOWN = "text/markdown; charset=utf-8"


class TemplateBroken(ApiError):
    status, code = 500, "template_error"


@blueprint.get("/incidents/<incident_id>/postmortem")
@authenticated
def postmortem(incident_id: str) -> Response:
    s = services()
    if request.args:  # it takes none, as the incident API takes none
        name = next(iter(request.args))
        raise BadRequest(f"unknown query parameter {_clip(name)}", field=name[:64])
    if not INCIDENT_ID.fullmatch(incident_id):
        message = f"expected letters, digits, _ and - (at most {MAX_ID}), got {_clip(incident_id)}"
        raise BadRequest(message, field="incident_id")
    text = draft(s, incident_id)
    if text is None:
        raise NotFound(f"no incident {incident_id!r}", field="incident_id")
    return Response(text, status=200, content_type=MARKDOWN)


def draft(s: Services, incident_id: str) -> str | None:
    """The incident's draft in Markdown; None for an unknown incident (the API and the
    web page both show it)."""
    try:
        found = load_incident(s.redis, s.keys, incident_id)
        entries = timeline.read(s.redis, s.keys, incident_id) if found else []
        ack = acknowledgement(s.redis, s.keys, incident_id) if found else {}
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if found is None:
        return None
    context = postmortem_context(found, entries, ack, s.policies.get(), clock.now())
    try:
        return render(s.settings.policies_dir / TEMPLATES_FOLDER, context)
    except PostmortemTemplateError as exc:
        raise TemplateBroken(f"postmortem template: {exc}") from None


def _clip(value: str) -> str:
    """The value for an error message, cut short."""
    return repr(value if len(value) <= 64 else value[:64] + "...")
