"""notify: the declared / update / resolved / handoff message in chat (a Slack-compatible
incoming webhook) and, if configured, a generic JSON webhook."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

from workers import templates
from workers.actions import Action, Outcome
from workers.communication.vendors import Vendors, first_firing, incident_url, postmortem_url
from workers.config import Integrations
from workers.incident import clock, timeline
from workers.incident.errors import PermanentError
from workers.incident.keys import Keys
from workers.incident.keys import text as text_of
from workers.incident.record import Incident, acknowledgement
from workers.jobs.contract import ActionRequest
from workers.params import NotifyParams
from workers.policy.problems import PolicyError
from workers.policy.store import in_force
from workers.postmortem import PostmortemTemplateError, postmortem_context, render
from workers.templates import plain


def notify(request: ActionRequest, incident: Incident, vendors: Vendors) -> Outcome:
    if vendors.chat is None and vendors.webhook is None:
        raise PermanentError(
            "no chat configured (ALERTPILOT_CHAT_WEBHOOK_URL, ALERTPILOT_NOTIFY_WEBHOOK_URL)"
        )
    keys = Keys(request.prefix)
    room = vendors.redis.hget(keys.external(incident.id), "slack_url")
    entries = timeline.read(vendors.redis, keys, incident.id)
    runs = [e for e in entries if e["kind"] == "runbook"]
    text = chat_message(
        request,
        incident,
        vendors.integrations,
        room=text_of(room) if room else "",
        metrics=current_metrics(runs),
        changes=latest(runs, "rollout_history"),
        workloads=latest(runs, "workload_status"),
    )
    sent = []
    if vendors.chat is not None:
        vendors.chat.post({"text": text})
        sent.append("chat")
    if vendors.webhook is not None:
        body = _webhook_body(request, incident, vendors.integrations, text)
        if request.transition == "resolved":  # for a document store: the draft to start from
            body["postmortem"] = _draft(vendors, keys, incident, entries)
        vendors.webhook.post(body)
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
            "url": incident_url(integrations, incident) or None,
        },
    }


def _draft(
    vendors: Vendors, keys: Keys, incident: Incident, entries: list[dict[str, Any]]
) -> str | None:
    """The postmortem draft in Markdown, as the API writes it; None when the policy or
    the team's template does not give one now (the message goes all the same)."""
    templates_dir = vendors.integrations.templates_dir
    try:
        policy = in_force(templates_dir.parent)
        ack = acknowledgement(vendors.redis, keys, incident.id)
        context = postmortem_context(incident, entries, ack, policy, clock.now())
        return render(templates_dir, context)
    except (PolicyError, PostmortemTemplateError):
        return None


def chat_message(
    request: ActionRequest,
    incident: Incident,
    integrations: Integrations,
    *,
    room: str = "",
    metrics: list[str] | None = None,
    changes: list[str] | None = None,
    workloads: list[str] | None = None,
) -> str:
    """The message from the team's template (policies/templates), or the built-in one;
    `room`: the war room's link, once there is one."""
    first = first_firing(incident)
    context = {
        "severity": request.severity,
        "title": plain(incident.title),
        "escalated": request.transition == "escalated",
        "firing": len(incident.firing),
        "total": len(incident.alerts),
        "services": sorted({plain(a.labels.get("service", "?")) for a in incident.firing}) or ["-"],
        "labels": {k: plain(v) for k, v in first.labels.items()} if first else {},
        "started_at": incident.started_at,
        "resolved_at": incident.resolved_at or "",
        "actions": list(incident.actions),
        "link": incident_url(integrations, incident),
        "next_update": _human(request.update_every)
        if request.update_every and request.transition != "resolved"
        else "",
        "incident_id": incident.id,
        "note": plain(request.note),
        "status": incident.phase,
        "ic": plain(", ".join(incident.roles.get("ic", []))),
        "war_room": room,
        "metrics": [plain(m) for m in metrics or []],
        "changes": [plain(c) for c in changes or []],
        "workloads": [plain(w) for w in workloads or []],
        "bridge": str(request.params.get("bridge") or ""),
        "postmortem": postmortem_url(integrations, incident)
        if request.transition == "resolved"
        else "",
        "postmortem_due": incident.postmortem.get("due_at", "")
        if request.transition == "resolved"
        else "",
    }
    try:
        return templates.render(integrations.templates_dir, request.transition, context)
    except TemplateError as exc:
        raise PermanentError(f"chat template for {request.transition}: {exc}") from None


def current_metrics(runs: list[dict[str, Any]]) -> list[str]:
    """The runbook's Prometheus values: the latest run's, each with the first run's value
    beside it ("at declaration") when it has changed since."""
    if not runs:
        return []
    first = {r.get("name"): r for r in runs[0].get("results", []) if r.get("type") == "promql"}
    shown = []
    for result in runs[-1].get("results", []):
        if result.get("type") != "promql":
            continue
        line = f"{result.get('name')} {result.get('summary')}"
        before = first.get(result.get("name"))
        if len(runs) > 1 and before is not None and before.get("summary") != result.get("summary"):
            line += f" (at declaration: {before.get('summary')})"
        shown.append(line)
    return shown


def latest(runs: list[dict[str, Any]], step_type: str) -> list[str]:
    """The latest run's summaries of its `step_type` steps (rollouts, workload status)."""
    if not runs:
        return []
    return [
        str(r.get("summary"))
        for r in runs[-1].get("results", [])
        if r.get("type") == step_type and r.get("summary")
    ]


def _human(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


NOTIFY = Action("notify", NotifyParams, run=notify)
