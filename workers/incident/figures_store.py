"""Response figures in Redis: each recorded once per incident into a shared histogram,
and read back for /metrics (webhook/metrics.py) and for a period (`load`).

A histogram lives in one hash per figure (`Keys.figure_histogram`): for each severity
the count of each bucket (not cumulative: a change of BUCKETS keeps the old counts
meaningful), the sum and the count. Every receiver process, replica and worker adds to
the same hash, so a scrape of any of them shows the same numbers. An incident's
figures hash (`Keys.figures`, figure -> seconds) is the once-only marker: `record`
adds to the histogram only when its HSETNX creates the field, in one script, so a
retried job, an HA twin or a second PagerDuty delivery never counts twice. The marker
lives as long as the incident's document (the script copies its expiry).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline

from workers.incident import figures as fig
from workers.incident import timeline
from workers.incident.figures import FIGURES, Figure, Figures
from workers.incident.keys import Keys, text
from workers.incident.record import Incident
from workers.jobs.contract import MITIGATION_ACTIONS
from workers.policy import Policy

BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800)
"""Upper bounds in seconds: 30 s to 7 d. The default policy's response times (5m, 15m, 1h,
1d) are bounds, so `_bucket{le="300"} / _count` is the share within SEV0's."""
MARKER_TTL = 30 * 24 * 3600
"""A marker's expiry when its incident's document is gone (it normally follows it)."""
MAX_INCIDENTS = 5000
"""Incidents a period reads at most (of each of the open and resolved sets, newest first)."""
CHUNK = 500

_RECORD = """
local recorded = 0
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[4], ARGV[2])
  redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
  recorded = 1
end
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
elseif ttl == -1 then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
return recorded
"""


def record(
    pipe: Pipeline | Redis,
    keys: Keys,
    incident_id: str,
    severity: str,
    figure: Figure,
    seconds: float,
) -> None:
    """Add `seconds` to the `figure` histogram of `severity`, unless this incident's
    `figure` is already recorded: one command, atomic on its own or inside the caller's
    MULTI (then it lands with the change that made the figure known)."""
    if figure not in FIGURES:
        raise ValueError(f"expected one of {', '.join(FIGURES)}, got {figure!r}")
    value = f"{max(0.0, seconds):.3f}"
    bound = next((str(b) for b in BUCKETS if seconds <= b), "+Inf")
    marker, histogram = keys.figures(incident_id), keys.figure_histogram(figure)
    fields = (f"{severity}|le:{bound}", f"{severity}|sum", f"{severity}|count")
    args = (figure, value, *fields, MARKER_TTL)
    pipe.eval(_RECORD, 3, marker, histogram, keys.incident(incident_id), *args)


def transition(pipe: Pipeline | Redis, keys: Keys, incident: Incident, name: str | None) -> None:
    """The Writer's: a declaration records time to declare (an incident with alerts), a
    resolve time to resolve (the first: a reopened incident's second is not counted)."""
    if name == "declared":
        seconds = fig.to_declare(incident)
        if seconds is not None:
            record(pipe, keys, incident.id, incident.severity, "declare", seconds)
    elif name == "resolved":
        seconds = fig.since_first_alert(incident, incident.resolved_at or incident.updated_at)
        record(pipe, keys, incident.id, incident.severity, "resolve", seconds)


def acknowledged(pipe: Pipeline | Redis, keys: Keys, incident: Incident, at: datetime) -> None:
    """The incident's first acknowledgement, at `at` (PagerDuty's or a person's)."""
    seconds = fig.since_first_alert(incident, at)
    record(pipe, keys, incident.id, incident.severity, "acknowledge", seconds)


def entry_written(
    pipe: Pipeline | Redis, keys: Keys, incident: Incident, entry: Mapping[str, Any]
) -> None:
    """A job's timeline entry: a mitigation that changed something records time to
    mitigate (the first one); anything else records nothing."""
    if fig.is_mitigation(entry):
        seconds = fig.since_first_alert(incident, str(entry.get("at", "")))
        record(pipe, keys, incident.id, incident.severity, "mitigate", seconds)


@dataclass(frozen=True)
class Histogram:
    """One severity's histogram of one figure, as stored."""

    counts: dict[float, int]
    """Observations by the bucket they fell in (its upper bound; inf: above every one)."""
    count: int
    sum: float

    def cumulative(self, bounds: Iterable[float] = BUCKETS) -> list[tuple[float, int]]:
        """(bound, observations at or under it) for each bound, then (inf, count)."""
        found = [(b, sum(n for at, n in self.counts.items() if at <= b)) for b in bounds]
        return [*found, (float("inf"), self.count)]


