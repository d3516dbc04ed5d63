"""The first acknowledgement of an incident: who, when, and whether within the
severity's response time. PagerDuty's webhook (webhook/pagerduty_webhook.py) and a
person's `acknowledge` command (workers/incident/commands.py) both record it here;
only the first one counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.typing import EncodableT, FieldT

from workers.incident.durations import parse_duration
from workers.incident.record import Incident
from workers.policy import Policy


@dataclass(frozen=True)
class Acknowledgement:
    at: datetime
    """In UTC."""
    by: str
    seconds: float
    """From declared to acknowledged."""
    within: bool | None
    """Within the severity's response time (None: the severity is not in the policy)."""
    verdict: str

    def fields(self, **extra: str) -> dict[FieldT, EncodableT]:
        """The acknowledgement hash (keys.acknowledgement) as stored."""
        at = self.at.astimezone(UTC).isoformat(timespec="milliseconds")
        found: dict[FieldT, EncodableT] = {
            "acknowledged_at": at.replace("+00:00", "Z"),
            "acknowledged_by": self.by,
            "time_to_acknowledge_seconds": f"{self.seconds:.3f}",
            "within": "" if self.within is None else str(self.within).lower(),
        }
        found.update(extra)
        return found


def acknowledged(incident: Incident, policy: Policy, at: datetime, by: str) -> Acknowledgement:
    started = datetime.fromisoformat(incident.started_at)
    seconds = max(0.0, (at - started).total_seconds())
    severity = policy.severities.get(incident.severity)
    within, verdict = None, f"{incident.severity} is not in the policy"
    if severity is not None:
        within = seconds <= parse_duration(severity.response_time).total_seconds()
        verdict = f"{incident.severity} response time {severity.response_time}: " + (
            "within" if within else "missed"
        )
    return Acknowledgement(at.astimezone(UTC), by, seconds, within, verdict)


def human(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"
