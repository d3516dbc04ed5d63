"""Incident transitions at intake, as pure functions over the stored record.

Given the open incident of an incident key (or none) and the alerts of one
notification that map to it, decide the new record, the timeline entries and
the jobs. Only transitions (declared, escalated, resolved) create jobs; alerts
joining, resolving or firing again inside an open incident only change state
and the timeline.

Alertmanager delivers at least once and in no guaranteed order across an HA
pair, so an alert state older than the one already applied is dropped first
(`drop_stale`): a lagging twin must not re-open or re-page what just resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from workers.incident import timeline
from workers.incident.alerts import Alert, Notification
from workers.incident.durations import parse_duration
from workers.incident.record import AlertState, Incident
from workers.incident.timeline import seconds as _ts
from workers.jobs.contract import (
    COMMUNICATION_ACTIONS,
    MITIGATION_ACTIONS,
    action_job_id,
    tick_job_id,
)
from workers.jobs.contract import Transition as JobTransition
from workers.policy import Match, Policy
from workers.policy.model import Action, Severity

Transition = Literal["declared", "escalated", "resolved", "reopened", "severity"]
"""What a change did to its incident: alerts declare, escalate and resolve; people
(workers/incident/commands.py) also reopen and set the severity, up or down."""
Pairs = Sequence[tuple[Alert, Match]]


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue: one action for one transition of one incident."""

    job_id: str
    action: Action
    transition: JobTransition
    severity: str
    dry_run: bool
    public: bool = False
    """The severity goes on the status page."""
    delay_seconds: int = 0
    """Run this long after the transition (`page_after`); 0: at once."""
    update_every: int | None = None
    """The severity's status-update cadence in seconds, for "next update" lines."""
    route: str = ""
    """The route whose action this is."""


DECLARED_MESSAGE_WAIT = 15
"""Seconds the declared and resolved chat messages wait at most for the runbook's
results (workers/runbook_steps.py releases them as soon as they are in)."""


@dataclass(frozen=True)
class TickSpec:
    """The next status-update tick of an open incident (workers.entry.run_tick)."""

    job_id: str
    delay_seconds: int
    severity: str
    public: bool
    revision: int = 0


@dataclass(frozen=True)
class Change:
    incident: Incident
    transition: Transition | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[JobSpec] = field(default_factory=list)
    tick: TickSpec | None = None
    commander_check: int | None = None
    """Seconds until the check that the incident has a commander (its severity needs one)."""
    cancel: list[str] = field(default_factory=list)
    """Scheduled jobs the change withdraws (a reopen: the resolve's pending reverts)."""
    runbook: str | None = None
    """The route's runbook to run now (declared, escalated)."""
    postmortem_due: str | None = None
    """A resolve whose severity asks for a postmortem: when it falls due (a check then)."""
    runbook_when: str | None = None
    """Names the run when no transition does (a person asked for one)."""
    waiting: tuple[str, ...] = ()
    """Jobs of this change that wait for the runbook's run (the declared chat message,
    for its "Current metrics"): it releases them, at the latest they run at their time."""


class Basis(Protocol):
    """What a decision needs whatever made it: the policy in force and the time."""

    @property
    def policy(self) -> Policy: ...

    @property
    def now(self) -> str: ...


@dataclass(frozen=True)
class Context:
    """What every transition needs besides the alerts: the policy, the clock, the source."""

    policy: Policy
    notification: Notification
    now: str
    dry_run: bool
    stale_window_seconds: int


def drop_stale(alerts: Pairs, known: Incident | None, ctx: Context) -> tuple[list[Any], int]:
    """The alerts that are news to `known` (the open or the last incident), and how many were not.

    Stale: a firing copy of an alert instance (same startsAt) that alertpilot
    saw resolve less than the stale window ago, or a resolve of an instance
    older than the one now firing.
    """
    if known is None:
        return list(alerts), 0
    is_open = known.status == "open"
    fresh = [
        (a, m) for a, m in alerts if not _stale(a, known.alerts.get(a.fingerprint), ctx, is_open)
    ]
    return fresh, len(alerts) - len(fresh)


