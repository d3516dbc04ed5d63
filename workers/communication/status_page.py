"""statuspage: the Statuspage incident of a public severity, through workers/statuspage.py.

Exactly once: the Statuspage incident is tagged with alertpilot's id and looked
up before any create, so a crash between the POST and storing its id never
opens a second one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.actions import Action, Outcome
from workers.communication.vendors import Vendors
from workers.incident.errors import PermanentError
from workers.incident.keys import Keys, text
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.params import StatuspageParams

IMPACT = {"SEV0": "critical", "SEV1": "major", "SEV2": "minor", "SEV3": "none"}


def statuspage(request: ActionRequest, incident: Incident, vendors: Vendors) -> Outcome:
    if vendors.statuspage is None:
        raise PermanentError(
            "Statuspage is not configured (ALERTPILOT_STATUSPAGE_PAGE_ID, _API_KEY)"
        )
    page = vendors.statuspage
    external = Keys(request.prefix).external(incident.id)
    stored = vendors.redis.hmget(external, ["statuspage", "statuspage_closed"])
    existing = text(stored[0]) if stored[0] is not None else None
    if stored[1] is not None and request.transition != "resolved":
        return Outcome("skipped", "the Statuspage incident was resolved on the page; left alone")
    if existing is None and request.transition in ("update", "resolved"):
        # Only a lost create can have left an incident there without our record of it.
        found = page.find_unresolved(incident.id)
        if found is None:
            return Outcome("skipped", f"no Statuspage incident to {request.transition}")
        existing = str(found["id"])
        vendors.redis.hset(external, "statuspage", existing)
    components = _components(request.params)
    if request.transition == "resolved":
        assert existing is not None
        fields: dict[str, Any] = {"status": "resolved", "body": "This incident has been resolved."}
        fields["components"] = {c: "operational" for c in components}
        page.update(existing, fields)
        return Outcome("succeeded", f"Statuspage incident {existing} resolved")
    if existing is None:
        if not request.public:
            return Outcome("skipped", f"{request.severity} is not public: no Statuspage incident")
        found = page.find_unresolved(incident.id)  # a create that was lost after the POST
        if found is not None:
            vendors.redis.hset(external, "statuspage", str(found["id"]))
            return Outcome(
                "succeeded", f"Statuspage incident {found['id']} adopted (created before)"
            )
        return _open(request, incident, vendors, components)
    answer = page.update(
        existing,
        {
            "status": incident.phase,  # what the people running it set (investigating...)
            "body": _status_body(request, incident),
            "impact_override": _impact(request),
            "components": components,
        },
    )
    if answer.get("status") == "resolved":
        vendors.redis.hset(external, "statuspage_closed", "1")
    return Outcome("succeeded", f"Statuspage incident {existing} updated ({request.severity})")


def _open(
    request: ActionRequest, incident: Incident, vendors: Vendors, components: dict[str, str]
) -> Outcome:
    assert vendors.statuspage is not None
    created = vendors.statuspage.create(
        {
            "name": incident.title[:255],
            "status": incident.phase,
            "impact_override": _impact(request),
            "body": _status_body(request, incident),
            "components": components,
            "component_ids": list(components),
            "metadata": {"alertpilot": {"incident_id": incident.id}},
        }
    )
    external = Keys(request.prefix).external(incident.id)
    vendors.redis.hset(external, "statuspage", str(created["id"]))
    return Outcome("succeeded", f"Statuspage incident {created['id']} opened ({incident.phase})")


def _components(params: Mapping[str, Any]) -> dict[str, str]:
    """The route's components and their status while open.

    `components: [id, ...]` takes the severity's `component_status` (default
    partial_outage); `components: {id: status}` names each status itself.
    """
    found = params.get("components") or {}
    if isinstance(found, list):
        status = str(params.get("component_status") or "partial_outage")
        return {str(c): status for c in found}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _impact(request: ActionRequest) -> str:
    return str(request.params.get("impact") or IMPACT.get(request.severity, "major"))


def _status_body(request: ActionRequest, incident: Incident) -> str:
    if request.transition == "escalated":
        return f"The impact has grown ({request.severity}). We are working on it."
    if request.transition == "update":
        return "We are continuing to work on this issue and will post another update."
    return "We are investigating reports of degraded service and will post updates here."


STATUSPAGE = Action("statuspage", StatuspageParams, run=statuspage)
