"""The on-call handoff report (issue 17): what the outgoing engineer hands over for a
period (`since`, 1h to 90d): its incidents (severity, status, duration, time to
acknowledge), those still open (commander, phase), flaky alerts, mitigations applied,
blocked and reverted, pending approvals, overdue postmortems and open follow-ups, recent
rollouts, the response figures per severity, and the incoming engineer's checklist.

Pure: the incidents, their timelines and acknowledgements, the pending proposals, the
rollouts (None: not read here, and the report says how to get them) and the policy in,
plain JSON out. workers/oncall_markdown.py writes it as Markdown (the team's template),
workers/oncall_store.py reads its inputs from Redis for both sides, and
workers/oncall_job.py is the worker's job, which adds the rollouts (Kubernetes is the
worker's alone).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from workers.approvals import Proposal
from workers.incident.durations import DurationError, parse_duration
from workers.incident.figures import Figures, incident_figures, is_mitigation, period_figures
from workers.incident.record import Incident
from workers.incident.timeline import seconds
from workers.jobs.contract import MITIGATION_ACTIONS
from workers.oncall_markdown import iso, span

if TYPE_CHECKING:  # at run time a cycle: workers.policy's checks render this template
    from workers.policy import Policy

DEFAULT_SINCE = "7d"
MIN_SINCE, MAX_SINCE = 3600, 90 * 86400
SINCE = re.compile(r"(?:[0-9]{1,6}(?:ms|s|m|h|d|w)){1,6}", re.ASCII)
FLAKY_AFTER = 3
MAX_LISTED = 200
"""Items a list of the report shows at most (its count in `counts` is the whole)."""
FIRED, ENDED = ("alert_added", "alert_refired"), ("alert_resolved", "alert_left")
ROLLOUTS_NOT_READ = (
    "Not read here: the web process does not reach Kubernetes. `alertpilot handoff` "
    "(POST /api/v1/handoff) has a worker read them in the allowed namespaces."
)


class RolloutLike(Protocol):
    """What the report reads of a rollout (workers/kube.py's `Rollout`)."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def replicaset(self) -> str: ...
    @property
    def rolled_out_at(self) -> datetime: ...
    @property
    def images(self) -> str: ...


def parse_since(value: str) -> timedelta:
    """`value` as a period of 1h to 90d in the policy's duration syntax; ValueError else."""
    shown = repr(value if len(value) <= 64 else value[:64] + "...")
    expected = f"expected a duration from 1h to 90d (like 1h, 36h, 7d), got {shown}"
    if not SINCE.fullmatch(value):
        raise ValueError(expected)
    try:
        found = parse_duration(value)
    except DurationError:
        raise ValueError(expected) from None
    if not MIN_SINCE <= found.total_seconds() <= MAX_SINCE:
        raise ValueError(expected)
    return found


# --- the report ------------------------------------------------------------------------


def build_report(
    now: datetime,
    since: timedelta,
    incidents: Sequence[Incident],
    entries_by_id: Mapping[str, Sequence[Mapping[str, Any]]],
    acks_by_id: Mapping[str, Mapping[str, Any]],
    proposals: Sequence[Proposal],
    rollouts: Sequence[RolloutLike] | None,
    policy: Policy,
    flaky_after: int = FLAKY_AFTER,
    *,
    rollout_errors: Sequence[str] = (),
) -> dict[str, Any]:
    """The report of the `since` up to `now`. `incidents`: the open ones and those
    resolved lately (workers/oncall_store.py's LOOKBACK: their postmortems and
    follow-ups); the period's (open, declared or resolved in it) need their timeline in
    `entries_by_id`. `rollout_errors`: namespaces whose rollouts could not be read."""
    start, end = (now - since).timestamp(), now.timestamp()
    period = sorted(
        (i for i in incidents if in_period(i, start)),
        key=lambda i: seconds(i.started_at),
        reverse=True,
    )
    figures = {
        i.id: incident_figures(i, entries_by_id.get(i.id, ()), acks_by_id.get(i.id, {}), policy)
        for i in period
    }
    lists = {
        "incidents": [_incident(i, acks_by_id.get(i.id, {}), figures[i.id], end) for i in period],
        "open": [_open(i, entries_by_id.get(i.id, ()), end) for i in period if i.status == "open"],
        "flaky": _flaky(period, entries_by_id, start, flaky_after),
        "pending_approvals": [_proposal(p) for p in sorted(proposals, key=lambda p: p.expires_at)],
        "postmortems_overdue": _overdue(incidents, end),
        "follow_ups_open": _follow_ups(incidents, now),
    }
    changes = _mitigations({i.id: entries_by_id.get(i.id, ()) for i in period}, start)
    found = None if rollouts is None else [_rollout(r) for r in rollouts]
    counts = {name: len(items) for name, items in (lists | changes).items()}
    report: dict[str, Any] = {
        "since": span(since.total_seconds()),
        "from": iso(now - since),
        "to": iso(now),
        "generated_at": iso(now),
        "flaky_after": flaky_after,
        "counts": counts | {"rollouts": len(found or [])},
        **{name: items[:MAX_LISTED] for name, items in lists.items()},
        "mitigations": {name: items[:MAX_LISTED] for name, items in changes.items()},
        "rollouts": None if found is None else found[:MAX_LISTED],
        "rollouts_note": ROLLOUTS_NOT_READ if found is None else "; ".join(rollout_errors),
        "figures": _figures([f for f in figures.values() if f.declared_at >= now - since], policy),
    }
    report["checklist"] = checklist(report)
    return report


def in_period(incident: Incident, start: float) -> bool:
    resolved = seconds(incident.resolved_at) if incident.resolved_at else None
    return (
        incident.status == "open"
        or seconds(incident.started_at) >= start
        or (resolved is not None and resolved >= start)
    )


def _incident(
    incident: Incident, ack: Mapping[str, Any], figures: Figures, end: float
) -> dict[str, Any]:
    """Duration: declaration to resolve (or now); time to acknowledge: from the first
    alert, as the response figures count it (workers/incident/figures.py)."""
    until = seconds(incident.resolved_at) if incident.resolved_at else end
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "phase": incident.phase,
        "route": incident.route,
        "started_at": incident.started_at,
        "resolved_at": incident.resolved_at,
        "duration_seconds": max(0.0, until - seconds(incident.started_at)),
        "time_to_acknowledge_seconds": figures.to_acknowledge,
        "acknowledged_by": ack.get("acknowledged_by"),
        "acknowledged_within": figures.within,
    }


