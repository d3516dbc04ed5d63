"""What the communication actions reach: the vendors' adapters, built per job from the
environment (workers/handlers.py), and what the actions share."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from workers.chat import Chat
from workers.config import Integrations
from workers.incident.record import AlertState, Incident
from workers.pagerduty import PagerDuty
from workers.slack import Slack
from workers.statuspage import Statuspage


@dataclass(frozen=True)
class Vendors:
    integrations: Integrations
    redis: Redis
    pagerduty: PagerDuty
    statuspage: Statuspage | None
    chat: Chat | None
    webhook: Chat | None = None
    """The generic JSON webhook, if configured (same transport, other body)."""
    slack: Slack | None = None
    """Slack's Web API (war rooms), if a bot token is configured."""


def first_firing(incident: Incident) -> AlertState | None:
    firing = sorted(incident.firing, key=lambda a: a.starts_at)
    return firing[0] if firing else next(iter(incident.alerts.values()), None)


def incident_url(integrations: Integrations, incident: Incident) -> str:
    if not integrations.public_url:
        return ""
    return f"{integrations.public_url}/api/v1/incidents/{incident.id}"


def postmortem_url(integrations: Integrations, incident: Incident) -> str:
    """The incident's postmortem draft on the web page (a person signs in there)."""
    if not integrations.public_url:
        return ""
    return f"{integrations.public_url}/incidents/{incident.id}/postmortem"
