"""The built-in postmortem template and a sample context with every variable it may use.

BUILT_IN equals the shipped policies/templates/postmortem.md.j2 (a test holds them equal);
workers/postmortem.py renders it where a team's folder has none, and re-exports both names.
"""

from __future__ import annotations

from typing import Any

BUILT_IN = """\
{#- The postmortem draft (docs/postmortems.md), rendered by workers/postmortem.py with
    trim_blocks and lstrip_blocks. `| cell` makes any text safe in a table cell or a list
    item; every variable is listed in workers/postmortem.py SAMPLE_POSTMORTEM. #}
# Postmortem: {{ title | cell }}

_Draft written by alertpilot from incident {{ incident_id }} at {{ generated_at }}. Blameless:
it says what happened and what people and systems knew, not who is at fault. Numbers are
measured from the incident's record; **to fill** marks what alertpilot cannot know._

## Metadata

- **Date:** {{ date }}
- **Severity:** {{ severity }} ({{ severity_name | cell }})
{% if severity_changes %}
- **Severity changes:**
{% for change in severity_changes %}
  - {{ change | cell }}
{% endfor %}
{% else %}
- **Severity changes:** none
{% endif %}
- **Duration:** {{ duration }}
- **Start:** {{ started_at }}
- **End:** {{ resolved_at or "still open" }}
- **Authors:** {{ authors | join(", ") | cell if authors else "**to fill**" }}
- **Status:** {{ status }}{{ ", due " ~ postmortem_due if postmortem_due else "" }}

## Executive summary

- **What happened:** {{ symptoms | join("; ") | cell if symptoms else "**to fill**" }}
- **Services:** {{ services | join(", ") | cell if services else "**to fill**" }}
- **Duration:** {{ duration }}, from {{ started_at }} to {{ resolved_at or "now" }}
- **What mitigated it:** {{ mitigations | join("; ") | cell if mitigations else "**to fill**" }}
- **Root cause:** **to fill** (see below)

## Impact

- **Alerts:** {{ alerts | length }}
{% for alert in alerts %}
  - {{ alert.name | cell }} ({{ [alert.severity, alert.target] | select | join(", ") | cell }})
    {{- ": " ~ alert.summary | cell if alert.summary else "" }}; fired {{ alert.fired }}
{% endfor %}
- **Services affected:** {{ services | join(", ") | cell if services else "**to fill**" }}
- **Duration:** {{ duration }}{{ "; alerts fired " ~ firing_for if firing_for else "" }}
- **Error budget:** {{ slos | join("; ") | cell if slos else "**to fill**" }}
- **Users affected:** **to fill**
- **Revenue impact:** **to fill**

Metrics, from the runbook's PromQL steps (at declaration, then at resolve):

| Metric | Before | During | After |
| --- | --- | --- | --- |
{% for metric in metrics %}
| {{ metric.name | cell }} | **to fill** | {{ metric.during | cell }} | {{ metric.after | cell }} |
{% else %}
| **to fill** | | | |
{% endfor %}

## Timeline

Every entry of the incident's timeline, in order; times in UTC.

| Time | Event | Who | What |
| --- | --- | --- | --- |
{% for row in timeline %}
| {{ row.time }} | {{ row.kind | cell }} | {{ row.by | cell }} | {{ row.message | cell }} |
{% endfor %}

## Root cause

**To fill.** Ask "why" five times, from the symptom down; each answer is the next question.

1. Why did "{{ (symptoms | first if symptoms else title) | cell }}" happen? **to fill**
2. Why? **to fill**
3. Why? **to fill**
4. Why? **to fill**
5. Why? **to fill**

## What went well

{% for fact in went_well %}
- {{ fact | cell }}
{% endfor %}
- **to fill**

## What went wrong

{% for fact in went_wrong %}
- {{ fact | cell }}
{% endfor %}
- **to fill**

## Action items

| ID | Action | Owner | Due | Priority | Status |
| --- | --- | --- | --- | --- | --- |
{% for item in action_items %}
| {{ item.id | cell }} | {{ item.text | cell }} | {{ item.owner | cell }} | {{
  item.due | cell }} | {{ item.priority | cell }} | {{ item.status | cell }} |
{% else %}
| **to fill** | | | | | |
{% endfor %}

## Roles and thanks

| Role | People |
| --- | --- |
{% for role in roles %}
| {{ role.name | cell }} | {{ role.people | join(", ") | cell }} |
{% else %}
| **to fill** | |
{% endfor %}

Thanks to {{ thanks | join(", ") | cell if thanks else "**to fill**" }}.
"""
"""The shipped policies/templates/postmortem.md.j2, used where a team's folder has none."""

SAMPLE_POSTMORTEM: dict[str, Any] = {
    "incident_id": "4f1c2a9e0b7d-mhx2k1q0",
    "title": "p95 latency above 2s for 5m",
    "route": "api-latency",
    "generated_at": "2026-11-28 12:00:00 UTC",
    "date": "2026-11-28",
    "severity": "SEV1",
    "severity_name": "High",
    "severity_changes": ["10:05:00 UTC: escalated from SEV2 to SEV1 by rui"],
    "started_at": "2026-11-28 10:00:00 UTC",
    "resolved_at": "2026-11-28 11:20:00 UTC",
    "duration": "1h20m",
    "authors": ["rui (incident commander)", "ada (scribe)"],
    "status": "Draft",
    "postmortem_due": "2026-12-03 11:20:00 UTC",
    "services": ["api"],
    "symptoms": ["p95 latency above 2s for 5m"],
    "mitigations": ["scale_up at 10:00:01 UTC: scaled production/api from 4 to 8"],
    "alerts": [
        {
            "name": "HighLatency",
            "fingerprint": "d9ccd8014b804fee",
            "severity": "SEV1",
            "target": "production/api",
            "summary": "p95 latency above 2s for 5m",
            "fired": "from 2026-11-28 09:59:20 UTC to 2026-11-28 11:20:00 UTC (1h20m)",
        }
    ],
    "firing_for": "1h20m, from 09:59:20 UTC to 11:20:00 UTC",
    "slos": ["api-availability-99.9 (HighLatency)"],
    "metrics": [
        {"name": "p95_latency", "during": "3.2 s (over 2), at 10:00:01 UTC", "after": "0.21 s"}
    ],
    "timeline": [
        {
            "time": "2026-11-28 10:00:00",
            "kind": "declared",
            "by": "alertpilot",
            "message": "SEV2 declared by route api-latency: p95 latency above 2s for 5m",
        }
    ],
    "went_well": ["Paged 40s after the first alert started, inside SEV1's 15m response time"],
    "went_wrong": ["Alerts kept firing 1h20m after scale_up was applied"],
    "action_items": [
        {
            "id": "F1",
            "text": "Alert on saturation before latency",
            "owner": "ada",
            "due": "2026-12-12",
            "priority": "P1",
            "status": "open",
        }
    ],
    "roles": [{"name": "Incident commander", "people": ["rui"]}],
    "thanks": ["ada", "rui"],
}
"""A context with every variable the template may use, for `policy validate` and docs."""
