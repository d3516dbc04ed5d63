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
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import Redis

from workers.incident.alerts import Alert, Notification
from workers.incident.keys import Keys

_SECRET_QUERY = re.compile(r"token|key|secret|passw|auth|sig|credential|session", re.IGNORECASE)


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
    # Not dataclasses.asdict: it deep-copies every label (json.dumps only reads them).
    return {
        "status": alert.status,
        "labels": alert.labels,
        "annotations": _clean(alert.annotations),
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at or "0001-01-01T00:00:00Z",
        "generatorURL": strip_credentials(alert.generator_url),
        "fingerprint": alert.fingerprint,
    }


def strip_credentials(text: str) -> str:
    """A URL without user:password@ and without query parameters named like secrets.

    Anything that is not an http(s) URL is kept as sent (label values are data).
    """
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return text
    host = parts.netloc.rpartition("@")[2]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    kept = urlencode([(k, v) for k, v in query if not _SECRET_QUERY.search(k)])
    return urlunsplit((parts.scheme, host, parts.path, kept, parts.fragment))


def _clean(values: dict[str, str]) -> dict[str, str]:
    return {key: strip_credentials(value) for key, value in values.items()}


_KEEP = """
local count, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
if string.len(ARGV[1]) > budget then
  return -1
end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], 0)
end
local total = redis.call('INCRBY', KEYS[2], string.len(ARGV[1]))
redis.call('LPUSH', KEYS[1], ARGV[1])
while redis.call('LLEN', KEYS[1]) > count or total > budget do
  local dropped = redis.call('RPOP', KEYS[1])
  if not dropped then
    redis.call('SET', KEYS[2], 0)
    return 0
  end
  total = redis.call('DECRBY', KEYS[2], string.len(dropped))
end
if total < 0 or redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], 0)
  total = 0
end
return total
"""


def keep(pipe: Any, keys: Keys, record: str, count: int, budget: int) -> None:
    """Record `record` (newest first) and drop the oldest until at most `count` are kept
    and their bytes (kept in `keys.replay_bytes`) are at most `budget`: one command, run
    atomically inside the intake's transaction. A record larger than `budget` alone
    is not kept (and drops nothing). The byte count starts again from 0 whenever the
    list is empty, so a count that went wrong heals."""
    pipe.eval(_KEEP, 2, keys.replay, keys.replay_bytes, record, count, budget)


def size(redis: Redis, keys: Keys) -> int:
    """Bytes the recorded notifications take now."""
    return int(redis.get(keys.replay_bytes) or 0)


def export(redis: Redis, keys: Keys, out: TextIO) -> int:
    """Write the recorded notifications, oldest first, one per line; return how many."""
    lines = redis.lrange(keys.replay, 0, -1)
    for raw in reversed(lines):
        out.write((raw.decode() if isinstance(raw, bytes) else raw) + "\n")
    return len(lines)
