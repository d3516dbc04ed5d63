"""page: the PagerDuty Events API v2, through workers/pagerduty.py.

Exactly once: the dedup_key is the incident id, so a second trigger of one
incident is the same PagerDuty alert; a resolve resolves it; a handoff adds a
note to it (a trigger with the same dedup_key)."""

from __future__ import annotations

from urllib.parse import quote

from workers.actions import PAGERDUTY_SEVERITY, Action, Outcome
from workers.communication.vendors import Vendors, first_firing, incident_url
from workers.config import DEFAULT_ROUTING_KEY, Integrations
from workers.incident.errors import PermanentError
from workers.incident.keys import Keys, text
from workers.incident.record import AlertState, Incident
from workers.jobs.contract import ActionRequest
from workers.pagerduty import Event, Severity
from workers.params import PageParams


def page(request: ActionRequest, incident: Incident, vendors: Vendors) -> Outcome:
    """Trigger (declared, escalated) or resolve, with dedup_key = the incident id.

    Every routing key a trigger was sent to is marked (`paged:<reference>`)
    BEFORE the call: if PagerDuty took it but the answer was lost, the resolve
    still goes out (a resolve of nothing open is dropped by PagerDuty, so a
    spare one is harmless). Resolve goes to every key paged, so an escalation to
    another team's key leaves no page open.
    """
    external = Keys(request.prefix).external(incident.id)
    if request.transition == "resolved":
        fields = [text(f) for f in vendors.redis.hkeys(external)]
        references = sorted(f.removeprefix("paged:") for f in fields if f.startswith("paged:"))
        if not references:
            return Outcome("skipped", "never paged (resolved inside page_after, or not sent)")
        for reference in references:
            vendors.pagerduty.send(_routing_key(vendors, reference), Event("resolve", incident.id))
        return Outcome("succeeded", f"PagerDuty resolved, dedup_key {incident.id}")
    reference = str(request.params.get("routing_key_env") or DEFAULT_ROUTING_KEY)
    routing_key = _routing_key(vendors, reference)
    room = vendors.redis.hget(external, "slack_url")  # the war room, once made
    event = _trigger(request, incident, vendors.integrations, text(room) if room else "")
    vendors.redis.hset(external, f"paged:{reference}", request.severity)
    vendors.pagerduty.send(routing_key, event)
    if request.transition == "handoff":
        # Same dedup_key: PagerDuty adds the event to the open alert's log (or opens it).
        return Outcome("succeeded", f"PagerDuty note added, dedup_key {incident.id}")
    return Outcome("succeeded", f"PagerDuty triggered ({event.severity}), dedup_key {incident.id}")


def _routing_key(vendors: Vendors, reference: str) -> str:
    routing_key = vendors.integrations.routing_key(reference)
    if not routing_key:
        raise PermanentError(f"no PagerDuty routing key: {reference} is not set")
    return routing_key


def _trigger(
    request: ActionRequest, incident: Incident, integrations: Integrations, room: str = ""
) -> Event:
    first = first_firing(incident)
    labels = first.labels if first else {}
    note = request.note if request.transition == "handoff" else ""
    summary = f"[{request.severity}] {incident.title}"
    details = {"alertpilot_note": note} if note else {}
    return Event(
        "trigger",
        incident.id,
        summary=f"{summary}: a person is needed" if note else summary,
        source=labels.get("service") or labels.get("instance") or "alertpilot",
        severity=_pagerduty_severity(request),
        links=_links(incident, first, request, room),
        custom_details={
            "severity": request.severity,
            "route": incident.route,
            "alerts_firing": len(incident.firing),
            "labels": labels,
            "incident": incident_url(integrations, incident),
            **details,
        },
    )


def _pagerduty_severity(request: ActionRequest) -> Severity:
    chosen = request.params.get("pagerduty_severity") or PAGERDUTY_SEVERITY.get(request.severity)
    for known in ("critical", "error", "warning", "info"):
        if chosen == known:
            return known
    return "critical"


def _links(
    incident: Incident, alert: AlertState | None, request: ActionRequest, room: str
) -> list[dict[str, str]]:
    links = []
    if room:
        links.append({"href": room, "text": "War room (Slack)"})
    if request.params.get("bridge"):
        links.append({"href": str(request.params["bridge"]), "text": "Conference bridge"})
    if request.params.get("runbook"):  # the route's runbook (policies/runbooks)
        links.append({"href": str(request.params["runbook"]), "text": "Runbook"})
    annotated = next(
        (
            a.annotations["runbook_url"]
            for a in incident.alerts.values()
            if "runbook_url" in a.annotations
        ),
        None,
    )
    if annotated and annotated != request.params.get("runbook"):
        text = "Runbook (alert)" if request.params.get("runbook") else "Runbook"
        links.append({"href": annotated, "text": text})
    if alert and alert.generator_url:
        links.append({"href": alert.generator_url, "text": "Prometheus"})
    if alert and incident.external_url:
        matchers = ",".join(f'{k}="{v}"' for k, v in sorted(alert.labels.items()))
        href = f"{incident.external_url}/#/silences/new?filter={quote('{' + matchers + '}')}"
        links.append({"href": href, "text": "Silence in Alertmanager"})
    return links


PAGE = Action("page", PageParams, run=page)
