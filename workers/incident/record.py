"""The incident record as stored in Redis, and the reads both sides share.

The webhook writes incidents at intake (webhook/intake.py); workers and the
read API only read them. One JSON document per incident keeps a transition a
single atomic write under WATCH/MULTI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from redis import Redis

from workers.incident.keys import Keys, text

IncidentStatus = Literal["open", "resolved"]
Phase = Literal["investigating", "identified", "monitoring"]
PHASES: tuple[Phase, ...] = ("investigating", "identified", "monitoring")
"""Where an open incident's response is (people set it); the status page's status too."""
ROLES = ("ic", "scribe", "comms_lead", "sme", "liaison")
"""Incident roles: commander, scribe, communications lead, subject-matter experts (any
number), executive liaison. The others are held by one person at a time."""
AlertStatus = Literal["firing", "resolved"]


@dataclass(frozen=True)
class AlertState:
    """One alert of an incident, keyed by Alertmanager's fingerprint."""

    fingerprint: str
    status: AlertStatus
    starts_at: str
    ends_at: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    severity: str
    route: str
    resolved_seen_at: str | None = None
    """When alertpilot first saw this instance resolved (its clock, not Alertmanager's)."""
    group_key: str = ""
    """The Alertmanager group it came in ("" in records older than this field: such an
    alert is never taken as having left its group)."""
    left: bool = False
    """Ended by leaving its group (silenced, inhibited, relabelled), not by a resolve."""


@dataclass(frozen=True)
class Incident:
    id: str
    key: str
    route: str
    severity: str
    status: IncidentStatus
    started_at: str
    resolved_at: str | None
    updated_at: str
    title: str
    group_key: str
    receiver: str
    external_url: str
    alerts: dict[str, AlertState] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    """Action names enqueued so far, so escalation and resolve know what ran."""
    dry_run: bool = False
    """A route of this incident asked for dry run; its resolve jobs stay in dry run too."""
    action_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Parameters of each action queued, so resolve jobs carry them too (routing keys)."""
    phase: Phase = "investigating"
    roles: dict[str, list[str]] = field(default_factory=dict)
    """Role (of ROLES) to the names of the people holding it."""
    contacts: dict[str, str] = field(default_factory=dict)
    """Slack user ids of the people holding roles, by name (from the users file when they
    were assigned): whom the war room invites."""
    revision: int = 0
    """People's commands that queued jobs so far: their job ids' tag, so a second
    escalation to the same severity, after a downgrade, is a new one."""
    follow_ups: list[dict[str, str]] = field(default_factory=list)
    """Action items, in the order added: {id ("F1"...), text, owner, due (YYYY-MM-DD),
    priority (P0..P3), by, at, and done_at once done}."""
    postmortem: dict[str, str] = field(default_factory=dict)
    """{due_at} once resolved when the severity asks for one (`postmortem_within`);
    {done_at, done_by, url} once a person says it is written."""

    @property
    def firing(self) -> list[AlertState]:
        return [a for a in self.alerts.values() if a.status == "firing"]

    def with_changes(self, **changes: Any) -> Incident:
        return replace(self, **changes)

    def to_json(self) -> str:
        # Not dataclasses.asdict: it deep-copies every value, a fifth of a new alert's
        # intake time; json.dumps reads these as they are.
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["alerts"] = {fp: vars(alert) for fp, alert in self.alerts.items()}
        doc["actions"] = list(self.actions)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Incident:
        doc = json.loads(text)
        alerts = {fp: AlertState(**a) for fp, a in doc.pop("alerts").items()}
        actions = tuple(doc.pop("actions"))
        return cls(**doc, alerts=alerts, actions=actions)


def load_incident(redis: Redis, keys: Keys, incident_id: str) -> Incident | None:
    raw = redis.get(keys.incident(incident_id))
    return Incident.from_json(raw) if raw is not None else None


def list_incidents(
    redis: Redis, keys: Keys, *, status: IncidentStatus | None = None, limit: int = 100
) -> list[Incident]:
    """Open incidents first (newest first), then recently resolved ones."""
    ids: list[str] = []
    if status in (None, "open"):
        ids += _ids(redis.zrevrange(keys.open_incidents, 0, limit - 1))
    if status in (None, "resolved") and len(ids) < limit:
        ids += _ids(redis.zrevrange(keys.resolved_incidents, 0, limit - len(ids) - 1))
    if not ids:
        return []
    docs = redis.mget([keys.incident(i) for i in ids])
    return [Incident.from_json(d) for d in docs if d is not None]


def open_counts_by_severity(redis: Redis, keys: Keys) -> dict[str, int]:
    ids = _ids(redis.zrange(keys.open_incidents, 0, -1))
    counts: dict[str, int] = {}
    for raw in redis.mget([keys.incident(i) for i in ids]) if ids else []:
        if raw is not None:
            severity = Incident.from_json(raw).severity
            counts[severity] = counts.get(severity, 0) + 1
    return counts


def _ids(raw: Any) -> list[str]:
    return [text(i) for i in raw]


def acknowledgement(redis: Redis, keys: Keys, incident_id: str) -> dict[str, Any]:
    """The acknowledgement fields of the incident API (None before any acknowledgement)."""
    ack = {text(k): text(v) for k, v in redis.hgetall(keys.acknowledgement(incident_id)).items()}
    seconds, within = ack.get("time_to_acknowledge_seconds"), ack.get("within")
    return {
        "acknowledged_at": ack.get("acknowledged_at"),
        "acknowledged_by": ack.get("acknowledged_by"),
        "time_to_acknowledge_seconds": float(seconds) if seconds else None,
        "acknowledged_within_response_time": {"true": True, "false": False}.get(within or ""),
    }
