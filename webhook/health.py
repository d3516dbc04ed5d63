"""Liveness, readiness, metrics, and the authenticated status behind them.

/healthz and /readyz have no auth (probes call them), so they say only alive,
ready or not, and the policy hash. Why the last policy reload was rejected
names the policy file and its parse error: that goes to the log (the policy
store's) and to GET /api/v1/status, which needs the API's credentials.
/metrics is open unless `ALERTPILOT_METRICS_TOKEN` is set; then it needs that
bearer token (docs/metrics.md lists what it exposes).
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from webhook.app_services import Services, authenticated, services
from webhook.errors import Unauthorized
from webhook.metrics import CONTENT_TYPE_LATEST

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    s = services()
    ready = _redis_ok(s)
    body = {
        "status": "ready" if ready else "unavailable",
        "policy": {"hash": s.policies.get().content_hash},
    }
    return jsonify(body), 200 if ready else 503


@blueprint.get("/api/v1/status")
@authenticated
def status() -> Response:
    """What /readyz leaves out; 200 whatever the state (it reports, /readyz decides)."""
    s = services()
    policy = s.policies.get()
    return jsonify(
        {
            "redis": "ok" if _redis_ok(s) else "unreachable",
            "policy": {
                "hash": policy.content_hash,
                "routes": len(policy.routes),
                "last_reload_error": s.policies.last_error,
            },
        }
    )


@blueprint.get("/metrics")
def metrics() -> Response:
    s = services()
    token = s.settings.metrics_token
    if token and not _bearer(request.headers.get("Authorization"), token):
        raise Unauthorized("missing or wrong metrics token", field="Authorization")
    return Response(s.metrics.exposition(s.state), content_type=CONTENT_TYPE_LATEST)


def _redis_ok(s: Services) -> bool:
    try:
        s.redis.ping()
    except RedisError:
        return False
    return True


def _bearer(header: str | None, token: str) -> bool:
    """`header` is `Bearer <token>`, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
