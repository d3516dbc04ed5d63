"""POST /api/v1/alertmanager: the thin view in front of `payload.parse` and `Intake`.

Status codes follow what Alertmanager does with them: it retries 5xx (and
transport errors) and never retries anything else. So: 200 only once the
effect is in Redis; 503 when Redis cannot take it (retry will work); 4xx for
input that would fail the same way on every retry.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from webhook.app_services import Services, require_auth, services
from webhook.errors import ApiError, BadRequest, PayloadTooLarge, Unavailable, UnsupportedMediaType
from webhook.intake import Contention, IntakeResult, Repeat
from webhook.payload import PayloadError, may_hold_surrogates, parse
from workers.incident.alerts import Notification

log = logging.getLogger(__name__)
blueprint = Blueprint("receiver", __name__)


@blueprint.post("/api/v1/alertmanager")
def alertmanager() -> Response:
    s = services()
    try:
        require_auth(s)
        body = _body(s.settings.max_body_bytes)
        notification = s.intake.repeat(body) or _notification(body)
    except ApiError:
        s.metrics.notifications.labels("rejected").inc()
        raise
    if isinstance(notification, Repeat):  # a byte-for-byte resend: not parsed again
        _count_alerts(s, notification.firing, notification.resolved)
        s.metrics.notifications.labels("duplicate").inc()
        return _answer(IntakeResult("duplicate"))
    try:
        result = s.intake.apply(notification, body)
    except (RedisError, Contention) as exc:
        s.metrics.notifications.labels("unavailable").inc()
        log.warning("notification %s not applied: %s", notification.group_key, type(exc).__name__)
        raise Unavailable("incident store unavailable; retry later") from None
    s.metrics.notifications.labels(result.outcome).inc()
    firing = sum(1 for alert in notification.alerts if alert.status == "firing")
    _count_alerts(s, firing, len(notification.alerts) - firing)
    for job in result.jobs:
        s.metrics.jobs_enqueued.labels(job.action.name, job.transition).inc()
    if result.outcome == "accepted":
        current_app.logger.info(
            "applied %s: incidents %s, %d jobs",
            notification.group_key,
            result.incidents,
            len(result.jobs),
        )
    return _answer(result)


def _count_alerts(s: Services, firing: int, resolved: int) -> None:
    for status, count in (("firing", firing), ("resolved", resolved)):
        if count:
            s.metrics.alerts.labels(status).inc(count)


def _answer(result: IntakeResult) -> Response:
    return jsonify(
        {
            "status": result.outcome,
            "incidents": result.incidents,
            "jobs": [j.job_id for j in result.jobs],
            "policy": result.policy,
        }
    )


def _body(limit: int) -> bytes:
    too_large = PayloadTooLarge(f"body is larger than {limit} bytes", field="body", limit=limit)
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"expected Content-Type application/json, got {request.mimetype or 'none'}",
            field="Content-Type",
        )
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(body) > limit:
        raise too_large
    return body


def _notification(body: bytes) -> Notification:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", field="body") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply", field="body") from None
    try:
        return parse(doc, surrogates=may_hold_surrogates(body))
    except PayloadError as exc:
        raise BadRequest(exc.message, field=exc.field) from None
