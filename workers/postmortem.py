"""A blameless postmortem draft of an incident, in Markdown, from what alertpilot holds.

`postmortem_context` gathers what the draft says (pure: the incident, its timeline, its
acknowledgement, the policy in force and the time are passed in); `render` writes it
through `policies/templates/postmortem.md.j2`, which teams change by pull request, or the
built-in copy (workers/postmortem_template.py), which the shipped file equals. Every
number is measured from the record; what alertpilot cannot know (the root cause, users
affected, revenue) is a field left to fill, never a guess. "What went well / wrong" are
measured against the policy by workers/postmortem_facts.py.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import (
    TemplateError,
    TemplateSyntaxError,
)

from workers.incident.figures import alert_start
from workers.incident.record import ROLES, Incident
from workers.incident.timeline import seconds
from workers.jobs.contract import MITIGATION_ACTIONS
from workers.postmortem_facts import Facts as Facts  # re-exported: tests read it here
from workers.postmortem_facts import (
    Record,
    _assignee,
    _at,
    _clock,
    _facts,
    _severity_changes,
    _utc,
    span,
)
from workers.postmortem_template import BUILT_IN as BUILT_IN
from workers.postmortem_template import SAMPLE_POSTMORTEM as SAMPLE_POSTMORTEM
from workers.sandbox import Sandbox, document

if TYPE_CHECKING:  # at run time a cycle: workers.policy's checks render this template
    from workers.policy import Policy

TEMPLATE = "postmortem.md.j2"
ROLE_NAMES = {
    "ic": "Incident commander",
    "scribe": "Scribe",
    "comms_lead": "Communications lead",
    "sme": "Subject-matter experts",
    "liaison": "Executive liaison",
}


class PostmortemTemplateError(Exception):
    """The team's template does not parse or render; the message names file and line."""


# --- formatting ------------------------------------------------------------------------


def stamp(at: float) -> str:
    return _utc(at).strftime("%Y-%m-%d %H:%M:%S UTC")


def cell(value: object) -> str:
    """Text safe in one Markdown table cell or list item: backslashes and `|` escaped,
    line breaks as <br>, `<` and `>` as entities (a message opens no HTML)."""
    text = _printable(str(value)).replace("\\", "\\\\").replace("|", "\\|")
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")


def _printable(text: str) -> str:
    """Without control characters but line breaks (a terminal's escapes, NUL, a
    right-to-left override): the draft is printed by the CLI and pasted into documents."""
    return "".join(
        c if c in "\r\n" or (c.isprintable() and c not in BIDI) else "\N{REPLACEMENT CHARACTER}"
        for c in text
    )


BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# --- the context ---------------------------------------------------------------------------


def postmortem_context(
    incident: Incident,
    entries: list[dict[str, Any]],
    ack: dict[str, Any],
    policy: Policy,
    now: datetime,
) -> dict[str, Any]:
    """Everything the template shows, as plain values (SAMPLE_POSTMORTEM has the shape)."""
    changes = _severity_changes(incident, entries)
    record = Record(incident, entries, ack, policy, now.timestamp(), changes)
    well, wrong = _facts(record)
    holders = _holders(incident, entries)
    return {
        **_metadata(record),
        **_impact(record),
        "timeline": _rows(entries),
        "went_well": well,
        "went_wrong": wrong,
        "action_items": [_item(f) for f in incident.follow_ups],
        "roles": [
            {"name": ROLE_NAMES[role], "people": holders[role]} for role in ROLES if holders[role]
        ],
        "thanks": sorted(
            {p for people in holders.values() for p in people}
            | {str(e["by"]) for e in entries if e.get("by")}
        ),
    }


