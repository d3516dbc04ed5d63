"""The on-call handoff report over HTTP (workers/oncall.py).

GET /api/v1/handoff?since=7d (any person) answers {report, markdown} at once, without
the recent rollouts: the web process does not reach Kubernetes (import-linter), and the
report says how to get them. POST /api/v1/handoff (a responder; body {since?, post?})
queues the worker's job, which adds them, stores the report and with `post` sends it
to chat; it answers 202 {id}. GET /api/v1/handoff/<id> answers the stored report
{id, by, report, markdown, chat, ...}, 404 until the job stored it (and after
REPORT_TTL).

`since` is a duration from 1h to 90d (default 7d) in the policy's duration syntax;
anything else, an unknown parameter or field, or one given twice is a 400 naming it.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from webhook.app_services import Services, authenticated, caller, services
from webhook.errors import BadRequest, NotFound, Unavailable
from workers.incident import clock
from workers.jobs.contract import enqueue
from workers.oncall import DEFAULT_SINCE, build_report, parse_since
from workers.oncall_markdown import markdown
from workers.oncall_store import (
    REPORT_ID,
    RUN_HANDOFF,
    HandoffRequest,
    gather,
    report_path,
    saved,
)

blueprint = Blueprint("oncall", __name__, url_prefix="/api/v1")

MAX_BODY = 4096


@blueprint.get("/handoff")
@authenticated
def handoff_view() -> Response:
    s = services()
    since = parse_since(since_of(query_since()))
    try:
        return jsonify(immediate(s, since))
    except RedisError:
        raise Unavailable("incident store unavailable") from None


def immediate(s: Services, since: timedelta) -> dict[str, Any]:
    """{report, markdown, truncated[, template_error]} of the last `since`, without the
    rollouts (this view's and the web page's); RedisError when Redis fails."""
    now = clock.now()
    found = gather(s.redis, s.keys, now, since)
    report = build_report(
        now,
        since,
        found.incidents,
        found.entries_by_id,
        found.acks_by_id,
        found.proposals,
        None,
        s.policies.get(),
    )
    text, problem = markdown(s.settings.policies_dir / "templates", report)
    answer: dict[str, Any] = {"report": report, "markdown": text, "truncated": found.truncated}
    return answer | ({"template_error": problem} if problem else {})


@blueprint.post("/handoff")
def queue_view() -> tuple[Response, int]:
    s = services()
    person = caller(s, "responder")
    body = _body()
    job = HandoffRequest(
        prefix=s.keys.prefix,
        report_id=secrets.token_hex(8),
        since=since_of(body.get("since", DEFAULT_SINCE)),
        post=body.get("post", False),
        by=person.name,
    )
    try:
        enqueue(s.queue, RUN_HANDOFF, job.to_json(), job.job_id, description="on-call handoff")
    except RedisError:
        raise Unavailable("job queue unavailable; retry later") from None
    response = jsonify({"id": job.report_id, "status": "queued", "since": job.since})
    response.headers["Location"] = report_path(job.report_id)
    return response, 202


@blueprint.get("/handoff/<report_id>")
@authenticated
def report_view(report_id: str) -> Response:
    s = services()
    if request.args:
        name = next(iter(request.args))
        raise BadRequest(f"unknown query parameter {name[:64]!r}", field=name[:64])
    if not REPORT_ID.fullmatch(report_id):
        raise BadRequest("expected 16 hex digits", field="report_id")
    try:
        found = saved(s.redis, s.keys, report_id)
    except RedisError:
        raise Unavailable("incident store unavailable") from None
    if found is None:
        message = f"no report {report_id}: not built yet (a worker builds it), or expired"
        raise NotFound(message, field="report_id")
    return jsonify(found)


def query_since() -> str:
    """The one query parameter, `since`, given once at most."""
    found: str | None = None
    for name, value in request.args.items(multi=True):
        if name != "since":
            raise BadRequest(f"unknown query parameter {name[:64]!r}", field=name[:64])
        if found is not None:
            raise BadRequest("since given more than once", field="since")
        found = value
    return DEFAULT_SINCE if found is None else found


def since_of(value: object) -> str:
    """`value`, a duration from 1h to 90d (400 naming `since` otherwise)."""
    if not isinstance(value, str):
        raise BadRequest("expected a string (like 7d)", field="since")
    try:
        parse_since(value)
    except ValueError as exc:
        raise BadRequest(str(exc), field="since") from None
    return value


def _body() -> dict[str, Any]:
    """The JSON object of the request, {since?: string, post?: boolean}; empty: {}."""
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        raise BadRequest(f"body is larger than {MAX_BODY} bytes", field="body")
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        raise BadRequest("expected Content-Type application/json", field="Content-Type")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("body is not valid JSON", field="body") from None
    if not isinstance(doc, dict):
        raise BadRequest("expected a JSON object", field="body")
    for name in doc:
        if name not in ("since", "post"):
            raise BadRequest(f"unknown field {name[:64]!r}", field=name[:64])
    if not isinstance(doc.get("post", False), bool):
        raise BadRequest("expected true or false", field="post")
    return doc