def _open(incident: Incident, entries: Sequence[Mapping[str, Any]], end: float) -> dict[str, Any]:
    """Its commander and phase, since when (its last status entry), and its last note."""
    status = [e for e in entries if e.get("kind") == "status"]
    notes = [e for e in entries if e.get("kind") == "note"]
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "phase": incident.phase,
        "phase_since": str(status[-1].get("at")) if status else incident.started_at,
        "ic": list(incident.roles.get("ic", [])),
        "started_at": incident.started_at,
        "open_for_seconds": max(0.0, end - seconds(incident.started_at)),
        "firing": len(incident.firing),
        "last_note": str(notes[-1].get("message", "")) if notes else None,
    }


def _flaky(
    period: Sequence[Incident],
    entries_by_id: Mapping[str, Sequence[Mapping[str, Any]]],
    start: float,
    flaky_after: int,
) -> list[dict[str, Any]]:
    """Alerts (by fingerprint, across incidents: each new firing of a resolved alert
    declares a new one) that fired and resolved more than `flaky_after` times in the
    period. An alert fires at its incident's declaration unless its first entry says it
    joined later (alert_added) or was resolved then (alert_refired)."""
    fired: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    seen: dict[str, list[Incident]] = {}
    for incident in period:
        first: dict[str, str] = {}
        for entry in entries_by_id.get(incident.id, ()):
            fingerprint, kind = str(entry.get("fingerprint", "")), str(entry.get("kind"))
            if kind not in FIRED + ENDED or not fingerprint:
                continue
            first.setdefault(fingerprint, kind)
            if _at(entry) >= start:
                (fired if kind in FIRED else ended)[fingerprint] += 1
        declared = seconds(incident.started_at) >= start
        for fingerprint, alert in incident.alerts.items():
            seen.setdefault(fingerprint, []).append(incident)
            quiet = fingerprint not in first and alert.resolved_seen_at == incident.started_at
            if declared and first.get(fingerprint) not in FIRED and not quiet:
                fired[fingerprint] += 1
    found = []
    for fingerprint, holders in seen.items():
        if min(fired[fingerprint], ended[fingerprint]) <= flaky_after:
            continue
        alerts = [i.alerts[fingerprint] for i in holders]
        found.append(
            {
                "alertname": alerts[0].labels.get("alertname", "alert"),
                "fingerprint": fingerprint,
                "labels": dict(alerts[0].labels),
                "fired": fired[fingerprint],
                "resolved": ended[fingerprint],
                "incidents": len(holders),
                "routes": sorted({a.route for a in alerts}),
            }
        )
    return sorted(found, key=lambda a: (-a["resolved"], a["alertname"]))


def _mitigations(
    entries: Mapping[str, Sequence[Mapping[str, Any]]], start: float
) -> dict[str, list[dict[str, Any]]]:
    """The period's mitigation outcomes: applied (a change for a declared or escalated
    incident), blocked (guardrails, kill switch), reverted (a change put back after
    resolve); oldest first."""
    found: dict[str, list[dict[str, Any]]] = {"applied": [], "blocked": [], "reverted": []}
    for incident_id, listed in entries.items():
        for e in listed:
            if e.get("action") not in MITIGATION_ACTIONS or _at(e) < start:
                continue
            if is_mitigation(e):
                kind = "applied"
            elif e.get("kind") == "blocked":
                kind = "blocked"
            elif e.get("kind") == "succeeded" and e.get("transition") == "resolved":
                kind = "reverted"
            else:
                continue
            item = {"incident_id": incident_id, "action": e.get("action"), "at": e.get("at")}
            found[kind].append(item | {"message": e.get("message", ""), "target": e.get("target")})
    return {kind: sorted(items, key=lambda m: _at(m)) for kind, items in found.items()}