def _metadata(r: Record) -> dict[str, Any]:
    incident, end = r.incident, r.end
    severity = r.policy.severities.get(incident.severity)
    due = incident.postmortem.get("due_at")
    return {
        "incident_id": incident.id,
        "title": incident.title,
        "route": incident.route,
        "generated_at": stamp(r.now),
        "date": _utc(r.start).strftime("%Y-%m-%d"),
        "severity": incident.severity,
        "severity_name": severity.name if severity else incident.severity,
        "severity_changes": [
            f"{_clock(_at(e))}: {e.get('message', '')}"
            for e in r.entries
            if e.get("kind") in ("escalated", "downgraded")
        ],
        "started_at": stamp(r.start),
        "resolved_at": stamp(end) if end is not None else None,
        "duration": span(end - r.start) if end is not None else f"{span(r.now - r.start)} so far",
        "authors": [
            f"{person} ({ROLE_NAMES[role].lower()})"
            for role in ("ic", "scribe")
            for person in incident.roles.get(role, [])
        ],
        "status": "Draft",
        "postmortem_due": stamp(seconds(due)) if due else None,
    }


def _impact(r: Record) -> dict[str, Any]:
    """What the alerts, the mitigations and the runbook's runs say of the impact."""
    alerts = sorted(r.incident.alerts.values(), key=lambda a: seconds(a.starts_at))
    summaries = (a.annotations.get("summary") for a in alerts)
    return {
        "services": sorted({a.labels["service"] for a in alerts if a.labels.get("service")}),
        "symptoms": list(dict.fromkeys(s for s in summaries if s)),
        "mitigations": [
            f"{e.get('action')} at {_clock(_at(e))}: {e.get('message', '')}"
            for e in r.entries
            if e.get("action") in MITIGATION_ACTIONS
            and e.get("kind") == "succeeded"
            and e.get("transition") != "resolved"
        ],
        "alerts": [_alert(a, r.now) for a in alerts],
        "firing_for": _firing(alerts, r.now),
        "slos": [
            f"{slo} ({a.labels.get('alertname', 'alert')})"
            for a in alerts
            if (slo := a.labels.get("slo") or a.annotations.get("slo"))
        ],
        "metrics": _metrics(r.entries),
    }


def _alert(alert: Any, now: float) -> dict[str, str]:
    begun, end = alert_start(alert), _ended(alert)
    if begun is None:  # Alertmanager sent no start (Go's zero time)
        fired = "from an unknown start, " + (f"to {stamp(end)}" if end else "still firing")
    else:
        start = begun.timestamp()
        fired = f"from {stamp(start)}, still firing ({span(now - start)} so far)"
        if end is not None:
            fired = f"from {stamp(start)} to {stamp(end)} ({span(end - start)})"
    where = (alert.labels.get("namespace"), alert.labels.get("deployment"))
    return {
        "name": alert.labels.get("alertname", "alert"),
        "fingerprint": alert.fingerprint,
        "severity": alert.severity,
        "target": "/".join(where) if all(where) else "",
        "summary": alert.annotations.get("summary", ""),
        "fired": fired,
    }


def _ended(alert: Any) -> float | None:
    """Alertmanager's endsAt of a resolved alert; else when alertpilot saw it resolved."""
    if alert.status != "resolved":
        return None
    end = seconds(alert.ends_at or "")
    if end > seconds(alert.starts_at):
        return end
    return seconds(alert.resolved_seen_at) if alert.resolved_seen_at else None


def _firing(alerts: list[Any], now: float) -> str | None:
    if not alerts:
        return None
    begun = [t.timestamp() for a in alerts if (t := alert_start(a)) is not None]
    if not begun:
        return None
    first = min(begun)
    ends = [_ended(a) for a in alerts]
    if any(end is None for end in ends):
        return f"{span(now - first)} so far, from {_clock(first)}"
    last = max(end for end in ends if end is not None)
    return f"{span(last - first)}, from {_clock(first)} to {_clock(last)}"


