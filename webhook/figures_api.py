"""GET /api/v1/figures?since=7d: the response figures of the incidents declared in a
period, per severity (workers/incident/figures.py): time to declare, acknowledge,
mitigate and resolve from the first alert's startsAt (median and p90, nearest rank),
and the share of acknowledgements within the severity's response time.

Any person may read it. `since` is a duration from 1h to 90d (default 7d), in the
policy's duration syntax (`1h`, `36h`, `7d`, `2w`); anything else, an unknown
parameter or one given twice is a 400 naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from webhook.app_services import Services, authenticated, services
from webhook.errors import Unavailable
from webhook.oncall_api import query_since, since_of
from workers.incident import clock, figures_store
from workers.incident.figures import period_figures
from workers.oncall import parse_since

blueprint = Blueprint("figures", __name__, url_prefix="/api/v1")


@blueprint.get("/figures")
@authenticated
def figures_view() -> Response:
    s = services()
    text = since_of(query_since())  # a period as the on-call handoff takes it
    return jsonify({"since": text, **period_view(s, int(parse_since(text).total_seconds()))})


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


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
