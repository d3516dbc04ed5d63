"""`alertpilot policy explain`: why an alert gets the plan it gets, without side effects.

Every route is shown in order with its verdict (matched, the first matcher
that failed and the value it saw, or not tried because an earlier match does
not continue), then the plan of each route taken: severity, incident key,
actions with their targets, dry run. The routes taken are the engine's own
(`evaluate`), so what explain says is what intake does.
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.incident.alerts import target_of
from workers.jobs.contract import MITIGATION_ACTIONS
from workers.policy.engine import CompiledRoute, Match, Policy, evaluate
from workers.policy.model import Action


def explain(
    policy: Policy,
    labels: Mapping[str, str],
    *,
    annotations: Mapping[str, str] | None = None,
    group_key: str = "",
    dry_run: bool = True,
) -> str:
    taken = evaluate(policy, labels, annotations=annotations, group_key=group_key)
    names = {m.route for m in taken}
    lines = [f"alert {_labels(labels)}"]
    stopped_by: str | None = None
    for route in policy.routes:
        if stopped_by is not None:
            lines.append(f"  route {route.name}: not tried ({stopped_by} matched, no continue)")
        elif route.name in names:
            lines.append(
                f"  route {route.name}: matched" + (", continue" if route.continue_ else "")
            )
            stopped_by = None if route.continue_ else route.name
        else:
            lines.append(f"  route {route.name}: no match: {_failed(route, labels)}")
    if taken[0].route == policy.default.name:
        lines.append("  no route matched: default")
    for match in taken:
        lines += _plan(policy, match, labels, dry_run)
    return "\n".join(lines)


def _failed(route: CompiledRoute, labels: Mapping[str, str]) -> str:
    matcher = next((m for m in route.matchers if not m.matches(labels)), None)
    if matcher is None:
        return "matches, but the engine did not take it (report this as a bug)"
    seen = f'{matcher.name}="{labels[matcher.name]}"' if matcher.name in labels else "absent"
    return f"{matcher} ({seen})"


def _plan(policy: Policy, match: Match, labels: Mapping[str, str], dry_run: bool) -> list[str]:
    severity = policy.severities.get(match.severity)
    about = ""
    if severity is not None:
        parts = [severity.name, f"respond within {severity.response_time}"]
        parts.append(f"page {severity.page}" if severity.page else "no page")
        if severity.update_every:
            parts.append(f"update every {severity.update_every}")
        if severity.public:
            parts.append("public")
        about = f" ({'; '.join(parts)})"
    why = "global setting" if dry_run else "route" if match.dry_run else ""
    return [
        f"  plan via {match.route}:",
        f"    severity      {match.severity}{about}",
        f"    incident key  {match.incident_key}"
        + (
            f" (the route's incident_key is not used: {match.key_fallback})"
            if match.key_fallback
            else ""
        ),
        f"    actions       {_actions(match.actions, labels)}",
        f"    dry run       {'yes (' + why + ')' if why else 'no'}",
    ]


def _actions(actions: tuple[Action, ...], labels: Mapping[str, str]) -> str:
    if not actions:
        return "none"
    shown = []
    for action in actions:
        text = action.name
        if action.params:
            text += " {" + ", ".join(f"{k}: {v}" for k, v in action.params.items()) + "}"
        if action.name in MITIGATION_ACTIONS:
            text += f" -> {target_of(labels)}"
        shown.append(text)
    return ", ".join(shown)


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