def _metrics(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The runbook's PromQL results: its first run (at declaration) is "during", its run
    at resolve "after"; nothing measures "before" the alert."""
    runs = [e for e in entries if e.get("kind") == "runbook" and isinstance(e.get("results"), list)]
    if not runs:
        return []
    last = runs[-1] if len(runs) > 1 and runs[-1].get("when") == "resolved" else None

    def found(run: dict[str, Any] | None) -> dict[str, str]:
        results = run["results"] if run else []
        at = _clock(_at(run)) if run else ""
        return {
            str(r.get("name")): f"{r.get('summary', '')}, at {at}"
            for r in results
            if isinstance(r, dict) and r.get("type") == "promql"
        }

    during, after = found(runs[0]), found(last)
    gone = "not measured" if last is not None else "not measured yet"
    return [
        {"name": name, "during": during.get(name, "not measured"), "after": after.get(name, gone)}
        for name in dict.fromkeys([*during, *after])
    ]


def _rows(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per entry, in order: the time (with the date on the first row and when it
    changes), the kind (and action), who, and the message (a runbook's results too)."""
    rows, day = [], None
    for e in entries:
        moment = _utc(_at(e))
        shown = "%H:%M:%S" if moment.date() == day else "%Y-%m-%d %H:%M:%S"
        day = moment.date()
        kind, action = str(e.get("kind", "")), e.get("action")
        message = str(e.get("message", ""))
        results = e.get("results")
        results = results if isinstance(results, list) else []
        found = [f"{r.get('name')}: {r.get('summary')}" for r in results if isinstance(r, dict)]
        rows.append(
            {
                "time": moment.strftime(shown),
                "kind": f"{kind} ({action})" if action else kind,
                "by": str(e.get("by") or "alertpilot"),
                "message": "; ".join([message, *found]),
            }
        )
    return rows


def _item(follow_up: dict[str, str]) -> dict[str, str]:
    done = follow_up.get("done_at")
    return {
        "id": follow_up.get("id", ""),
        "text": follow_up.get("text", ""),
        "owner": follow_up.get("owner") or "",
        "due": follow_up.get("due") or "",
        "priority": follow_up.get("priority") or "",
        "status": f"done {done[:10]}" if done else "open",
    }


def _holders(incident: Incident, entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Everyone who held each role, in the order they took it (former holders too)."""
    found: dict[str, list[str]] = {role: [] for role in ROLES}
    assigned = [(e.get("role"), _assignee(e)) for e in entries if e.get("kind") == "assigned"]
    current = [(role, p) for role, people in incident.roles.items() for p in people]
    for role, person in [*assigned, *current]:
        if role in found and person and person not in found[role]:
            found[str(role)].append(person)
    return found


# --- rendering -----------------------------------------------------------------------------


def environment(directory: Path | None) -> Sandbox:
    """The team's templates folder over the built-in copy; `cell` for untrusted text."""
    return document(directory, TEMPLATE, BUILT_IN, {"cell": cell})


def render(templates_dir: Path | None, context: dict[str, Any]) -> str:
    """The draft; PostmortemTemplateError naming the template (the team's, or the
    built-in one) and its line when it does not parse or fails to render (a variable
    that does not exist, for one). Never a server path: people read the error."""
    env = environment(templates_dir)
    try:
        template = env.get_template(TEMPLATE)
    except TemplateSyntaxError as exc:
        raise PostmortemTemplateError(
            f"templates/{TEMPLATE}:{exc.lineno}: template error: {exc.message}"
        ) from None
    try:
        return template.render(**context).strip() + "\n"
    except Exception as exc:  # a template's failure of any kind is the template's
        shown = f"templates/{TEMPLATE}" if template.filename else f"built-in {TEMPLATE}"
        line = _line(exc, template.filename or "<template>")
        message = str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
        raise PostmortemTemplateError(f"{shown}{line}: fails to render: {message}") from None


def _line(exc: BaseException, filename: str) -> str:
    """ ":12" when Jinja's rewritten traceback has a frame of the template."""
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            found = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return found