def histograms(redis: Redis, keys: Keys) -> dict[Figure, dict[str, Histogram]]:
    """Every figure's histograms by severity (one round trip)."""
    with redis.pipeline(transaction=False) as pipe:
        for figure in FIGURES:
            pipe.hgetall(keys.figure_histogram(figure))
        stored = pipe.execute()
    return {figure: _parse(raw) for figure, raw in zip(FIGURES, stored, strict=True)}


def _parse(raw: Mapping[Any, Any]) -> dict[str, Histogram]:
    counts: dict[str, dict[float, int]] = {}
    totals: dict[str, tuple[int, float]] = {}
    for field, value in raw.items():
        severity, _, part = text(field).rpartition("|")
        count, total = totals.get(severity, (0, 0.0))
        if part.startswith("le:"):
            counts.setdefault(severity, {})[float(part[3:])] = int(value)
        elif part == "count":
            totals[severity] = (int(value), total)
        elif part == "sum":
            totals[severity] = (count, float(value))
    return {
        severity: Histogram(counts.get(severity, {}), *totals.get(severity, (0, 0.0)))
        for severity in sorted(counts.keys() | totals.keys())
    }


@dataclass(frozen=True)
class Period:
    """The figures of the incidents declared in [start, end]."""

    start: datetime
    end: datetime
    figures: list[Figures]
    complete: bool
    """False when resolved incidents of the period may be gone already: the period
    reaches further back than ALERTPILOT_RETENTION."""
    truncated: bool
    """More incidents than MAX_INCIDENTS: the most recent ones were read."""


def load(
    redis: Redis,
    keys: Keys,
    policy: Policy,
    *,
    start: datetime,
    end: datetime,
    retention_seconds: int,
    limit: int = MAX_INCIDENTS,
) -> Period:
    """The figures of every incident declared from `start` to `end`, open or resolved.

    Open incidents are scored by declaration, resolved ones by resolve time (at or
    after declaration), so both sets are read from `start` on and filtered by
    declaration. A resolved incident is kept ALERTPILOT_RETENTION after its resolve,
    so the period is complete only when it begins within that.
    """
    low, high = start.timestamp(), end.timestamp()
    opened = redis.zrevrangebyscore(keys.open_incidents, high, low, start=0, num=limit + 1)
    closed = redis.zrevrangebyscore(keys.resolved_incidents, "+inf", low, start=0, num=limit + 1)
    truncated = len(opened) > limit or len(closed) > limit
    ids = list(dict.fromkeys(text(i) for i in [*opened[:limit], *closed[:limit]]))
    found: list[Figures] = []
    for at in range(0, len(ids), CHUNK):
        found += _figures(redis, keys, policy, ids[at : at + CHUNK], low, high)
    found.sort(key=lambda one: one.declared_at)
    complete = end.timestamp() - low <= retention_seconds
    return Period(start, end, found, complete, truncated)


def _figures(
    redis: Redis, keys: Keys, policy: Policy, ids: list[str], low: float, high: float
) -> list[Figures]:
    """The figures of those of `ids` declared from `low` to `high` (epoch seconds)."""
    docs = redis.mget([keys.incident(i) for i in ids])
    incidents = [Incident.from_json(d) for d in docs if d is not None]
    chosen = [i for i in incidents if low <= timeline.seconds(i.started_at) <= high]
    with redis.pipeline(transaction=False) as pipe:
        for incident in chosen:
            pipe.hget(keys.acknowledgement(incident.id), "acknowledged_at")
            if _needs_timeline(incident):
                pipe.lrange(keys.timeline(incident.id), 0, -1)
        replies = iter(pipe.execute())
    found = []
    for incident in chosen:
        acked = next(replies)
        ack = {"acknowledged_at": text(acked) if acked is not None else None}
        raw = next(replies) if _needs_timeline(incident) else []
        entries = [json.loads(r) for r in raw]
        found.append(fig.incident_figures(incident, entries, ack, policy))
    return found


def _needs_timeline(incident: Incident) -> bool:
    """Only a mitigation's time, or the first resolve of an incident people changed
    (`revision`: a reopen among them), needs the timeline; otherwise the record has
    every time, and a flapping incident's 10,000 entries stay unread."""
    return incident.revision > 0 or any(a in MITIGATION_ACTIONS for a in incident.actions)
