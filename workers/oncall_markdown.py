"""The on-call handoff report (workers/oncall.py) as Markdown, for people and chat.

Written through `policies/templates/oncall.md.j2`, which teams change by pull request,
or the built-in copy below, which the shipped file equals, in the one sandbox of every
policy template, strict (a name the report lacks fails; `policy validate` renders
SAMPLE). Text from alerts and people is escaped for it first (`&`, `<`, `>`, line
breaks: a title must not ping a channel nor start a heading); the JSON keeps it as it
is. `span` is a filter there: durations are seconds in the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workers.sandbox import Sandbox, document

TEMPLATE = "oncall.md.j2"

BUILT_IN = """\
{#- The on-call handoff (workers/oncall_markdown.py). `{{-` joins a line to the one above. #}
# On-call handoff: {{ from }} to {{ to }}

The last {{ since }}: {{ counts.incidents }} incidents, {{ counts.open }} still open.
Generated {{ generated_at }}.

## Checklist for the incoming engineer ({{ checklist | length }})

{% for item in checklist %}
- [ ] {{ item }}
{% endfor %}

## Incidents ({{ counts.incidents }})

{% for i in incidents %}
- {{ i.severity }} `{{ i.id }}` {{ i.title }}: {{ i.status }}, {{ i.duration_seconds | span }}
  {{- " so far" if i.status == "open" else "" }}, acknowledged
  {{- (" after " ~ (i.time_to_acknowledge_seconds | span))
      if i.time_to_acknowledge_seconds is not none else " never" }}
{% else %}
- None.
{% endfor %}
{% if counts.incidents > incidents | length %}
- ...and {{ counts.incidents - incidents | length }} more.
{% endif %}

## Still open ({{ counts.open }})

{% for i in open %}
- {{ i.severity }} `{{ i.id }}` {{ i.title }}: {{ i.phase }} since {{ i.phase_since }},
  {{- " IC " ~ (i.ic | join(", ") or "none") }}, open {{ i.open_for_seconds | span }},
  {{- " " ~ i.firing }} alerts firing{{ ("; last note: " ~ i.last_note) if i.last_note else "" }}
{% else %}
- None.
{% endfor %}

## Flaky alerts ({{ counts.flaky }})

Alerts that fired and resolved more than {{ flaky_after }} times.

{% for a in flaky %}
- {{ a.alertname }} ({{ a.fingerprint }}): fired {{ a.fired }} times, resolved {{ a.resolved }}
  {{- " times, in " ~ a.incidents }} incidents, route {{ a.routes | join(", ") }}
{% else %}
- None.
{% endfor %}

## Mitigations

{% for kind in ("applied", "blocked", "reverted") %}
### {{ kind | capitalize }} ({{ counts[kind] }})

{% for m in mitigations[kind] %}
- {{ m.at }} {{ m.action }} for `{{ m.incident_id }}`: {{ m.message }}
{% else %}
- None.
{% endfor %}

{% endfor %}
## Pending approvals ({{ counts.pending_approvals }})

{% for p in pending_approvals %}
- `{{ p.id }}` {{ p.action }} for `{{ p.incident_id }}` (a {{ p.approver }} approves),
  {{- " expires " ~ p.expires_at }}: {{ p.change }}
{% else %}
- None.
{% endfor %}

## Overdue postmortems ({{ counts.postmortems_overdue }})

{% for p in postmortems_overdue %}
- {{ p.severity }} `{{ p.incident_id }}` {{ p.title }}: due {{ p.due_at }},
  {{- " " ~ (p.overdue_seconds | span) }} overdue
{% else %}
- None.
{% endfor %}

## Open follow-ups ({{ counts.follow_ups_open }})

{% for f in follow_ups_open %}
- `{{ f.incident_id }}` {{ f.id }} ({{ f.priority }}, {{ f.owner }}, due {{ f.due }}
  {{- ", overdue" if f.overdue else "" }}): {{ f.text }}
{% else %}
- None.
{% endfor %}

## Recent rollouts ({{ counts.rollouts if rollouts is not none else "not read" }})

{% if rollouts is none %}
{{ rollouts_note }}
{% else %}
{% for r in rollouts %}
- {{ r.namespace }}/{{ r.name }}: revision {{ r.revision }} at {{ r.rolled_out_at }}
  {{- " (" ~ r.images }})
{% else %}
- None.
{% endfor %}
{% if rollouts_note %}

