"""The communication actions: page (PagerDuty), statuspage, notify (chat).

Each takes the job's request and the incident as it is now, calls its adapter,
and returns what happened for the timeline. Exactly-once comes from three
places: the job's effect marker (workers/jobs.py), PagerDuty's dedup_key (the
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
from workers.actions import PAGERDUTY_SEVERITY, ActionRequest, Outcome
from workers.chat import Chat
from workers.config import DEFAULT_ROUTING_KEY, Integrations
from workers.errors import PermanentError
from workers.incidents import AlertState, Incident
from workers.keys import Keys, text
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
    reference = str(request.params.get("routing_key_env") or DEFAULT_ROUTING_KEY)
    routing_key = vendors.integrations.routing_key(reference)
    if not routing_key:
        raise PermanentError(f"no PagerDuty routing key: {reference} is not set")
    external = Keys(request.prefix).external(incident.id)
    if request.transition == "resolved":
        if not vendors.redis.hexists(external, "paged"):
            return Outcome("skipped", "never paged (resolved inside page_after, or not sent)")
        event = Event("resolve", incident.id)
    else:
        event = _trigger(request, incident, vendors.integrations)
    vendors.pagerduty.send(routing_key, event)
    if event.action == "trigger":
        vendors.redis.hset(external, "paged", request.severity)
    verb = "resolved" if event.action == "resolve" else f"triggered ({event.severity})"
    return Outcome("succeeded", f"PagerDuty {verb}, dedup_key {incident.id}")


def _trigger(request: ActionRequest, incident: Incident, integrations: Integrations) -> Event:
    first = _first_firing(incident)
    labels = first.labels if first else {}
    return Event(
        "trigger",
        incident.id,
        summary=f"[{request.severity}] {incident.title}",
        source=labels.get("service") or labels.get("instance") or "alertpilot",
        severity=_pagerduty_severity(request),
        links=_links(incident, first),
        custom_details={
            "severity": request.severity,
            "route": incident.route,
            "alerts_firing": len(incident.firing),
            "labels": labels,
            "incident": _incident_url(integrations, incident),
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
    keys = Keys(request.prefix)
    stored = vendors.redis.hget(keys.external(incident.id), "statuspage")
    existing = text(stored) if stored is not None else None
    if existing is None:
        found = vendors.statuspage.find_unresolved(incident.id)
        existing = str(found["id"]) if found else None
        if existing:
            vendors.redis.hset(keys.external(incident.id), "statuspage", existing)
    components = _components(request.params)
    if request.transition == "resolved":
        if existing is None:
            return Outcome("skipped", "no Statuspage incident to resolve")
        fields: dict[str, Any] = {"status": "resolved", "body": "This incident has been resolved."}
        fields["components"] = {c: "operational" for c in components}
        vendors.statuspage.update(existing, fields)
        return Outcome("succeeded", f"Statuspage incident {existing} resolved")
    if request.transition == "update" and existing is None:
        return Outcome("skipped", "no Statuspage incident to update")
    if not request.public and existing is None:
        return Outcome("skipped", f"{request.severity} is not public: no Statuspage incident")
    if existing is not None:
        update: dict[str, Any] = {
            "body": _status_body(request, incident),
            "impact_override": _impact(request),
            "components": components,
        }
        vendors.statuspage.update(existing, update)
        return Outcome("succeeded", f"Statuspage incident {existing} updated ({request.severity})")
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
    vendors.redis.hset(keys.external(incident.id), "statuspage", str(created["id"]))
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
