"""Response figures: how long an incident took to be declared, acknowledged, mitigated
and resolved, counted from its first alert's startsAt (when Prometheus saw the problem
begin), not from declaration, which `group_wait`, `page_after` and the rule's `for:`
already put minutes after it. Pure: the stored incident, its timeline and its
acknowledgement in, numbers out (workers/incident/figures_store.py reads and writes
them in Redis).

Each time is its first occurrence: the first acknowledgement, the first mitigation
that changed something, the first resolve (a reopened incident keeps it). So a figure,
once known, never changes, and the histograms, recorded once when a figure becomes
known, hold the same values as the period figures. Their severity may differ: a
histogram counts a figure under the severity the incident had when the figure became
known (a Prometheus counter cannot move to another label afterwards), the period
figures under the incident's severity now. After an escalation, the declaration is a
SEV2 sample in /metrics and a SEV1 figure in GET /api/v1/figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from workers.incident.durations import parse_duration
from workers.incident.record import AlertState, Incident
from workers.incident.timeline import EPOCH, seconds
from workers.jobs.contract import MITIGATION_ACTIONS
from workers.policy import Policy

Figure = Literal["declare", "acknowledge", "mitigate", "resolve"]
FIGURES: tuple[Figure, ...] = ("declare", "acknowledge", "mitigate", "resolve")
MITIGATING = ("declared", "escalated")
"""Transitions whose mitigation jobs act (a "resolved" one is a revert)."""


@dataclass(frozen=True)
class Figures:
    """One incident's times, in UTC, and the seconds from its first alert to each."""

    incident_id: str
    severity: str
    """Its severity now (after any escalation): the one whose response time it is held to."""
    first_alert_at: datetime
    """The earliest startsAt of its alerts, never after declaration (a clock ahead of
    alertpilot's); the declaration itself when a person declared it without alerts."""
    declared_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    to_declare: float | None
    """None when a person declared it without alerts: nothing to measure from."""
    to_acknowledge: float | None
    to_mitigate: float | None
    to_resolve: float | None
    within: bool | None
    """Acknowledged within the severity's response time, from the first alert; None when
    not acknowledged or the severity is not in the policy."""

    def seconds(self, figure: Figure) -> float | None:
        return {
            "declare": self.to_declare,
            "acknowledge": self.to_acknowledge,
            "mitigate": self.to_mitigate,
            "resolve": self.to_resolve,
        }[figure]


EARLIEST_START = datetime(2000, 1, 1, tzinfo=UTC)
"""A startsAt before this is no time an alert began: Go's zero time (0001-01-01) is what
Alertmanager sends for an unset one. Such a start is unknown, not 2,000 years long."""


def alert_start(alert: AlertState) -> datetime | None:
    """The alert's startsAt, when it is a time an alert can have begun."""
    start = _at(alert.starts_at)
    return start if start >= EARLIEST_START else None


def first_alert_at(incident: Incident) -> datetime:
    """When the incident's problem began: its earliest alert's startsAt, never after its
    declaration. An alert that resolved and fired again inside the incident carries its
    new startsAt; the others (and the bound) keep the figure from moving later."""
    declared = _at(incident.started_at)
    starts = [t for a in incident.alerts.values() if (t := alert_start(a)) is not None]
    return min([*starts, declared])


def since_first_alert(incident: Incident, at: datetime | str) -> float:
    """Seconds from the first alert to `at` (a stored time or a datetime), at least 0."""
    moment = _at(at) if isinstance(at, str) else at
    return max(0.0, (moment - first_alert_at(incident)).total_seconds())


def to_declare(incident: Incident) -> float | None:
    """Seconds from the first alert to declaration; None without alerts."""
    return since_first_alert(incident, incident.started_at) if incident.alerts else None


def is_mitigation(entry: Mapping[str, Any]) -> bool:
    """A timeline entry of a mitigation that changed something: succeeded, by a mitigation
    action, for a declared or escalated incident. A dry run ("dry_run"), a proposal, a
    block and a revert (transition "resolved") are not."""
    return (
        entry.get("kind") == "succeeded"
        and entry.get("action") in MITIGATION_ACTIONS
        and entry.get("transition") in MITIGATING
    )