def _stale(alert: Alert, known: AlertState | None, ctx: Context, is_open: bool) -> bool:
    if known is None:
        return False
    if alert.status == "resolved":
        return known.status == "firing" and _ts(alert.starts_at) < _ts(known.starts_at)
    if known.status != "resolved" or known.resolved_seen_at is None:
        return False
    if known.left and is_open:
        # Listed again while its incident is open: a silence lifted, or the HA twin that
        # had not seen it yet sent the notification it was missing from. It fires.
        return False
    same_instance = _ts(alert.starts_at) == _ts(known.starts_at)
    recent = _ts(ctx.now) - _ts(known.resolved_seen_at) < ctx.stale_window_seconds
    return same_instance and recent


def absent(current: Incident, ctx: Context) -> Change | None:
    """What a notification that lists none of an open incident's alerts does to it: its
    alerts of that group have left the group (`_left`); the incident may resolve."""
    return _update(current, [], ctx)


def apply(
    current: Incident | None, alerts: Pairs, ctx: Context, *, key: str, new_id: str
) -> Change | None:
    """The change these alerts make to the incident of `key`; None when they change nothing."""
    if not alerts:
        return None
    if current is None:
        if not any(alert.status == "firing" for alert, _ in alerts):
            return None  # resolved alerts of an incident that is already closed
        return _declare(alerts, ctx, key=key, incident_id=new_id)
    return _update(current, alerts, ctx)


def _declare(alerts: Pairs, ctx: Context, *, key: str, incident_id: str) -> Change:
    states = {a.fingerprint: _state(a, m, None, ctx) for a, m in alerts}
    firing = [m for a, m in alerts if a.status == "firing"]
    top = _most_severe(firing, ctx.policy)
    actions = with_war_room(top.actions, ctx.policy.severities.get(top.severity))
    first = next(a for a, _ in alerts if a.status == "firing")
    title = first.annotations.get("summary") or first.labels.get("alertname", "alert")
    incident = Incident(
        id=incident_id,
        key=key,
        route=top.route,
        severity=top.severity,
        status="open",
        started_at=ctx.now,
        resolved_at=None,
        updated_at=ctx.now,
        title=title,
        group_key=ctx.notification.group_key,
        receiver=ctx.notification.receiver,
        external_url=ctx.notification.external_url,
        alerts=states,
        actions=tuple(a.name for a in actions),
        dry_run=ctx.dry_run or bool(top.dry_run),
    )
    jobs = [job(incident, action, "declared", ctx) for action in actions]
    book = runbook_of(ctx.policy, top.route)
    jobs, waiting = _wait_for_runbook(book, jobs)
    # With the severity's vendor settings merged in: ticks and resolves reuse them.
    incident = incident.with_changes(action_params={j.action.name: j.action.params for j in jobs})
    message = f"{top.severity} declared by route {top.route}: {title} ({len(firing)} firing)"
    found = entry(ctx, "declared", message, route=top.route, queued=_names(jobs))
    check = commander_check(incident, ctx)
    tick = first_tick(incident, ctx)
    return Change(incident, "declared", [found], jobs, tick, check, runbook=book, waiting=waiting)


