"""People's commands on an incident: what each decides (pure, as transitions.py decides
for alerts) and `Commands`, which applies one under WATCH through the Writer.

Every command names its person (`by`) on the timeline entry it writes. Commands that
queue jobs tag their ids with the incident's `revision`, so a second escalation to the
same severity (after a downgrade), or a resolve after a reopen, is a new effect and
not a repeat of the first one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from redis import Redis
from redis.exceptions import WatchError

from workers.incident import clock, figures_store, timeline
from workers.incident.acknowledgement import Acknowledgement, acknowledged, human
from workers.incident.keys import Keys, base36, group_hash, text
from workers.incident.record import PHASES, ROLES, Incident, Phase
from workers.incident.transitions import (
    Change,
    close,
    commander_check,
    entry,
    first_tick,
    job,
    runbook_of,
)
from workers.incident.writer import Writer
from workers.jobs.contract import MITIGATION_ACTIONS, action_job_id
from workers.jobs.contract import Transition as JobTransition
from workers.policy import Policy
from workers.policy.engine import key_hash
from workers.policy.model import Action

MAX_TEXT = 4000
"""Characters of a note, a title or a summary."""
MAX_NAME = 64
MAX_ATTEMPTS = 10
DECLARED_ROUTE = "declared-by-hand"
"""The route name of an incident a person declared (no alert, no route)."""
Reason = Literal["invalid", "not_found", "conflict"]


class CommandError(Exception):
    """The command cannot be done: bad input (`invalid`, naming `field`), no such incident
    (`not_found`), or not in the incident's state (`conflict`). Nothing was changed."""

    def __init__(self, reason: Reason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Moment:
    """The policy in force and the time: what every decision is made against."""

    policy: Policy
    now: str


@dataclass(frozen=True)
class Done:
    """What a command did: the incident after it, its timeline entries and job ids."""

    incident: Incident
    entries: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)


Decision = Callable[[Incident, Moment], Change]


# --- decisions ---------------------------------------------------------------------


def note(by: str, words: str) -> Decision:
    words = checked_text(words, "text")

    def decide(current: Incident, moment: Moment) -> Change:
        incident = current.with_changes(updated_at=moment.now)
        return Change(incident, None, [entry(moment, "note", words, by=by)])

    return decide


def assign(by: str, role: str, person: str, *, slack_id: str | None = None) -> Decision:
    """`slack_id`: the person's, to invite into the war room when they become IC."""
    if role not in ROLES:
        raise CommandError("invalid", f"expected one of {', '.join(ROLES)}, got {role!r}", "role")
    person = checked_name(person, "person")

    def decide(current: Incident, moment: Moment) -> Change:
        _open(current)
        held = current.roles.get(role, [])
        if person in held:
            raise CommandError("conflict", f"{person} is already {role} of {current.id}")
        # Subject-matter experts add up; every other role has one holder at a time.
        holders = [*held, person] if role == "sme" else [person]
        roles = {**current.roles, role: holders}
        incident = current.with_changes(roles=roles, updated_at=moment.now)
        before = f" (was {', '.join(held)})" if held and role != "sme" else ""
        message = f"{person} assigned as {role} by {by}{before}"
        found = entry(moment, "assigned", message, by=by, role=role, person=person)
        if slack_id:
            incident = incident.with_changes(contacts={**current.contacts, person: slack_id})
        if role != "ic":
            return Change(incident, None, [found])
        return _room_update(incident, moment, [found], "ic")

    return decide


def run_runbook(by: str) -> Decision:
    """Run the route's runbook now (its results go on the timeline like the others)."""

    def decide(current: Incident, moment: Moment) -> Change:
        name = runbook_of(moment.policy, current.route)
        if name is None:
            message = f"route {current.route!r} of {current.id} names no runbook"
            raise CommandError("conflict", message)
        stamp = moment.now.replace("-", "").replace(":", "").split(".")[0]
        message = f"runbook {name} asked for by {by}"
        return Change(
            current,
            None,
            [entry(moment, "runbook_asked", message, by=by, runbook=name)],
            runbook=name,
            runbook_when=f"asked-{stamp}",
        )

    return decide


