"""What went well and what went wrong in an incident, measured from its record.

`Record` holds the incident, its timeline, its acknowledgement and the policy in force;
`_facts` measures them against the severity's response time (page, acknowledgement,
commander, approvals, mitigations) and its update cadence (status updates, with
UPDATE_GRACE). An entry missing a field is skipped by the facts that need it, never an
error: stored records outlive code changes. Pure; workers/postmortem.py reads it, and it
never imports workers/postmortem.py (no cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workers.incident.durations import DurationError, parse_duration
from workers.incident.figures import alert_start
from workers.incident.record import Incident
from workers.incident.timeline import seconds
from workers.jobs.contract import MITIGATION_ACTIONS

if TYPE_CHECKING:  # at run time a cycle: workers.policy's checks render the postmortem template
    from workers.policy import Policy

UPDATE_GRACE = 60
"""Seconds an update may come after its cadence before it counts as late: a tick's jobs
take seconds to run, and a retried vendor call longer."""
CHANNELS = {"statuspage": "Status page", "notify": "Chat"}
MESSAGES = ("declared", "escalated", "update", "resolved")
"""Transitions whose communication jobs are status messages (not handoffs, reminders)."""
SENT = ("succeeded", "dry_run")


# --- time ------------------------------------------------------------------------------


def span(value: float) -> str:
    """A duration as people write it: 40s, 3m20s, 1h20m (seconds dropped past an hour)."""
    total = max(0, int(value))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = ((hours, "h"), (minutes, "m")) if hours else ((minutes, "m"), (secs, "s"))
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC)


def _clock(at: float) -> str:
    return _utc(at).strftime("%H:%M:%S UTC")


# --- the record ------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """The incident, its timeline and the policy, with the measures facts share."""

    incident: Incident
    entries: list[dict[str, Any]]
    ack: dict[str, Any]
    policy: Policy
    now: float
    changes: list[tuple[float, str]]
    """When the severity became what: the declared one at the start, then each change."""

    @property
    def start(self) -> float:
        return seconds(self.incident.started_at)

    @property
    def end(self) -> float | None:
        return seconds(self.incident.resolved_at) if self.incident.resolved_at else None

    def severity_at(self, at: float) -> str:
        found = [name for when, name in self.changes if when <= at]
        return found[-1] if found else self.changes[0][1]

    def setting(self, severity: str, name: str) -> str | None:
        found = self.policy.severities.get(severity)
        value = getattr(found, name, None) if found is not None else None
        return str(value) if value else None

    def limit(self, severity: str, name: str = "response_time") -> float | None:
        value = self.setting(severity, name)
        try:
            return parse_duration(value).total_seconds() if value else None
        except DurationError:
            return None

    def verdict(self, took: float, at: float) -> tuple[str, bool]:
        """`took` against the response time of the severity at `at`: its words (", inside
        SEV1's 15m response time") and whether it was inside; ("", True) without one."""
        severity = self.severity_at(at)
        limit, written = self.limit(severity), self.setting(severity, "response_time")
        if limit is None:
            return "", True
        inside = took <= limit
        return f", {'inside' if inside else 'outside'} {severity}'s {written} response time", inside

    def since_start(self, at: float) -> str:
        took = at - self.start
        return "at declaration" if took < 1 else f"{span(took)} after the incident was declared"


def _at(entry: dict[str, Any]) -> float:
    return seconds(str(entry.get("at", "")))


def _severity_changes(incident: Incident, entries: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(when, severity) from declaration on: each escalation's and downgrade's `previous`
    and `severity` fields, or, in records from before those fields, its message
    ("escalated from SEV2 to SEV1 by ...")."""
    moves: list[tuple[float, str, str]] = []
    for e in entries:
        if e.get("kind") not in ("escalated", "downgraded"):
            continue
        if e.get("previous") and e.get("severity"):
            moves.append((_at(e), str(e["previous"]), str(e["severity"])))
            continue
        words = str(e.get("message", "")).split(" from ", 1)[-1].split(" ")[:3]
        if " from " in str(e.get("message", "")) and len(words) == 3 and words[1] == "to":
            moves.append((_at(e), words[0], words[2]))
    first = moves[0][1] if moves else incident.severity
    return [(seconds(incident.started_at), first)] + [(at, to) for at, _, to in moves]


def _assignee(entry: dict[str, Any]) -> str | None:
    """The person an `assigned` entry names: its `person`, or, in records from before
    that field, its message ("rui assigned as ic by ada")."""
    if entry.get("person"):
        return str(entry["person"])
    message = str(entry.get("message", ""))
    return message.split(" assigned as ", 1)[0] if " assigned as " in message else None


# --- what went well, what went wrong -------------------------------------------------------

Facts = tuple[list[str], list[str]]


def _facts(r: Record) -> Facts:
    well: list[str] = []
    wrong: list[str] = []
    for measure in (_paging, _acknowledged, _commander, _mitigations, _proposals, _updates):
        good, bad = measure(r)
        well += good
        wrong += bad
    return well, wrong + _troubles(r)


def _pages(r: Record) -> list[dict[str, Any]]:
    return [
        e
        for e in r.entries
        if e.get("action") == "page"
        and e.get("kind") in SENT
        and e.get("transition") in ("declared", "escalated")
    ]


def _paging(r: Record) -> Facts:
    """The first page against the first alert's startsAt (Alertmanager's, not ours)."""
    sent = next(iter(_pages(r)), None)
    if sent is None:
        return [], []
    at = _at(sent)
    starts = [t.timestamp() for a in r.incident.alerts.values() if (t := alert_start(a))]
    origin = min(starts) if starts else r.start
    what = "the first alert started" if starts else "the incident was declared"
    took = at - origin
    if sent.get("kind") == "dry_run":
        return [], [f"The page ran in dry run, {span(took)} after {what}: nobody was paged"]
    verdict, inside = r.verdict(took, at)
    text = f"Paged {span(took)} after {what}{verdict}"
    return ([text], []) if inside else ([], [text])


def _acknowledged(r: Record) -> Facts:
    at_text, by = r.ack.get("acknowledged_at"), r.ack.get("acknowledged_by")
    if not at_text:
        paged = any(e.get("kind") == "succeeded" for e in _pages(r))
        return [], ["The page was never acknowledged"] if paged else []
    took = float(r.ack.get("time_to_acknowledge_seconds") or 0)
    text = f"Acknowledged by {by} {span(took)} after the incident was declared"
    severity = r.severity_at(seconds(str(at_text)))
    within = r.ack.get("acknowledged_within_response_time")
    written = r.setting(severity, "response_time")
    if within is None or written is None:
        return [text], []
    text += f", {'inside' if within else 'outside'} {severity}'s {written} response time"
    return ([text], []) if within else ([], [text])


def _commander(r: Record) -> Facts:
    """When someone first took the role (against the response time, if the severity
    needs a commander), and each of alertpilot's warnings that nobody had."""
    wrong = [
        f"No incident commander {span(_at(e) - r.start)} after the incident was declared "
        f"(alertpilot's warning at {_clock(_at(e))})"
        for e in r.entries
        if e.get("kind") == "no_commander"
    ]
    first = next(
        (e for e in r.entries if e.get("kind") == "assigned" and e.get("role") == "ic"), None
    )
    if first is None:  # a person who declared an incident holds the role from the start
        held = r.incident.roles.get("ic")
        if held:
            return [f"{', '.join(held)} was incident commander from the start"], wrong
        if r.setting(r.incident.severity, "needs_commander"):
            wrong.append(f"No incident commander was assigned ({r.incident.severity} needs one)")
        return [], wrong
    at = _at(first)
    text = f"{_assignee(first)} took the incident commander role {r.since_start(at)}"
    if not r.setting(r.severity_at(at), "needs_commander"):
        return [text], wrong
    verdict, inside = r.verdict(at - r.start, at)
    return ([text + verdict], wrong) if inside else ([], [*wrong, text + verdict])


def _mitigations(r: Record) -> Facts:
    """Each change applied, and how long the alerts fired after it (against the response
    time); each put back; each blocked or failed."""
    well: list[str] = []
    wrong: list[str] = []
    resolves = [_at(e) for e in r.entries if e.get("kind") == "resolved"]
    for e in (e for e in r.entries if e.get("action") in MITIGATION_ACTIONS):
        at, action, kind = _at(e), e.get("action"), e.get("kind")
        message = e.get("message", "")
        if kind in ("blocked", "failed"):
            wrong.append(f"{action} {kind} at {_clock(at)}: {message}")
        elif kind == "succeeded" and e.get("transition") == "resolved":
            well.append(f"{action} put back at {_clock(at)}: {message}")
        elif kind == "succeeded":
            well.append(f"{action} applied {r.since_start(at)}: {message}")
            after = [t for t in resolves if t >= at]
            took = (after[0] if after else r.now) - at
            verdict, inside = r.verdict(took, at)
            if after and inside:
                well.append(f"Alerts resolved {span(took)} after {action} was applied")
            elif not inside:  # open and still inside: too early to say
                fired = "kept firing" if after else "still fire"
                wrong.append(f"Alerts {fired} {span(took)} after {action} was applied{verdict}")
    return well, wrong


def _proposals(r: Record) -> Facts:
    """How long each proposed change waited for a person."""
    well: list[str] = []
    wrong: list[str] = []
    settled = {
        str(e["proposal"]): e
        for e in r.entries
        if e.get("kind") in ("approved", "rejected") and e.get("proposal")
    }
    for e in (e for e in r.entries if e.get("kind") == "proposed"):
        at, action = _at(e), e.get("action", "a change")
        done = settled.get(str(e.get("proposal")))
        if done is None:
            wrong.append(f"{action} proposed at {_clock(at)}, not approved or rejected")
            continue
        took = _at(done) - at
        verdict, inside = r.verdict(took, at)
        who = done.get("by", "someone")
        text = f"{action} proposed at {_clock(at)}, {done['kind']} by {who} after {span(took)}"
        (well if inside else wrong).append(text + verdict)
    return well, wrong


def _updates(r: Record) -> Facts:
    """The gaps between status messages (and to now, while open) against the cadence of
    the severity in force at the earlier message."""
    well: list[str] = []
    wrong: list[str] = []
    for action, name in CHANNELS.items():
        sent = [
            e
            for e in r.entries
            if e.get("action") == action
            and e.get("kind") in SENT
            and e.get("transition") in MESSAGES
        ]
        ends = [_at(e) for e in sent[1:]] + ([r.now] if r.end is None and sent else [])
        gaps: list[float] = []
        asks: dict[str, str] = {}
        late: list[str] = []
        for earlier, end in zip(sent, ends, strict=False):
            if earlier.get("transition") == "resolved":
                continue  # closed until a reopen: no update was owed meanwhile
            severity = str(earlier.get("severity") or r.severity_at(_at(earlier)))
            every, written = r.limit(severity, "update_every"), r.setting(severity, "update_every")
            if every is None or written is None:
                continue
            gap = end - _at(earlier)
            gaps.append(gap)
            asks[severity] = written
            if gap > every + UPDATE_GRACE:
                late.append(
                    f"A {name.lower()} update was {span(gap - every)} late: {span(gap)} after "
                    f"the one at {_clock(_at(earlier))}, where {severity} asks every {written}"
                )
        if late:
            wrong += late
        elif gaps:
            cadence = "; ".join(f"at least every {w} as {s} asks" for s, w in asks.items())
            longest = span(max(gaps))
            well.append(f"{name} updated {cadence} ({len(sent)} messages, longest gap {longest})")
    return well, wrong


def _troubles(r: Record) -> list[str]:
    """Communication that failed or was retried, alerts that fired again, reopens."""
    wrong: list[str] = []
    retried: dict[str, int] = {}
    for e in r.entries:
        action, kind, at = e.get("action"), e.get("kind"), _at(e)
        if kind == "failed" and action and action not in MITIGATION_ACTIONS:
            wrong.append(
                f"{action} ({e.get('transition')}) failed at {_clock(at)}: {e.get('message')}"
            )
        elif kind == "retried" and action:
            retried[str(action)] = retried.get(str(action), 0) + 1
        elif kind == "alert_refired":
            wrong.append(f"An alert fired again at {_clock(at)}: {e.get('message', '')}")
        elif kind == "reopened":
            wrong.append(f"The incident was reopened at {_clock(at)} by {e.get('by', 'someone')}")
    for action, times in retried.items():
        wrong.append(f"{action} was retried {times} time{'s' if times > 1 else ''}")
    return wrong
