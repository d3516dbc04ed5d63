"""POST /api/v1/pagerduty: PagerDuty webhooks v3 close the loop on a page.

The body is authenticated by `X-PagerDuty-Signature` (HMAC-SHA256 of the raw
body with the subscription's secret; several `v1=` values during a rotation).
PagerDuty retries every non-2xx and delivers at least once, so: 401 and 400 only
for requests that fail the same way every time, 202 for events alertpilot does
not act on, 503 when Redis cannot take the write, and every write idempotent.
alertpilot's incident id is the dedup_key it sent, which PagerDuty echoes as
`data.incident_key`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError, WatchError

from webhook.app_services import Services, services
from webhook.errors import BadRequest, Unauthorized, Unavailable
from workers.incident import figures_store, timeline
from workers.incident.acknowledgement import acknowledged, human
from workers.incident.record import Incident

log = logging.getLogger(__name__)
blueprint = Blueprint("pagerduty_webhook", __name__)

SIGNATURE = "X-PagerDuty-Signature"
ACKNOWLEDGED, RESOLVED = "incident.acknowledged", "incident.resolved"
EVENT_TTL_SECONDS = 7 * 24 * 3600
"""How long a delivered event id is remembered (PagerDuty retries for far less)."""
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class EventError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class Event:
    id: str
    event_type: str
    occurred_at: datetime
    """In UTC."""
    by: str
    pagerduty_incident: str
    incident_key: str | None
    """alertpilot's incident id; None when PagerDuty's incident has no dedup key."""


def verify(body: bytes, header: str | None, secret: str | None) -> bool:
    """True if any `v1=<hex>` in the header is the body's HMAC-SHA256 under `secret`."""
    if not secret or not header:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    given = [p.strip()[3:].lower() for p in header.split(",") if p.strip().startswith("v1=")]
    # Compare with every value (constant time each) so timing does not tell which matched.
    return any([hmac.compare_digest(g.encode(), expected) for g in given])


def parse(body: bytes) -> Event | None:
    """The event, or None for an event type alertpilot does not act on."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise EventError("body", f"body is not valid JSON: {exc}") from None
    event = _get(_get({"body": doc}, "body", dict), "event", dict)
    event_type = _get(event, "event_type", str, "event")
    if event_type not in (ACKNOWLEDGED, RESOLVED):
        return None
    data = _get(event, "data", dict, "event")
    agent = event.get("agent")
    if agent is not None and not isinstance(agent, dict):
        raise EventError("event.agent", "expected an object or null")
    occurred_at = _time(_get(event, "occurred_at", str, "event"))
    key = data.get("incident_key", "")  # missing: 400; null: not an alertpilot incident
    return Event(
        id=_get(event, "id", str, "event"),
        event_type=event_type,
        occurred_at=occurred_at,
        by=_by(agent or {}),
        pagerduty_incident=_get(data, "id", str, "event.data"),
        incident_key=None if key is None else _get(data, "incident_key", str, "event.data"),
    )


def _time(raw: str) -> datetime:
    """`raw` in UTC. A time whose UTC form falls outside years 1..9999
    (`9999-12-31T23:59:59-01:00`) can be parsed but not converted or compared, so it
    is rejected here rather than overflowing once an incident is found."""
    try:
        if not RFC3339.fullmatch(raw):
            raise ValueError(raw)
        return datetime.fromisoformat(raw.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        message = f"expected an RFC 3339 time from year 1 to 9999 in UTC, got {_clip(raw)}"
        raise EventError("event.occurred_at", message) from None


def _by(agent: dict[str, Any]) -> str:
    """Who acted: the agent's summary, else its id, else PagerDuty itself."""
    for name in ("summary", "id"):
        if agent.get(name) not in (None, ""):
            found: str = _get(agent, name, str, "event.agent")
            return found
    return "PagerDuty"


def _get(doc: dict[str, Any], name: str, kind: type, parent: str = "") -> Any:
    value, field = doc.get(name), f"{parent}.{name}" if parent else name
    if value is None or value == "":
        raise EventError(field, f"{field} is missing")
    if not isinstance(value, kind):
        raise EventError(field, f"{field}: expected {'an object' if kind is dict else 'text'}")
    if isinstance(value, str):
        try:  # JSON can carry lone surrogates ("\udc80") that Redis cannot store
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EventError(field, f"{field}: not valid Unicode (lone surrogate)") from None
    return value


def _clip(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:64] + "...")


@blueprint.post("/api/v1/pagerduty")
def pagerduty() -> tuple[Response, int]:
    s = services()
    body = request.get_data(cache=False)
    if not verify(body, request.headers.get(SIGNATURE), s.settings.pagerduty_webhook_secret):
        raise Unauthorized("missing or wrong PagerDuty signature", field=SIGNATURE)
    try:
        event = parse(body)
    except EventError as exc:
        raise BadRequest(exc.message, field=exc.field) from None
    if event is None or event.incident_key is None:
        return jsonify({"status": "ignored"}), 202
    try:
        outcome = _apply(s, event)
    except RedisError as exc:  # WatchError too: still contended after retries
        log.warning("PagerDuty event %s not applied: %s", event.id, type(exc).__name__)
        raise Unavailable("incident store unavailable; retry later") from None
    if outcome is None:
        log.info("PagerDuty %s for unknown incident %r", event.event_type, event.incident_key)
    return jsonify({"status": outcome or "ignored"}), 202 if outcome is None else 200


def _apply(s: Services, event: Event) -> str | None:
    """Record the event once: "recorded", "duplicate", or None for an unknown incident."""
    incident_id, keys = event.incident_key or "", s.keys
    ack = event.event_type == ACKNOWLEDGED
    marker = keys.acknowledgement(incident_id) if ack else keys.pagerduty_event(event.id)
    with s.redis.pipeline() as pipe:
        for _ in range(5):
            try:
                pipe.watch(marker, keys.incident(incident_id))  # type: ignore[no-untyped-call]
                raw = pipe.get(keys.incident(incident_id))
                ttl = int(pipe.ttl(keys.incident(incident_id)))
                if raw is None:
                    return None
                if pipe.exists(marker):
                    return "duplicate"
                incident = Incident.from_json(raw)
                first = acknowledged(incident, s.policies.get(), event.occurred_at, event.by)
                message = f"resolved in PagerDuty by {event.by}"
                if ack:
                    message = (
                        f"acknowledged in PagerDuty by {event.by} after {human(first.seconds)}"
                        f" ({first.verdict})"
                    )
                pipe.multi()
                if ack:  # the first acknowledgement only; it lives as long as the incident
                    fields = first.fields(
                        pagerduty_incident=event.pagerduty_incident, event_id=event.id
                    )
                    pipe.hset(marker, mapping=fields)
                    pipe.expire(marker, ttl if ttl > 0 else s.settings.retention_seconds)
                    figures_store.acknowledged(pipe, keys, incident, first.at)
                else:
                    pipe.set(marker, "1", ex=EVENT_TTL_SECONDS)
                kind = "acknowledged" if ack else "pagerduty_resolved"
                entry = timeline.entry(
                    kind, message, by=event.by, pagerduty_incident=event.pagerduty_incident
                )
                timeline.append(pipe, keys, incident_id, entry)
                pipe.execute()
            except WatchError:
                continue
            if ack:
                s.metrics.acknowledged(incident.severity, first)
            return "recorded"
    raise WatchError("contended")