def set_phase(by: str, phase: str) -> Decision:
    if phase not in PHASES:
        raise CommandError(
            "invalid", f"expected one of {', '.join(PHASES)}, got {phase!r}", "status"
        )
    chosen: Phase = next(p for p in PHASES if p == phase)

    def decide(current: Incident, moment: Moment) -> Change:
        _open(current)
        if current.phase == chosen:
            raise CommandError("conflict", f"{current.id} is already {chosen}")
        incident = current.with_changes(phase=chosen, updated_at=moment.now)
        message = f"status set to {chosen} by {by} (was {current.phase})"
        found = entry(moment, "status", message, by=by, status=chosen)
        return _room_update(incident, moment, [found], "status")

    return decide


def set_severity(by: str, severity: str) -> Decision:
    """Escalate or downgrade. Communication runs again at the new severity (chat, the
    status page when it is public or already open); a page goes out when it rises."""

    def decide(current: Incident, moment: Moment) -> Change:
        _open(current)
        policy = moment.policy
        target = policy.severities.get(severity)
        if target is None:
            known = ", ".join(policy.severities)
            raise CommandError("invalid", f"expected one of {known}, got {severity!r}", "severity")
        if severity == current.severity:
            raise CommandError("conflict", f"{current.id} is already {severity}")
        rising = policy.rank(severity) < policy.rank(current.severity)
        names: list[str] = [n for n in ("page", "statuspage", "notify") if n in current.actions]
        if not rising:
            names = [n for n in names if n != "page"]
        elif "page" not in names and target.page:
            names.insert(0, "page")
        if target.public and "statuspage" not in names:
            names.insert(1 if "page" in names else 0, "statuspage")
        if "war_room" in current.actions or target.war_room:
            names.insert(0, "war_room")  # made now if the new severity asks; else its topic
        revision = current.revision + 1
        changed = current.with_changes(
            severity=severity,
            revision=revision,
            updated_at=moment.now,
            actions=current.actions + tuple(n for n in names if n not in current.actions),
        )
        route = _route_actions(policy, current.route)
        transition: JobTransition = "escalated" if rising else "update"
        jobs = [
            job(
                changed,
                route.get(n, Action(name=n)),
                transition,
                moment,
                tag=f"r{revision}-{severity}",
            )
            for n in names
        ]
        params = {**current.action_params, **{j.action.name: j.action.params for j in jobs}}
        changed = changed.with_changes(action_params=params)
        verb = "escalated" if rising else "downgraded"
        message = f"{verb} from {current.severity} to {severity} by {by}"
        queued = [j.action.name for j in jobs]
        found = entry(
            moment,
            verb,
            message,
            by=by,
            queued=queued,
            previous=current.severity,
            severity=severity,
        )
        check = commander_check(changed, moment) if rising else None
        return Change(
            changed,
            "escalated" if rising else "severity",
            [found],
            jobs,
            first_tick(changed, moment),
            check,
            # Worse now: the runbook's numbers again, as an escalation by alerts gets them.
            runbook=runbook_of(moment.policy, current.route) if rising else None,
        )

    return decide


def resolve(by: str) -> Decision:
    """Resolve by hand: like every alert resolving (the page and the status page
    incident closed, mitigations reverted). Alerts still firing are taken as resolved
    now: their resends are stale for the stale window, after it they declare anew."""

    def decide(current: Incident, moment: Moment) -> Change:
        _open(current)
        firing = len(current.firing)
        alerts = {
            fp: replace(a, status="resolved", ends_at=moment.now, resolved_seen_at=moment.now)
            if a.status == "firing"
            else a
            for fp, a in current.alerts.items()
        }
        incident = current.with_changes(alerts=alerts, updated_at=moment.now)
        still = f" ({firing} alerts still firing)" if firing else ""
        return close(incident, [], moment, message=f"resolved by {by}{still}", by=by)

    return decide


def reopen(by: str) -> Decision:
    """Open a resolved incident again: chat says so and the status-update chain restarts.
    The page is not sent again (its people resolved it and are on it)."""

    def decide(current: Incident, moment: Moment) -> Change:
        if current.status != "resolved":
            raise CommandError("conflict", f"{current.id} is open")
        revision = current.revision + 1
        incident = current.with_changes(
            status="open",
            resolved_at=None,
            phase="investigating",
            revision=revision,
            updated_at=moment.now,
        )
        route = _route_actions(moment.policy, current.route)
        jobs = [
            job(
                incident,
                route.get(n, Action(name=n)),
                "update",
                moment,
                tag=f"r{revision}-reopened",
            )
            for n in ("war_room", "notify")
            if n in current.actions
        ]
        found = entry(moment, "reopened", f"reopened by {by}", by=by)
        # The resolve's reverts wait out the stabilisation window: the incident is back,
        # so its mitigations stay (the resolve after this one reverts them).
        resolved_tag = f"r{current.revision}-resolved" if current.revision else "resolved"
        reverts = [
            action_job_id(current.id, resolved_tag, name)
            for name in current.actions
            if name in MITIGATION_ACTIONS
        ]
        return Change(
            incident, "reopened", [found], jobs, first_tick(incident, moment), cancel=reverts
        )

    return decide


