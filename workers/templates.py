"""Chat messages from Jinja2 templates that teams change through pull requests.

`policies/templates/{declared,update,resolved,handoff}.md.j2` (escalations
use the update template with `escalated` true; handoff, with its `note`, says
a mitigation used its attempts and a person takes over). A template missing
there falls back to the built-in one below, which the shipped files copy. Rendering is
sandboxed and strict: a template naming a variable that does not exist fails
(policy validate catches it before merge), it does not print nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader, StrictUndefined, TemplateError

from workers.sandbox import Sandbox

NAMES = {
    "declared": "declared.md.j2",
    "escalated": "update.md.j2",
    "update": "update.md.j2",
    "resolved": "resolved.md.j2",
    "handoff": "handoff.md.j2",
    "reminder": "handoff.md.j2",
}

_COMMON = """\
Impact: {{ firing }} of {{ total }} alerts firing; services: {{ services | join(", ") }}
Started: {{ started_at }}
Status: {{ status }}; incident commander: {{ ic or "none yet" }}
{% if metrics %}Current metrics: {{ metrics | join("; ") }}
{% endif %}{% if changes %}Recent changes: {{ changes | join("; ") }}
{% endif %}{% if workloads %}Workload: {{ workloads | join("; ") }}
{% endif %}Actions: {{ actions | join(", ") or "none" }}
{% if link %}Incident: {{ link }}
{% endif %}{% if war_room %}War room: {{ war_room }}
{% endif %}{% if bridge %}Bridge: {{ bridge }}
{% endif %}"""

BUILT_IN = {
    "declared.md.j2": ":rotating_light: *{{ severity }} declared*: {{ title }}\n"
    + _COMMON
    + "{% if next_update %}Next update: in {{ next_update }}\n{% endif %}",
    "update.md.j2": "{% if escalated %}:arrow_double_up: *Escalated to {{ severity }}*"
    "{% else %}:information_source: *Update ({{ severity }})*{% endif %}: {{ title }}\n"
    + _COMMON
    + "{% if next_update %}Next update: in {{ next_update }}\n{% endif %}",
    "resolved.md.j2": ":white_check_mark: *Resolved*: {{ title }}\n"
    + _COMMON
    + "Resolved: {{ resolved_at }}\n"
    + "{% if postmortem %}Postmortem draft: {{ postmortem }}"
    + "{% if postmortem_due %} (due {{ postmortem_due }}){% endif %}\n{% endif %}",
    "handoff.md.j2": ":raising_hand: *A person is needed ({{ severity }})*: {{ title }}\n"
    "{{ note }}\n" + _COMMON,
}

SAMPLE: dict[str, Any] = {
    "severity": "SEV1",
    "severity_name": "High",
    "title": "p95 latency above 2s for 5m",
    "escalated": False,
    "firing": 2,
    "total": 2,
    "services": ["payments"],
    "labels": {"alertname": "HighLatency", "service": "payments"},
    "started_at": "2026-11-28T10:00:00Z",
    "resolved_at": "2026-11-28T10:30:00Z",
    "actions": ["page", "statuspage", "notify"],
    "link": "https://alertpilot.example/api/v1/incidents/abc-1",
    "next_update": "1h",
    "incident_id": "abc-1",
    "note": "scale_up was tried 2 times for this incident: a person decides now",
    "status": "identified",
    "ic": "jane",
    "war_room": "https://example.slack.com/archives/C0123456789",
    "bridge": "https://meet.example.com/inc",
    "postmortem": "https://alertpilot.example/incidents/abc-1/postmortem",
    "postmortem_due": "2026-12-03T10:30:00Z",
    "metrics": ["p95_latency 0.25 s (at declaration: 8 s over 2)"],
    "changes": [
        "production/payments: rolled out in the last 1h: revision 7 (current) 12m ago: "
        "registry.example/payments:1.4.2: consider rollback"
    ],
    "workloads": [
        "production/payments: 3/4 ready, 3 available, 4 up to date; pod payments-7c9-x2 "
        "not ready (CrashLoopBackOff, last ended Error, 6 restarts)"
    ],
}
"""A context with every variable a template may use, for validation and docs."""


def plain(text: str) -> str:
    """Text from alerts and people as Slack shows it, never as markup: `<!channel>` in a
    title or a name must not ping a channel, nor `<https://...|here>` make a link
    (Slack's escaping: &, < and >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def environment(directory: Path | None) -> Sandbox:
    loaders: list[Any] = [DictLoader(BUILT_IN)]
    if directory is not None and directory.is_dir():
        loaders.insert(0, FileSystemLoader(str(directory)))
    return Sandbox(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def render(directory: Path | None, transition: str, context: dict[str, Any]) -> str:
    template = environment(directory).get_template(NAMES[transition])
    return template.render(**context).strip()


_LABELS = Sandbox(undefined=StrictUndefined, autoescape=False)


def render_label_template(value: str, labels: Mapping[str, str]) -> str | None:
    """A route parameter that may be a template over the alert's labels; None when it
    names a label the alert lacks, or renders empty."""
    if "{{" not in value and "{%" not in value:
        return value
    try:
        return _LABELS.from_string(value).render(labels=labels).strip() or None
    except TemplateError:
        return None
