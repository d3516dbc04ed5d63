"""Liveness, readiness and metrics endpoints (no auth: probes and Prometheus scrape them)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from webhook.app_services import services
from webhook.metrics import CONTENT_TYPE_LATEST

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    s = services()
    policy = s.policies.get()
    try:
        s.redis.ping()
        redis_ok = True
    except RedisError:
        redis_ok = False
    body = {
        "status": "ready" if redis_ok else "unavailable",
        "redis": "ok" if redis_ok else "unreachable",
        "policy": {
            "hash": policy.content_hash,
            "routes": len(policy.routes),
            "last_reload_error": s.policies.last_error,
        },
    }
    return jsonify(body), 200 if redis_ok else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    s = services()
    return Response(s.metrics.exposition(s.state), content_type=CONTENT_TYPE_LATEST)