def declared(
    moment: Moment,
    by: str,
    *,
    title: str,
    severity: str,
    service: str,
    summary: str,
    dry_run: bool,
    slack_id: str | None = None,
) -> Change:
    """An incident no alert raised: the jobs an alert-declared one of that severity gets
    (a page if the severity pages, at once; the status page if it is public; chat)."""
    title = checked_text(title, "title")
    service = checked_name(service, "service")
    summary = checked_text(summary, "summary", required=False)
    target = moment.policy.severities.get(severity)
    if target is None:
        known = ", ".join(moment.policy.severities)
        raise CommandError("invalid", f"expected one of {known}, got {severity!r}", "severity")
    incident_id = f"m{secrets.token_hex(6)}-{base36(int(timeline.seconds(moment.now) * 1000))}"
    wanted = (
        ("war_room", target.war_room),
        ("page", bool(target.page)),
        ("statuspage", target.public),
        ("notify", True),
    )
    names = [n for n, asked in wanted if asked]
    incident = Incident(
        id=incident_id,
        key=f"declared/{incident_id}",
        route=DECLARED_ROUTE,
        severity=severity,
        status="open",
        started_at=moment.now,
        resolved_at=None,
        updated_at=moment.now,
        title=title,
        group_key="",
        receiver="",
        external_url="",
        actions=tuple(names),
        dry_run=dry_run,
        roles={"ic": [by]},
        contacts={by: slack_id} if slack_id else {},
    )
    # A person declaring wants the page now, whatever the severity's page_after.
    actions = [Action(name=n, params={"page_after": "0s"} if n == "page" else {}) for n in names]
    jobs = [job(incident, a, "declared", moment) for a in actions]
    incident = incident.with_changes(action_params={j.action.name: j.action.params for j in jobs})
    message = f"{severity} declared by {by}: {title} (service {service})"
    details = {"by": by, "service": service, "summary": summary, "queued": names}
    return Change(
        incident,
        "declared",
        [entry(moment, "declared", message, **details)],
        jobs,
        first_tick(incident, moment),
    )


# --- execution ---------------------------------------------------------------------


