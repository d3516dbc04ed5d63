"""What both sides of the on-call handoff share around the report (workers/oncall.py):
`gather`, its inputs read from Redis (the API's synchronous report, the worker's job);
the job's payload (`HandoffRequest`, `RUN_HANDOFF`); and the key and expiry of the
report a job stored. No Kubernetes here: the web process imports this.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis

from workers.approvals import Proposal, pending
from workers.incident.keys import Keys, text
from workers.incident.record import Incident
from workers.oncall import DEFAULT_SINCE, FLAKY_AFTER, MAX_SINCE, in_period, parse_since

LOOKBACK = MAX_SINCE
"""Resolved incidents read for overdue postmortems and open follow-ups, whatever the
period: one resolved long ago still waits for its person."""
MAX_INCIDENTS = 2000
"""Open, and resolved, incidents read at most (the newest)."""
MAX_ENTRIES = 1000
"""Of one incident's timeline, the newest entries read (a timeline keeps up to 10,000)."""
MAX_TIMELINES = 500
"""Incidents of the period whose timelines are read (the newest): together with
MAX_ENTRIES, a handoff reads at most half a million entries, in the receiver's request
as in the worker's job. Beyond them the report says it is truncated."""


@dataclass(frozen=True)
class Gathered:
    """What `build_report` reads, from Redis."""

    incidents: list[Incident]
    entries_by_id: dict[str, list[dict[str, Any]]]
    acks_by_id: dict[str, dict[str, Any]]
    proposals: list[Proposal]
    truncated: bool = False
    """More than MAX_INCIDENTS open or resolved incidents, MAX_TIMELINES in the period, or
    MAX_ENTRIES in one timeline: the newest were read."""


def gather(redis: Redis, keys: Keys, now: datetime, since: timedelta) -> Gathered:
    """Open incidents, those resolved in the last LOOKBACK (newest first, MAX_INCIDENTS
    of each), the timelines and acknowledgements of the period's, pending proposals."""
    start = (now - since).timestamp()
    opened = redis.zrevrange(keys.open_incidents, 0, MAX_INCIDENTS)
    low = now.timestamp() - LOOKBACK
    closed = redis.zrevrangebyscore(
        keys.resolved_incidents, "+inf", low, start=0, num=MAX_INCIDENTS + 1
    )
    truncated = len(opened) > MAX_INCIDENTS or len(closed) > MAX_INCIDENTS
    ids = list(dict.fromkeys(text(i) for i in [*opened[:MAX_INCIDENTS], *closed[:MAX_INCIDENTS]]))
    docs = redis.mget([keys.incident(i) for i in ids]) if ids else []
    incidents = [Incident.from_json(d) for d in docs if d is not None]
    period = [i for i in incidents if in_period(i, start)]
    newest = sorted(period, key=lambda i: i.started_at, reverse=True)[:MAX_TIMELINES]
    read = {i.id for i in newest}
    truncated = truncated or len(period) > len(read)
    with redis.pipeline(transaction=False) as pipe:
        for incident in period:
            if incident.id in read:
                pipe.llen(keys.timeline(incident.id))
                pipe.lrange(keys.timeline(incident.id), -MAX_ENTRIES, -1)
            pipe.hgetall(keys.acknowledgement(incident.id))
        replies = iter(pipe.execute())
    entries, acks = {}, {}
    for incident in period:
        if incident.id in read:
            truncated = truncated or int(next(replies)) > MAX_ENTRIES
            entries[incident.id] = [json.loads(raw) for raw in next(replies)]
        ack = {text(k): text(v) for k, v in next(replies).items()}
        acks[incident.id] = {
            "acknowledged_at": ack.get("acknowledged_at"),
            "acknowledged_by": ack.get("acknowledged_by"),
        }
    return Gathered(incidents, entries, acks, pending(redis, keys), truncated)


RUN_HANDOFF = "workers.entry.run_handoff"
REPORT_TTL = 7 * 86400
REPORT_ID = re.compile(r"[0-9a-f]{16}", re.ASCII)


def report_key(keys: Keys, report_id: str) -> str:
    """JSON {id, by, report, markdown, chat} of a report a job built (REPORT_TTL)."""
    return f"{keys.prefix}handoff:{report_id}"


def report_path(report_id: str) -> str:
    """Where the API serves it (GET; 404 until the job stored it)."""
    return f"/api/v1/handoff/{report_id}"


def save(redis: Redis, keys: Keys, report_id: str, stored: Mapping[str, Any]) -> None:
    redis.set(report_key(keys, report_id), json.dumps(stored, sort_keys=True), ex=REPORT_TTL)


def saved(redis: Redis, keys: Keys, report_id: str) -> dict[str, Any] | None:
    """The stored report, or None: not built yet, expired, or never asked for."""
    raw = redis.get(report_key(keys, report_id))
    if raw is None:
        return None
    found: dict[str, Any] = json.loads(raw)
    return found


@dataclass(frozen=True)
class HandoffRequest:
    """The payload of a `RUN_HANDOFF` job: build the report of `since` with rollouts,
    store it under `report_key(report_id)`, and with `post` send it to chat."""

    prefix: str
    report_id: str
    since: str = DEFAULT_SINCE
    post: bool = False
    by: str = ""
    flaky_after: int = FLAKY_AFTER

    @property
    def job_id(self) -> str:
        return f"handoff-{self.report_id}"

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HandoffRequest:
        """ValueError for a payload that is not one (a field missing, of a wrong type,
        an id that is not REPORT_ID, or a `since` out of bounds)."""
        known = {name: doc[name] for name in cls.__dataclass_fields__ if name in doc}
        try:
            found = cls(**known)
        except TypeError as exc:  # a required field missing
            raise ValueError(str(exc)) from None
        typed = (str, str, str, bool, str, int)
        for name, kind in zip(cls.__dataclass_fields__, typed, strict=True):
            value = getattr(found, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{name}: expected {kind.__name__}, got {value!r}")
        if not REPORT_ID.fullmatch(found.report_id):
            raise ValueError(f"report_id: expected 16 hex digits, got {found.report_id!r}")
        parse_since(found.since)
        return found
