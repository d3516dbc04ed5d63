"""GET /api/v1/figures?since=7d: the response figures of the incidents declared in a
period, per severity (workers/incident/figures.py): time to declare, acknowledge,
mitigate and resolve from the first alert's startsAt (median and p90, nearest rank),
and the share of acknowledgements within the severity's response time.

Any person may read it. `since` is a duration from 1h to 90d (default 7d), in the
policy's duration syntax (`1h`, `36h`, `7d`, `2w`); anything else, an unknown
parameter or one given twice is a 400 naming it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from webhook.app_services import Services, authenticated, services
from webhook.errors import BadRequest, Unavailable
from workers.incident import clock, figures_store
from workers.incident.durations import DurationError, parse_duration
from workers.incident.figures import period_figures

blueprint = Blueprint("figures", __name__, url_prefix="/api/v1")

DEFAULT_SINCE = "7d"
MIN_SINCE = 3600
MAX_SINCE = 90 * 86400
"""ALERTPILOT_RETENTION's default: resolved incidents older than it are gone."""
SINCE = re.compile(r"(?:[0-9]{1,6}(?:ms|s|m|h|d|w)){1,6}", re.ASCII)
"""What the parser takes at most: short, ASCII digits, a unit after each number."""


@blueprint.get("/figures")
@authenticated
def figures_view() -> Response:
    s = services()
    text = _since_text()
    return jsonify({"since": text, **period_view(s, _since(text))})


def period_view(s: Services, since: int) -> dict[str, Any]:
    """The response figures of the incidents declared in the last `since` seconds, per
    severity (the API's answer, and the web page's table)."""
    end = clock.now().astimezone(UTC)
    start = end - timedelta(seconds=since)
    policy = s.policies.get()
    try:
        period = figures_store.load(
            s.redis,
            s.keys,
            policy,
            start=start,
            end=end,
            retention_seconds=s.settings.retention_seconds,
        )
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    severities: dict[str, Any] = {}
    for name, found in period_figures(period.figures, list(policy.severities)).items():
        severity = policy.severities.get(name)
        response_time = severity.response_time if severity else None
        severities[name] = {"response_time": response_time, **found.as_json()}
    return {
        "from": _iso(start),
        "to": _iso(end),
        "complete": period.complete,
        "truncated": period.truncated,
        "incidents": len(period.figures),
        "severities": severities,
    }


def _since_text() -> str:
    """The one query parameter, `since`, given once at most."""
    found: str | None = None
    for name, value in request.args.items(multi=True):
        if name != "since":
            raise BadRequest(f"unknown query parameter {_clip(name)}", field=name[:64])
        if found is not None:
            raise BadRequest("since given more than once", field="since")
        found = value
    return DEFAULT_SINCE if found is None else found


def _since(text: str) -> int:
    """Seconds of `text`, a duration from 1h to 90d."""
    expected = f"expected a duration from 1h to 90d (like 1h, 36h, 7d), got {_clip(text)}"
    if not SINCE.fullmatch(text):
        raise BadRequest(expected, field="since")
    try:
        seconds = parse_duration(text).total_seconds()
    except DurationError:
        raise BadRequest(expected, field="since") from None
    if not MIN_SINCE <= seconds <= MAX_SINCE:
        raise BadRequest(expected, field="since")
    return int(seconds)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clip(value: str) -> str:
    """The value for an error message, cut short."""
    return repr(value if len(value) <= 64 else value[:64] + "...")