class Commands:
    """Applies people's commands to the incidents in Redis."""

    def __init__(self, redis: Redis, writer: Writer, policy: Callable[[], Policy]) -> None:
        self.redis = redis
        self.writer = writer
        self.keys: Keys = writer.keys
        self.policy = policy

    def run(self, incident_id: str, decide: Decision) -> Done:
        """Decide on the incident as it is and write the change, or raise CommandError;
        a concurrent change (an alert, another person) makes it decide again."""
        doc_key = self.keys.incident(incident_id)
        with self.redis.pipeline() as pipe:
            for _ in range(MAX_ATTEMPTS):
                try:
                    pipe.watch(doc_key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(doc_key)
                    if raw is None:
                        raise CommandError(
                            "not_found", f"no incident {incident_id!r}", "incident_id"
                        )
                    current = Incident.from_json(raw)
                    change = decide(current, Moment(self.policy(), timeline.utcnow()))
                    tick = self._tick(pipe, current, change)
                    pipe.multi()
                    self.writer.write(pipe, change, tick)
                    groups = self._groups(change.incident)
                    if change.transition == "resolved" and groups:
                        # Alertmanager keeps resending the groups' state; each group's last
                        # digest goes, so a resend is evaluated again (stale for the stale
                        # window, then a still-firing alert declares anew), not a duplicate.
                        pipe.delete(*groups)
                    pipe.execute()
                except WatchError:
                    continue
                jobs = [j.job_id for j in change.jobs]
                book = self.writer.runbook_request(change)
                return Done(change.incident, change.entries, jobs + ([book.job_id] if book else []))
        raise WatchError(f"incident {incident_id} kept changing")

    def declare(
        self,
        by: str,
        *,
        title: str,
        severity: str,
        service: str,
        summary: str,
        dry_run: bool,
        slack_id: str | None = None,
    ) -> Done:
        moment = Moment(self.policy(), timeline.utcnow())
        change = declared(
            moment,
            by,
            title=title,
            severity=severity,
            service=service,
            summary=summary,
            dry_run=dry_run,
            slack_id=slack_id,
        )
        with self.redis.pipeline() as pipe:
            pipe.multi()
            self.writer.write(pipe, change, None)
            pipe.execute()
        return Done(change.incident, change.entries, [j.job_id for j in change.jobs])

    def acknowledge(self, incident_id: str, by: str) -> tuple[Done, Acknowledgement]:
        """The incident's first acknowledgement, by a person (PagerDuty's webhook records
        one too; whichever comes first counts)."""
        doc_key, marker = self.keys.incident(incident_id), self.keys.acknowledgement(incident_id)
        with self.redis.pipeline() as pipe:
            for _ in range(MAX_ATTEMPTS):
                try:
                    pipe.watch(doc_key, marker)  # type: ignore[no-untyped-call]
                    raw = pipe.get(doc_key)
                    if raw is None:
                        missing = f"no incident {incident_id!r}"
                        raise CommandError("not_found", missing, "incident_id")
                    current = Incident.from_json(raw)
                    earlier = pipe.hget(marker, "acknowledged_by")
                    if earlier is not None:
                        message = f"{incident_id} was acknowledged by {text(earlier)}"
                        raise CommandError("conflict", message)
                    first = acknowledged(current, self.policy(), clock.now(), by)
                    message = f"acknowledged by {by} after {human(first.seconds)} ({first.verdict})"
                    found = timeline.entry("acknowledged", message, by=by)
                    ttl = int(pipe.ttl(doc_key))
                    pipe.multi()
                    pipe.hset(marker, mapping=first.fields())
                    if ttl > 0:  # a resolved incident's: it goes when the incident goes
                        pipe.expire(marker, ttl)
                    timeline.append(pipe, self.keys, incident_id, found)
                    figures_store.acknowledged(pipe, self.keys, current, first.at)
                    pipe.execute()
                except WatchError:
                    continue
                return Done(current, [found]), first
        raise WatchError(f"incident {incident_id} kept changing")

    def _groups(self, incident: Incident) -> list[str]:
        """The last-digest keys of the Alertmanager groups the incident's alerts came in."""
        groups = {a.group_key for a in incident.alerts.values()} | {incident.group_key}
        return [self.keys.group(group_hash(incident.receiver, g)) for g in sorted(groups) if g]

    def _tick(self, pipe: Any, current: Incident, change: Change) -> str | None:
        """The pending tick a change cancels (read under the WATCH); for a reopen, the
        key's open incident must be none: a newer one may have been declared since."""
        if change.transition == "reopened":
            index = self.keys.incident_key(key_hash(current.key))
            pipe.watch(index)
            holder = pipe.hget(index, "open")
            if holder is not None and text(holder) != current.id:
                raise CommandError(
                    "conflict", f"incident {text(holder)} is open for the same alerts; use it"
                )
            return None
        if change.transition in ("resolved", "escalated", "severity"):
            return self.writer.pending_tick(pipe, current.id)
        return None


def _room_update(
    incident: Incident, moment: Moment, entries: list[dict[str, Any]], why: str
) -> Change:
    """The change, and the war room's update (topic, the IC invited) when there is one."""
    if "war_room" not in incident.actions:
        return Change(incident, None, entries)
    # Not a new revision (that restarts the status-update chain): the time tags the job.
    at = "".join(c for c in moment.now if c.isdigit())
    room = Action(name="war_room", params=incident.action_params.get("war_room", {}))
    update = job(incident, room, "update", moment, tag=f"room-{why}-{at}")
    return Change(incident, None, entries, [update])


def _open(incident: Incident) -> None:
    if incident.status != "open":
        raise CommandError("conflict", f"{incident.id} is resolved; reopen it first")


def _route_actions(policy: Policy, route: str) -> dict[str, Action]:
    """The route's actions by name, with their parameters as the policy gives them now."""
    found = policy.route(route)
    return {a.name: a for a in found.actions} if found is not None else {}


def checked_text(value: object, name: str, *, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise CommandError("invalid", "required, a non-empty string", name)
    if len(value) > MAX_TEXT:
        raise CommandError("invalid", f"at most {MAX_TEXT} characters", name)
    return value.strip()


def checked_name(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise CommandError("invalid", f"required, 1 to {MAX_NAME} characters", name)
    if any((c.isspace() and c != " ") or not c.isprintable() for c in value):
        raise CommandError("invalid", "no control characters", name)
    return value.strip()