def _update(current: Incident, alerts: Pairs, ctx: Context) -> Change | None:
    states = dict(current.alerts)
    entries: list[dict[str, Any]] = []
    for alert, match in alerts:
        before = states.get(alert.fingerprint)
        states[alert.fingerprint] = _state(alert, match, before, ctx)
        if before is None and alert.status == "firing":
            entries.append(_alert_entry(ctx, "alert_added", "joined", alert))
        elif before is not None and before.status != alert.status:
            kind = "alert_resolved" if alert.status == "resolved" else "alert_refired"
            verb = "resolved" if alert.status == "resolved" else "fired again"
            entries.append(_alert_entry(ctx, kind, verb, alert))
    for state in _left(current, ctx):
        states[state.fingerprint] = replace(
            state, status="resolved", ends_at=ctx.now, resolved_seen_at=ctx.now, left=True
        )
        name = state.labels.get("alertname", "alert")
        message = (
            f"{name} {state.fingerprint} left its group without a resolve (silenced, "
            "inhibited or relabelled away): counted as ended"
        )
        entries.append(entry(ctx, "alert_left", message, fingerprint=state.fingerprint))
    if states == current.alerts:
        return None
    incident = current.with_changes(alerts=states, updated_at=ctx.now)
    if not incident.firing:
        if ctx.notification.truncated_alerts:
            # Alertmanager left alerts out (max_alerts): some of them may still fire.
            note = f"not resolved: {ctx.notification.truncated_alerts} alerts were truncated"
            return Change(incident, None, [*entries, entry(ctx, "resolve_deferred", note)])
        return close(incident, entries, ctx)
    firing = [m for a, m in alerts if a.status == "firing"]
    top = _most_severe(firing, ctx.policy) if firing else None
    if top is not None and ctx.policy.rank(top.severity) < ctx.policy.rank(current.severity):
        return _escalate(incident, top, entries, ctx)
    return Change(incident, None, entries)


def _escalate(
    incident: Incident, top: Match, entries: list[dict[str, Any]], ctx: Context
) -> Change:
    """Communication goes out again at the new severity; mitigations not yet queued join."""
    wanted = with_war_room(top.actions, ctx.policy.severities.get(top.severity))
    if "war_room" in incident.actions and all(a.name != "war_room" for a in wanted):
        wanted.insert(0, Action(name="war_room"))  # its topic follows the severity
    actions = [
        a for a in wanted if a.name in COMMUNICATION_ACTIONS or a.name not in incident.actions
    ]
    escalated = incident.with_changes(
        severity=top.severity,
        route=top.route,
        actions=incident.actions + tuple(a.name for a in actions if a.name not in incident.actions),
        dry_run=incident.dry_run or bool(top.dry_run),
    )
    jobs = [job(escalated, action, "escalated", ctx) for action in actions]
    merged = {**incident.action_params, **{j.action.name: j.action.params for j in jobs}}
    escalated = escalated.with_changes(action_params=merged)
    message = f"escalated from {incident.severity} to {top.severity} by route {top.route}"
    entries.append(
        entry(
            ctx,
            "escalated",
            message,
            route=top.route,
            queued=_names(jobs),
            previous=incident.severity,
            severity=top.severity,
        )
    )
    check = commander_check(escalated, ctx)
    tick = first_tick(escalated, ctx)
    book = runbook_of(ctx.policy, top.route)
    return Change(escalated, "escalated", entries, jobs, tick, check, runbook=book)


def close(
    incident: Incident,
    entries: list[dict[str, Any]],
    ctx: Basis,
    *,
    message: str | None = None,
    **details: Any,
) -> Change:
    """Every alert resolved (or a person resolved it: `message`, `details`):
    communication actions that ran get their resolve job, mitigations a revert job
    once the stabilisation window has passed (unless the route said `revert: false`).
    After a reopen (`revision`), the resolve jobs are new ones, not the first resolve's.
    """
    resolved = incident.with_changes(status="resolved", resolved_at=ctx.now)
    tag = f"r{incident.revision}-resolved" if incident.revision else None
    jobs = []
    for name in incident.actions:
        params = incident.action_params.get(name, {})
        if name in MITIGATION_ACTIONS and params.get("revert", True) is False:
            continue
        if name in COMMUNICATION_ACTIONS or name in MITIGATION_ACTIONS:
            action = Action(name=name, params=params)
            jobs.append(job(resolved, action, "resolved", ctx, tag=tag))
    message = message or f"resolved: all {len(incident.alerts)} alerts resolved"
    entries.append(entry(ctx, "resolved", message, queued=_names(jobs), **details))
    book = runbook_of(ctx.policy, incident.route)  # the last snapshot, for the record
    jobs, waiting = _wait_for_runbook(book, jobs)
    due = _postmortem_due(incident, ctx)
    if due is not None:
        resolved = resolved.with_changes(postmortem={**incident.postmortem, "due_at": due})
    return Change(
        resolved, "resolved", entries, jobs, runbook=book, waiting=waiting, postmortem_due=due
    )


