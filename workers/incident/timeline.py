"""The incident timeline: an append-only list of what happened and why.

Entries are plain JSON objects with at least `at`, `kind` and `message`. The
postmortem draft is written from them, so every decision (acted, dry run,
skipped, failed, and the reason) gets one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline

from workers.incident import clock
from workers.incident.keys import Keys

TIMELINE_MAX = 10_000
"""Entries kept per incident; a flapping incident must not grow without bound."""


def utcnow() -> str:
    return clock.now().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds(iso: str) -> float:
    """Seconds since the epoch of an RFC 3339 time; never raises for a stored value.

    Stored times passed the payload's check, but records written before it was
    strict may hold a time without a zone (taken as UTC) or one out of range:
    such a value must not make every later notification of its group fail.
    """
    try:
        at = datetime.fromisoformat(iso.upper().replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        return (at - EPOCH).total_seconds()
    except OverflowError:
        return 0.0


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def entry(kind: str, message: str, *, at: str | None = None, **details: Any) -> dict[str, Any]:
    return {"at": at or utcnow(), "kind": kind, "message": message, **details}


def append(pipe: Pipeline | Redis, keys: Keys, incident_id: str, *entries: dict[str, Any]) -> None:
    """Queue the entries on `pipe` (a MULTI pipeline, so they land with the change)."""
    if not entries:
        return
    key = keys.timeline(incident_id)
    pipe.rpush(key, *(json.dumps(e, sort_keys=True) for e in entries))
    pipe.ltrim(key, -TIMELINE_MAX, -1)


def read(redis: Redis, keys: Keys, incident_id: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis.lrange(keys.timeline(incident_id), 0, -1)]
