"""The communication actions: page (PagerDuty), statuspage, notify (chat).

Each takes the job's request and the incident as it is now, calls its adapter,
and returns what happened for the timeline. Exactly-once comes from three
places: the job's effect marker (workers/jobs/dispatch.py), PagerDuty's dedup_key (the
incident id), and the Statuspage incident tagged with alertpilot's id, looked
up before any create so a crash between the POST and storing its id never
opens a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import TemplateError
from redis import Redis

from workers import templates
from workers.actions import PAGERDUTY_SEVERITY, Outcome
from workers.chat import Chat
from workers.config import DEFAULT_ROUTING_KEY, Integrations
from workers.incident.errors import PermanentError
from workers.incident.keys import Keys, text
from workers.incident.record import AlertState, Incident
from workers.jobs.contract import ActionRequest
from workers.pagerduty import Event, PagerDuty, Severity
from workers.statuspage import Statuspage

IMPACT = {"SEV0": "critical", "SEV1": "major", "SEV2": "minor", "SEV3": "none"}


@dataclass(frozen=True)
class Vendors:
    integrations: Integrations
    redis: Redis
    pagerduty: PagerDuty
    statuspage: Statuspage | None
    chat: Chat | None
    webhook: Chat | None = None
    """The generic JSON webhook, if configured (same transport, other body)."""


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
    event = _trigger(request, incident, vendors.integrations)
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


def _trigger(request: ActionRequest, incident: Incident, integrations: Integrations) -> Event:
    first = _first_firing(incident)
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
        links=_links(incident, first),
        custom_details={
            "severity": request.severity,
            "route": incident.route,
            "alerts_firing": len(incident.firing),
            "labels": labels,
            "incident": _incident_url(integrations, incident),
            **details,
        },
    )


def _pagerduty_severity(request: ActionRequest) -> Severity:
    chosen = request.params.get("pagerduty_severity") or PAGERDUTY_SEVERITY.get(request.severity)
    for known in ("critical", "error", "warning", "info"):
        if chosen == known:
            return known
    return "critical"


def _links(incident: Incident, alert: AlertState | None) -> list[dict[str, str]]:
    links = []
    runbook = next(
        (
            a.annotations["runbook_url"]
            for a in incident.alerts.values()
            if "runbook_url" in a.annotations
        ),
        None,
    )
    if runbook:
        links.append({"href": runbook, "text": "Runbook"})
    if alert and alert.generator_url:
        links.append({"href": alert.generator_url, "text": "Prometheus"})
    if alert and incident.external_url:
        matchers = ",".join(f'{k}="{v}"' for k, v in sorted(alert.labels.items()))
        href = f"{incident.external_url}/#/silences/new?filter={quote('{' + matchers + '}')}"
        links.append({"href": href, "text": "Silence in Alertmanager"})
    return links


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
            "status": "investigating",
            "impact_override": _impact(request),
            "body": _status_body(request, incident),
            "components": components,
            "component_ids": list(components),
            "metadata": {"alertpilot": {"incident_id": incident.id}},
        }
    )
    external = Keys(request.prefix).external(incident.id)
    vendors.redis.hset(external, "statuspage", str(created["id"]))
    return Outcome("succeeded", f"Statuspage incident {created['id']} opened (investigating)")


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


def notify(request: ActionRequest, incident: Incident, vendors: Vendors) -> Outcome:
    if vendors.chat is None and vendors.webhook is None:
        raise PermanentError(
            "no chat configured (ALERTPILOT_CHAT_WEBHOOK_URL, ALERTPILOT_NOTIFY_WEBHOOK_URL)"
        )
    text = chat_message(request, incident, vendors.integrations)
    sent = []
    if vendors.chat is not None:
        vendors.chat.post({"text": text})
        sent.append("chat")
    if vendors.webhook is not None:
        vendors.webhook.post(_webhook_body(request, incident, vendors.integrations, text))
        sent.append("webhook")
    return Outcome("succeeded", f"posted the {request.transition} message to {' and '.join(sent)}")


def _webhook_body(
    request: ActionRequest, incident: Incident, integrations: Integrations, text: str
) -> dict[str, Any]:
    """The generic webhook's body: the message plus the incident as data."""
    return {
        "version": "1",
        "event": request.transition,
        "text": text,
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "severity": request.severity,
            "status": incident.status,
            "route": incident.route,
            "started_at": incident.started_at,
            "resolved_at": incident.resolved_at,
            "alerts_firing": len(incident.firing),
            "alerts_total": len(incident.alerts),
            "url": _incident_url(integrations, incident) or None,
        },
    }


def chat_message(request: ActionRequest, incident: Incident, integrations: Integrations) -> str:
    """The message from the team's template (policies/templates), or the built-in one."""
    first = _first_firing(incident)
    context = {
        "severity": request.severity,
        "title": incident.title,
        "escalated": request.transition == "escalated",
        "firing": len(incident.firing),
        "total": len(incident.alerts),
        "services": sorted({a.labels.get("service", "?") for a in incident.firing}) or ["-"],
        "labels": first.labels if first else {},
        "started_at": incident.started_at,
        "resolved_at": incident.resolved_at or "",
        "actions": list(incident.actions),
        "link": _incident_url(integrations, incident),
        "next_update": _human(request.update_every)
        if request.update_every and request.transition != "resolved"
        else "",
        "incident_id": incident.id,
        "note": request.note,
    }
    try:
        return templates.render(integrations.templates_dir, request.transition, context)
    except TemplateError as exc:
        raise PermanentError(f"chat template for {request.transition}: {exc}") from None


def _human(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _first_firing(incident: Incident) -> AlertState | None:
    firing = sorted(incident.firing, key=lambda a: a.starts_at)
    return firing[0] if firing else next(iter(incident.alerts.values()), None)


def _incident_url(integrations: Integrations, incident: Incident) -> str:
    if not integrations.public_url:
        return ""
    return f"{integrations.public_url}/api/v1/incidents/{incident.id}"