def _postmortem_due(incident: Incident, ctx: Basis) -> str | None:
    """When the postmortem is due, if the severity asks for one and none is written."""
    severity = ctx.policy.severities.get(incident.severity)
    within = _seconds(severity.postmortem_within if severity else None)
    if not within or incident.postmortem.get("done_at"):
        return None
    due = datetime.fromtimestamp(_ts(ctx.now) + within, tz=UTC)
    return due.isoformat(timespec="seconds").replace("+00:00", "Z")


def _wait_for_runbook(
    book: str | None, jobs: list[JobSpec]
) -> tuple[list[JobSpec], tuple[str, ...]]:
    """With a runbook to run, the chat message waits for its numbers (at most
    DECLARED_MESSAGE_WAIT seconds); nothing else waits."""
    if book is None:
        return jobs, ()
    jobs = [
        replace(j, delay_seconds=max(j.delay_seconds, DECLARED_MESSAGE_WAIT))
        if j.action.name == "notify"
        else j
        for j in jobs
    ]
    return jobs, tuple(j.job_id for j in jobs if j.action.name == "notify")


def _left(current: Incident, ctx: Context) -> list[AlertState]:
    """Firing alerts of this notification's group that it no longer lists.

    Alertmanager sends a group's whole state each time, so an alert missing from a
    complete notification has ended for it (a silence, an inhibition, relabelling):
    no resolve will ever come. A truncated notification (`max_alerts`) proves
    nothing, and alerts of other groups sharing the incident key are not its to end.
    Listed again while the incident is open, it fires again (a lifted silence, a
    twin that had not seen it yet); once the incident has resolved, the stale
    window keeps a lagging twin from declaring it anew, as after a resolve.
    """
    if ctx.notification.truncated_alerts:
        return []
    listed = {alert.fingerprint for alert in ctx.notification.alerts}
    return [
        state
        for state in current.alerts.values()
        if state.status == "firing"
        and state.group_key == ctx.notification.group_key
        and state.fingerprint not in listed
    ]


def _most_severe(matches: Sequence[Match], policy: Policy) -> Match:
    return min(matches, key=lambda m: policy.rank(m.severity))


def _state(alert: Alert, match: Match, before: AlertState | None, ctx: Context) -> AlertState:
    resolved_seen_at = None
    if alert.status == "resolved":
        earlier = before.resolved_seen_at if before and before.status == "resolved" else None
        resolved_seen_at = earlier or ctx.now
    return AlertState(
        fingerprint=alert.fingerprint,
        status=alert.status,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        labels=alert.labels,
        annotations=alert.annotations,
        generator_url=alert.generator_url,
        severity=match.severity,
        route=match.route,
        resolved_seen_at=resolved_seen_at,
        group_key=ctx.notification.group_key,
    )


def job(
    incident: Incident,
    action: Action,
    transition: JobTransition,
    ctx: Basis,
    *,
    tag: str | None = None,
) -> JobSpec:
    """The job of `action` for this transition; `tag` makes its id (default: the transition,
    with the severity for an escalation)."""
    if tag is None:
        tag = transition if transition != "escalated" else f"escalated-{incident.severity}"
        if transition == "escalated" and incident.revision:
            # A rise again after a person's downgrade is a new effect, not the first one's.
            tag = f"r{incident.revision}-{tag}"
    severity = ctx.policy.severities.get(incident.severity)
    delay = 0
    if action.name in MITIGATION_ACTIONS and transition == "resolved":
        delay = _seconds(ctx.policy.guardrails.stabilisation)
    if action.name == "page" and transition == "declared":
        # page_after: a flapping alert that resolves inside the window never pages
        # (the delayed job finds the incident resolved and does nothing).
        wait = action.params.get("page_after") or (severity.page_after if severity else None)
        delay = _seconds(wait)
    # A mitigation carries no guardrails or manifest: the worker checks it against the
    # policy in force when it runs (workers/mitigations/common.py `in_force`).
    return JobSpec(
        job_id=action_job_id(incident.id, tag, action.name),
        action=_with_runbook_link(_with_severity_defaults(action, severity), incident, ctx),
        transition=transition,
        severity=incident.severity,
        dry_run=incident.dry_run,  # sticky: a dry-run route's incident never acts for real
        public=bool(severity and severity.public),
        delay_seconds=delay,
        update_every=_seconds(severity.update_every if severity else None) or None,
        route=incident.route,
    )