def _proposal(proposal: Proposal) -> dict[str, Any]:
    return {
        "id": proposal.id,
        "incident_id": proposal.incident_id,
        "action": proposal.action,
        "change": proposal.change,
        "expires_at": iso(datetime.fromtimestamp(proposal.expires_at, UTC)),
        "approver": proposal.approver,
    }


def _overdue(incidents: Sequence[Incident], end: float) -> list[dict[str, Any]]:
    """Resolved incidents whose postmortem was due before now and is not written."""
    found = [
        {
            "incident_id": i.id,
            "title": i.title,
            "severity": i.severity,
            "resolved_at": i.resolved_at,
            "due_at": i.postmortem["due_at"],
            "overdue_seconds": end - seconds(i.postmortem["due_at"]),
        }
        for i in incidents
        if i.status == "resolved"
        and i.postmortem.get("due_at")
        and not i.postmortem.get("done_at")
        and seconds(i.postmortem["due_at"]) < end
    ]
    return sorted(found, key=lambda p: -float(p["overdue_seconds"]))


def _follow_ups(incidents: Sequence[Incident], now: datetime) -> list[dict[str, Any]]:
    """Every follow-up not done, soonest due first; overdue once its day has passed (UTC)."""
    today = now.astimezone(UTC).date().isoformat()
    found = [
        {
            "incident_id": i.id,
            **{k: item.get(k, "") for k in ("id", "text", "owner", "due", "priority")},
            "overdue": str(item.get("due", "")) < today,
        }
        for i in incidents
        for item in i.follow_ups
        if not item.get("done_at")
    ]
    return sorted(found, key=lambda f: (str(f["due"]), str(f["priority"])))


def _rollout(rollout: RolloutLike) -> dict[str, Any]:
    return {
        "namespace": rollout.namespace,
        "name": rollout.name,
        "revision": rollout.revision,
        "replicaset": rollout.replicaset,
        "rolled_out_at": iso(rollout.rolled_out_at),
        "images": rollout.images,
    }


def _figures(found: Sequence[Figures], policy: Policy) -> dict[str, Any]:
    """Per severity (the policy's, then any other): the period figures, as
    GET /api/v1/figures gives them, of the incidents declared in the period."""
    shown = {}
    for name, one in period_figures(found, list(policy.severities)).items():
        severity = policy.severities.get(name)
        shown[name] = {"response_time": severity.response_time if severity else None}
        shown[name] |= one.as_json()
    return shown


def checklist(report: Mapping[str, Any]) -> list[str]:
    """What the incoming engineer does first, from the report: each open incident, each
    pending approval, overdue postmortem and follow-up, flaky alert; then the routine."""
    items = [
        f"Take over {i['severity']} {i['id']} ({i['phase']}): {i['title']}; "
        + (
            f"IC {', '.join(i['ic'])}"
            if i["ic"]
            else f"no IC: name one (alertpilot incidents assign {i['id']} ic NAME)"
        )
        for i in report["open"]
    ]
    items += [
        f"Approve or reject {p['action']} for {p['incident_id']} before {p['expires_at']} "
        f"(alertpilot actions approve {p['id']}): {p['change']}"
        for p in report["pending_approvals"]
    ]
    items += [
        f"Chase the overdue postmortem of {p['incident_id']} ({p['severity']}, due {p['due_at']})"
        for p in report["postmortems_overdue"]
    ]
    items += [
        f"Chase follow-up {f['id']} of {f['incident_id']} ({f['owner']}, due {f['due']}): "
        f"{f['text']}"
        for f in report["follow_ups_open"]
        if f["overdue"]
    ]
    items += [
        f"Tune or silence the flapping alert {a['alertname']} (fired {a['fired']} times, "
        f"route {', '.join(a['routes'])})"
        for a in report["flaky"]
    ]
    if report["mitigations"]["blocked"]:
        items.append(f"Read why {len(report['mitigations']['blocked'])} mitigations were blocked")
    if report["rollouts"] is None:
        items.append("Read the recent rollouts: run `alertpilot handoff`, a worker reads them")
    elif report["rollouts"]:
        items.append(f"Check the {len(report['rollouts'])} recent rollouts against the incidents")
    items += [
        "Confirm PagerDuty pages you: you are on call now",
        "Read the timeline of every open incident before the first page",
    ]
    return items


def _at(entry: Mapping[str, Any]) -> float:
    return seconds(str(entry.get("at", "")))
