"""The Flask app factory: wires settings, Redis, queue, policy and metrics into the views."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from werkzeug.exceptions import HTTPException

from webhook import (
    api,
    approvals_api,
    commands_api,
    figures_api,
    health,
    mitigations_api,
    oncall_api,
    openapi,
    pagerduty_webhook,
    postmortem_api,
    receiver,
    runbooks_api,
    slack_commands,
    web,
)
from webhook.app_services import Services
from webhook.errors import ApiError, envelope
from webhook.intake import Intake, Limits
from webhook.metrics import Metrics, RedisStateCollector
from webhook.users import UsersFile
from workers.config import Settings
from workers.incident.commands import Commands
from workers.incident.keys import Keys
from workers.incident.writer import Writer
from workers.policy.store import PolicyStore
from workers.redis_connection import connect

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    registry: CollectorRegistry | None = None,
) -> Flask:
    """Build the app. `redis` defaults to `settings.redis_url`'s; tests pass their own."""
    if redis is None:
        if settings.redis_url is None:
            raise ValueError("REDIS_URL is not set")
        redis = connect(settings, socket_timeout=5, socket_connect_timeout=2)
    keys = Keys(settings.key_prefix)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    metrics = Metrics(registry or CollectorRegistry())
    policies = PolicyStore(settings.policies_dir, on_reload=metrics.policy_reloaded)
    services = Services(
        settings=settings,
        redis=redis,
        keys=keys,
        queue=queue,
        policies=policies,
        metrics=metrics,
        state=RedisStateCollector(redis, keys, lambda: policies.get().severities, queue=queue),
        users=UsersFile(settings.users_file),
        commands=Commands(redis, Writer(keys, queue, settings.retention_seconds), policies.get),
        intake=Intake(
            redis=redis,
            queue=queue,
            keys=keys,
            policy=policies.get,
            limits=Limits(
                dedup_ttl_seconds=settings.dedup_ttl_seconds,
                stale_window_seconds=settings.stale_window_seconds,
                retention_seconds=settings.retention_seconds,
                replay_size=settings.replay_size,
                replay_max_bytes=settings.replay_max_bytes,
                resend_cache_seconds=settings.resend_cache_seconds,
                wait_replicas=settings.redis_wait_replicas,
                wait_timeout_ms=round(settings.redis_wait_timeout_seconds * 1000),
            ),
            dry_run=settings.dry_run,
        ),
    )
    app = Flask(__name__)
    # One byte over the limit: werkzeug truncates a chunked body at MAX_CONTENT_LENGTH
    # instead of failing, so the receiver reads limit + 1 bytes and checks the length.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["alertpilot"] = services
    app.register_blueprint(receiver.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(pagerduty_webhook.blueprint)
    app.register_blueprint(approvals_api.blueprint)
    app.register_blueprint(commands_api.blueprint)
    app.register_blueprint(mitigations_api.blueprint)
    app.register_blueprint(runbooks_api.blueprint)
    app.register_blueprint(postmortem_api.blueprint)
    app.register_blueprint(oncall_api.blueprint)
    app.register_blueprint(figures_api.blueprint)
    app.register_blueprint(slack_commands.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(web.blueprint)
    _observe(app, services.metrics)
    _errors(app)
    return app


def _observe(app: Flask, metrics: Metrics) -> None:
    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.request_seconds.labels(request.method, endpoint, str(response.status_code)).observe(
            elapsed
        )
        return response


def _errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        response = envelope(error.code or 500, code, error.description or error.name)
        for name, value in error.get_headers():  # a 405's Allow (RFC 9110), for one
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return envelope(500, "internal", "internal error; see the server log")