{{ rollouts_note }}
{% endif %}
{% endif %}

## Response figures

From each incident's first alert: median (p90) of the incidents declared in the period.

{% for name, f in figures.items() %}
- {{ name }} (respond within {{ f.response_time or "-" }}): {{ f.incidents }} incidents;
  {{- " acknowledged " ~ (f.time_to_acknowledge_seconds.median | span) }}
  {{- " (" ~ (f.time_to_acknowledge_seconds.p90 | span) }}), {{ f.acknowledged_within }} of
  {{- " " ~ f.acknowledged }} within; mitigated {{ f.time_to_mitigate_seconds.median | span }};
  {{- " resolved " ~ (f.time_to_resolve_seconds.median | span) }}
  {{- " (" ~ (f.time_to_resolve_seconds.p90 | span) }})
{% endfor %}
"""

SAMPLE: dict[str, Any] = {
    "since": "7d",
    "from": "2026-11-21T09:00:00Z",
    "to": "2026-11-28T09:00:00Z",
    "generated_at": "2026-11-28T09:00:00Z",
    "flaky_after": 3,
    "counts": {
        "incidents": 2,
        "open": 1,
        "flaky": 1,
        "applied": 1,
        "blocked": 1,
        "reverted": 1,
        "pending_approvals": 1,
        "postmortems_overdue": 1,
        "follow_ups_open": 1,
        "rollouts": 1,
    },
    "incidents": [
        {
            "id": "3f9a1c2e7b4d-mf3k2x1q",
            "title": "p95 latency above 2s for 5m",
            "severity": "SEV1",
            "status": "open",
            "phase": "identified",
            "route": "api-latency",
            "started_at": "2026-11-28T08:10:00.000Z",
            "resolved_at": None,
            "duration_seconds": 3000.0,
            "time_to_acknowledge_seconds": 240.0,
            "acknowledged_by": "jane",
            "acknowledged_within": True,
        },
        {
            "id": "9b2d4f6a8c0e-mf1a2b3c",
            "title": "Checkout errors above 5%",
            "severity": "SEV2",
            "status": "resolved",
            "phase": "monitoring",
            "route": "checkout-errors",
            "started_at": "2026-11-24T14:00:00.000Z",
            "resolved_at": "2026-11-24T15:20:00.000Z",
            "duration_seconds": 4800.0,
            "time_to_acknowledge_seconds": None,
            "acknowledged_by": None,
            "acknowledged_within": None,
        },
    ],
    "open": [
        {
            "id": "3f9a1c2e7b4d-mf3k2x1q",
            "title": "p95 latency above 2s for 5m",
            "severity": "SEV1",
            "phase": "identified",
            "phase_since": "2026-11-28T08:30:00.000Z",
            "ic": ["jane"],
            "started_at": "2026-11-28T08:10:00.000Z",
            "open_for_seconds": 3000.0,
            "firing": 2,
            "last_note": "rolled back payments to 1.4.1; watching p95",
        }
    ],
    "flaky": [
        {
            "alertname": "DiskPressure",
            "fingerprint": "d9ccd8014b804fee",
            "labels": {"alertname": "DiskPressure", "node": "worker-3"},
            "fired": 5,
            "resolved": 5,
            "incidents": 5,
            "routes": ["default"],
        }
    ],
    "mitigations": {
        "applied": [
            {
                "incident_id": "3f9a1c2e7b4d-mf3k2x1q",
                "action": "scale_up",
                "at": "2026-11-28T08:12:00.000Z",
                "message": "scaled production/api from 4 to 8",
                "target": "production/api",
            }
        ],
        "blocked": [
            {
                "incident_id": "3f9a1c2e7b4d-mf3k2x1q",
                "action": "scale_up",
                "at": "2026-11-28T08:15:00.000Z",
                "message": "production/api is in its 10m cooldown",
                "target": "production/api",
            }
        ],
        "reverted": [
            {
                "incident_id": "9b2d4f6a8c0e-mf1a2b3c",
                "action": "scale_up",
                "at": "2026-11-24T15:35:00.000Z",
                "message": "reverted production/checkout from 8 to 4",
                "target": None,
            }
        ],
    },
    "pending_approvals": [
        {
            "id": "9c1f0e4b7a2d5e83",
            "incident_id": "3f9a1c2e7b4d-mf3k2x1q",
            "action": "rollout_restart",
            "change": "rollout restart of deployment production/api",
            "expires_at": "2026-11-28T09:20:00Z",
            "approver": "responder",
        }
    ],
    "postmortems_overdue": [
        {
            "incident_id": "9b2d4f6a8c0e-mf1a2b3c",
            "title": "Checkout errors above 5%",
            "severity": "SEV2",
            "resolved_at": "2026-11-24T15:20:00.000Z",
            "due_at": "2026-11-27T15:20:00.000Z",
            "overdue_seconds": 63600.0,
        }
    ],
    "follow_ups_open": [
        {
            "incident_id": "9b2d4f6a8c0e-mf1a2b3c",
            "id": "F1",
            "text": "Alert on checkout p95 per endpoint",
            "owner": "ada",
            "due": "2026-11-27",
            "priority": "P1",
            "overdue": True,
        }
    ],
    "rollouts": [
        {
            "namespace": "production",
            "name": "payments",
            "revision": 7,
            "replicaset": "payments-7c9d8f6b5",
            "rolled_out_at": "2026-11-28T07:58:00Z",
            "images": "registry.example/payments:1.4.2",
        }
    ],
    "rollouts_note": "",
    "figures": {
        "SEV1": {
            "response_time": "15m",
            "incidents": 1,
            "time_to_declare_seconds": {"count": 1, "median": 90.0, "p90": 90.0},
            "time_to_acknowledge_seconds": {"count": 1, "median": 240.0, "p90": 240.0},
            "time_to_mitigate_seconds": {"count": 1, "median": 120.0, "p90": 120.0},
            "time_to_resolve_seconds": {"count": 0, "median": None, "p90": None},
            "acknowledged": 1,
            "acknowledged_within": 1,
            "share_within": 1.0,
        }
    },
    "checklist": [
        "Take over SEV1 3f9a1c2e7b4d-mf3k2x1q (identified): p95 latency above 2s for 5m; IC jane",
        "Confirm PagerDuty pages you: you are on call now",
    ],
}
"""A report with every field a template may use, for `policy validate` and docs."""


def span(value: float | None) -> str:
    """A duration as people write it, its two largest units: 40s, 3m20s, 1h20m, 2d3h;
    "-" for none."""
    if value is None:
        return "-"
    rest, parts = max(0, int(value)), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    shown = [p for p in parts[:2] if not p.startswith("0")]
    return "".join(shown) or "0s"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def plain(value: str) -> str:
    """Text from alerts and people as one line of Markdown or Slack text, never markup:
    control characters and line breaks as spaces, `&`, `<` and `>` as entities."""
    flat = "".join(c if c.isprintable() else " " for c in value)
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return plain(value)
    if isinstance(value, Mapping):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value


def environment(directory: Path | None) -> Sandbox:
    """The team's template folder first, then BUILT_IN; `span` as a filter."""
    return document(directory, TEMPLATE, BUILT_IN, {"span": span})


def render(templates_dir: Path | None, report: Mapping[str, Any]) -> str:
    """The report as Markdown; a TemplateError (the team's template) propagates."""
    template = environment(templates_dir).get_template(TEMPLATE)
    return template.render(**_escaped(report)).strip() + "\n"


def markdown(templates_dir: Path | None, report: Mapping[str, Any]) -> tuple[str, str | None]:
    """The report as Markdown, and what was wrong with the team's template when it did
    not render (`policy validate` should have caught it): then written by BUILT_IN, so
    a handoff never goes without its report."""
    try:
        return render(templates_dir, report), None
    except Exception as exc:  # a TemplateError, or a filter's own error (`span` of text)
        return render(None, report), f"{TEMPLATE}: {type(exc).__name__}: {exc}"
