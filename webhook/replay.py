"""Recording accepted notifications for `policy diff --replay`, and exporting them.

The receiver keeps the last N accepted notifications (ALERTPILOT_REPLAY_SIZE,
in Redis, written in the same transaction as their effect). They are stored as
Alertmanager v4 JSON rebuilt from the parsed notification, so nothing that
came with the request (headers, credentials) is kept, and credentials inside
URLs (`https://user:pass@host`) are removed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any, TextIO

from redis import Redis

from webhook.payload import Alert, Notification
from workers.keys import Keys

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def record(notification: Notification) -> str:
    """One JSON line, secrets-free, that `payload.parse` reads back to the same alerts."""
    doc = {
        "version": notification.version,
        "groupKey": notification.group_key,
        "truncatedAlerts": notification.truncated_alerts,
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": notification.group_labels,
        "commonLabels": notification.common_labels,
        "commonAnnotations": _clean(notification.common_annotations),
        "externalURL": strip_credentials(notification.external_url),
        "alerts": [_alert(a) for a in notification.alerts],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _alert(alert: Alert) -> dict[str, Any]:
    doc = asdict(alert)
    return {
        "status": doc["status"],
        "labels": doc["labels"],
        "annotations": _clean(doc["annotations"]),
        "startsAt": doc["starts_at"],
        "endsAt": doc["ends_at"] or "0001-01-01T00:00:00Z",
        "generatorURL": strip_credentials(doc["generator_url"]),
        "fingerprint": doc["fingerprint"],
    }


def strip_credentials(text: str) -> str:
    return _USERINFO.sub(r"\g<scheme>", text)


def _clean(values: dict[str, str]) -> dict[str, str]:
    return {key: strip_credentials(value) for key, value in values.items()}


def export(redis: Redis, keys: Keys, out: TextIO) -> int:
    """Write the recorded notifications, oldest first, one per line; return how many."""
    lines = redis.lrange(keys.replay, 0, -1)
    for raw in reversed(lines):
        out.write((raw.decode() if isinstance(raw, bytes) else raw) + "\n")
    return len(lines)