def _with_severity_defaults(action: Action, severity: Severity | None) -> Action:
    """The severity's vendor settings, as parameters the route's action did not set."""
    if severity is None:
        return action
    defaults: dict[str, Any] = {}
    if action.name == "page" and severity.pagerduty_severity:
        defaults["pagerduty_severity"] = severity.pagerduty_severity
    if action.name in ("page", "notify", "war_room") and severity.bridge:
        defaults["bridge"] = severity.bridge
    if action.name == "statuspage":
        if severity.statuspage_impact:
            defaults["impact"] = severity.statuspage_impact
        if severity.component_status:
            defaults["component_status"] = severity.component_status
    if not defaults:
        return action
    return Action(name=action.name, params={**defaults, **action.params})


def _with_runbook_link(action: Action, incident: Incident, ctx: Basis) -> Action:
    """A page links the route's runbook document (its `url`) unless the route set one."""
    book = runbook_of(ctx.policy, incident.route) if action.name == "page" else None
    found = ctx.policy.runbooks.get(book) if book else None
    if found is None or found.url is None or action.params.get("runbook"):
        return action
    return Action(name=action.name, params={**action.params, "runbook": found.url})


def first_tick(incident: Incident, ctx: Basis) -> TickSpec | None:
    """The first status-update tick at the severity's cadence, if it has one."""
    severity = ctx.policy.severities.get(incident.severity)
    every = _seconds(severity.update_every if severity else None)
    if not every or not {"notify", "statuspage"} & set(incident.actions):
        return None
    public = bool(severity and severity.public)
    job_id = tick_job_id(incident.id, incident.severity, 1, incident.revision)
    return TickSpec(job_id, every, incident.severity, public, incident.revision)


def with_war_room(actions: Sequence[Action], severity: Severity | None) -> list[Action]:
    """The route's actions, with the war room first when the severity asks for one (its
    channel is then there for the messages that follow)."""
    if severity is None or not severity.war_room or any(a.name == "war_room" for a in actions):
        return list(actions)
    return [Action(name="war_room"), *actions]


def runbook_of(policy: Policy, route: str) -> str | None:
    found = policy.route(route)
    return found.runbook if found is not None else None


def commander_check(incident: Incident, ctx: Basis) -> int | None:
    """When to check that the incident has a commander: its severity's response time from
    now, if the severity needs one and nobody holds the role yet."""
    severity = ctx.policy.severities.get(incident.severity)
    if severity is None or not severity.needs_commander or incident.roles.get("ic"):
        return None
    return _seconds(severity.response_time) or None


def _seconds(duration: object) -> int:
    return int(parse_duration(str(duration)).total_seconds()) if duration else 0


def _names(jobs: Sequence[JobSpec]) -> list[str]:
    return [job.action.name for job in jobs]


def entry(ctx: Basis, kind: str, message: str, **details: Any) -> dict[str, Any]:
    return timeline.entry(kind, message, at=ctx.now, **details)


def _alert_entry(ctx: Context, kind: str, verb: str, alert: Alert) -> dict[str, Any]:
    name = alert.labels.get("alertname", "alert")
    return entry(ctx, kind, f"{name} {alert.fingerprint} {verb}", fingerprint=alert.fingerprint)
