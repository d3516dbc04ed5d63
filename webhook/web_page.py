"""What the web page's templates show (webhook/web.py): incidents read from Redis and put
in words, ages and durations. Reads only; nothing here decides anything.
"""

from __future__ import annotations

from typing import Any

from webhook.api import incident_view, rooms, runbook_view
from webhook.app_services import Services
from workers import approvals
from workers.incident import clock, timeline
from workers.incident.acknowledgement import human
from workers.incident.durations import parse_duration
from workers.incident.figures import Figure, Figures, incident_figures
from workers.incident.record import PHASES, ROLES, Incident, acknowledgement, load_incident


def list_rows(s: Services, incidents: list[Incident]) -> list[dict[str, Any]]:
    """One row per incident: what the list shows."""
    rows = []
    for found in incidents:
        ack = acknowledgement(s.redis, s.keys, found.id)
        rows.append(
            {
                "id": found.id,
                "title": found.title,
                "severity": found.severity,
                "status": found.status,
                "phase": found.phase,
                "ic": ", ".join(found.roles.get("ic", [])) or "—",
                "age": human(_elapsed(found)),
                "target": target(s, found, ack),
            }
        )
    return rows


def period_table(view: dict[str, Any]) -> list[dict[str, str]]:
    """The period's figures as the list page's rows: per severity with incidents, each
    time as "median / p90" in words, and the share acknowledged in time."""
    rows = []
    for name, found in view["severities"].items():
        if not found["incidents"]:
            continue
        row = {"severity": name, "incidents": str(found["incidents"])}
        for figure in ("declare", "acknowledge", "mitigate", "resolve"):
            spread = found[f"time_to_{figure}_seconds"]
            row[figure] = (
                f"{human(spread['median'])} / {human(spread['p90'])}" if spread["count"] else "—"
            )
        share = found["share_within"]
        row["within"] = "—" if share is None else f"{share:.0%} of {found['acknowledged']}"
        rows.append(row)
    return rows


def figures_line(found: Figures) -> list[str]:
    """One incident's figures in words, from its first alert."""
    said = [f"first alert {found.first_alert_at.strftime('%H:%M:%S')} UTC"]
    words_of: dict[Figure, str] = {
        "declare": "declared",
        "acknowledge": "acknowledged",
        "mitigate": "mitigated",
        "resolve": "resolved",
    }
    for figure, words in words_of.items():
        seconds = found.seconds(figure)
        if seconds is not None:
            said.append(f"{words} after {human(seconds)}")
    if found.within is not None:
        said.append("inside the response time" if found.within else "outside the response time")
    return said


def incident_page(s: Services, incident_id: str) -> dict[str, Any] | None:
    """The incident, its acknowledgement, timeline with the time between entries, its
    pending proposals and the choices of the forms; None for an unknown incident."""
    found = load_incident(s.redis, s.keys, incident_id)
    if found is None:
        return None
    ack = acknowledgement(s.redis, s.keys, incident_id)
    policy = s.policies.get()
    raw = timeline.read(s.redis, s.keys, incident_id)
    route = policy.route(found.route)
    return {
        "incident": incident_view(s, found),
        "rooms": rooms(s, found),
        "age": human(_elapsed(found)),
        "target": target(s, found, ack),
        "ack": ack,
        "entries": entries(raw),
        "runbook": runbook_view(raw),
        "figures": figures_line(incident_figures(found, raw, ack, policy)),
        "runbook_name": route.runbook if route is not None else None,
        "proposals": [p for p in approvals.pending(s.redis, s.keys) if p.incident_id == found.id],
        "people": [p.name for p in s.users.current().people],
        "severities": [(key, sev.name) for key, sev in policy.severities.items()],
        "roles": ROLES,
        "phases": PHASES,
    }


def entries(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline's entries, each with `gap`, the time since the one before ("" first)."""
    shown, previous = [], None
    for entry in raw:
        at = timeline.seconds(str(entry.get("at", "")))
        gap = "" if previous is None else "+" + human(max(0.0, at - previous))
        previous = at
        shown.append(
            {
                "at": str(entry.get("at", "")),
                "time": str(entry.get("at", ""))[11:19],
                "kind": str(entry.get("kind", "")),
                "message": str(entry.get("message", "")),
                "by": str(entry.get("by") or ""),
                "gap": gap,
            }
        )
    return shown


def target(s: Services, found: Incident, ack: dict[str, Any]) -> str:
    """The response-time target: "met" or "missed" once acknowledged (the stored verdict);
    before that "—" while within the severity's response time, "missed" once past it."""
    within = ack.get("acknowledged_within_response_time")
    if within is not None:
        return "met" if within else "missed"
    if ack.get("acknowledged_at"):
        return "—"  # acknowledged, but its severity was not in the policy
    severity = s.policies.get().severities.get(found.severity)
    if severity is None:
        return "—"
    past = _elapsed(found) > parse_duration(severity.response_time).total_seconds()
    return "missed" if past else "—"


def _elapsed(found: Incident) -> float:
    """Seconds from declared to resolved, or to now while open."""
    end = timeline.seconds(found.resolved_at) if found.resolved_at else clock.timestamp()
    return max(0.0, end - timeline.seconds(found.started_at))