def incident_figures(
    incident: Incident,
    entries: Iterable[Mapping[str, Any]],
    ack: Mapping[str, Any],
    policy: Policy,
) -> Figures:
    """The incident's figures from its timeline `entries` and `ack` (the acknowledgement
    fields of record.acknowledgement: `acknowledged_at`, None before any)."""
    declared = _at(incident.started_at)
    first = first_alert_at(incident)
    acked = _at(ack["acknowledged_at"]) if ack.get("acknowledged_at") else None
    mitigated = resolved = None
    for entry in entries:
        if mitigated is None and is_mitigation(entry):
            mitigated = _at(str(entry.get("at", "")))
        elif resolved is None and entry.get("kind") == "resolved":
            resolved = _at(str(entry.get("at", "")))
    if resolved is None and incident.resolved_at:
        resolved = _at(incident.resolved_at)  # its entry trimmed off a very long timeline

    def since(at: datetime | None) -> float | None:
        return None if at is None else max(0.0, (at - first).total_seconds())

    acknowledge = since(acked)
    return Figures(
        incident_id=incident.id,
        severity=incident.severity,
        first_alert_at=first,
        declared_at=declared,
        acknowledged_at=acked,
        mitigated_at=mitigated,
        resolved_at=resolved,
        to_declare=to_declare(incident),
        to_acknowledge=acknowledge,
        to_mitigate=since(mitigated),
        to_resolve=since(resolved),
        within=_within(acknowledge, incident.severity, policy),
    )


def _within(acknowledge: float | None, severity: str, policy: Policy) -> bool | None:
    found = policy.severities.get(severity)
    if acknowledge is None or found is None:
        return None
    return acknowledge <= parse_duration(found.response_time).total_seconds()


@dataclass(frozen=True)
class Spread:
    """One time over a period's incidents that have it."""

    count: int
    median: float | None
    """Nearest rank (see `percentile`); None when no incident has this time."""
    p90: float | None

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "median": self.median, "p90": self.p90}


@dataclass(frozen=True)
class SeverityFigures:
    """One severity's figures over a period."""

    count: int
    """Incidents of the severity in the period."""
    times: dict[Figure, Spread]
    acknowledged: int
    """Acknowledged, with a verdict: the share's denominator."""
    within: int
    share_within: float | None
    """within / acknowledged; None when none was acknowledged."""

    def as_json(self) -> dict[str, Any]:
        return {
            "incidents": self.count,
            **{f"time_to_{f}_seconds": self.times[f].as_json() for f in FIGURES},
            "acknowledged": self.acknowledged,
            "acknowledged_within": self.within,
            "share_within": self.share_within,
        }


def period_figures(
    found: Iterable[Figures], severities: Sequence[str] = ()
) -> dict[str, SeverityFigures]:
    """Per severity: every one of `severities` (the policy's, in its order, zero
    included), then any other the incidents have, sorted."""
    by_severity: dict[str, list[Figures]] = {name: [] for name in severities}
    others: dict[str, list[Figures]] = {}
    for one in found:
        (by_severity if one.severity in by_severity else others).setdefault(
            one.severity, []
        ).append(one)
    by_severity.update(sorted(others.items()))
    return {name: _severity(group) for name, group in by_severity.items()}


def _severity(group: list[Figures]) -> SeverityFigures:
    times = {}
    for figure in FIGURES:
        values = [v for v in (one.seconds(figure) for one in group) if v is not None]
        times[figure] = Spread(len(values), percentile(values, 50), percentile(values, 90))
    verdicts = [one.within for one in group if one.within is not None]
    within = sum(verdicts)
    share = within / len(verdicts) if verdicts else None
    return SeverityFigures(len(group), times, len(verdicts), within, share)


def percentile(values: Sequence[float], p: int) -> float | None:
    """The nearest-rank `p`th percentile (1..100): the smallest value with at least p% of
    the values at or below it, always one of them: rank ceil(p n / 100) of the sorted
    values. So the median (50) of an even count is the lower middle value, the p90 of
    10 values the 9th and of fewer than 10 the largest. None for no values."""
    if not 1 <= p <= 100:
        raise ValueError(f"a percentile is 1 to 100, got {p!r}")
    if not values:
        return None
    rank = -(-p * len(values) // 100)  # ceil(p n / 100), in integers
    return sorted(values)[rank - 1]


def _at(stored: str) -> datetime:
    """A stored time as a UTC datetime (timeline.seconds: never raises)."""
    return EPOCH + timedelta(seconds=seconds(stored))
