"""The on-call handoff job (a `HandoffRequest`, queued by POST /api/v1/handoff): the
report (workers/oncall.py) with the rollouts Kubernetes shows in the policy's allowed
namespaces, stored for REPORT_TTL under its id, and with `post` sent to chat through the
adapter the notify action uses.

A namespace Kubernetes does not answer for (no access configured, 403 before the Role
allows listing deployments, an outage) does not fail the job: the report names it. Nor
does chat: the stored report says what came of the post (`chat`). The report is stored
before the post, so a person polling for it never waits for chat; a worker that dies
while posting has the job retried by RQ, which may post twice (chat has no idempotency
key to stop it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from redis import Redis
from rq import get_current_job

from workers.chat import Chat
from workers.config import Integrations, Settings
from workers.incident import clock
from workers.incident.errors import PermanentError, TransientError
from workers.incident.keys import Keys
from workers.kube import Kubernetes, Rollout, api_client
from workers.oncall import build_report, parse_since
from workers.oncall_markdown import markdown
from workers.oncall_store import HandoffRequest, gather, report_path, save
from workers.policy.store import in_force

log = logging.getLogger(__name__)

MAX_CHAT_CHARS = 12_000
"""Of the report in one chat message: Slack truncates a message's text past 40,000
characters and folds long ones; the rest is in the stored report."""


def run_handoff(payload: dict[str, Any]) -> dict[str, Any]:
    """The RQ entry point (`RUN_HANDOFF`)."""
    job = get_current_job()
    assert job is not None, "run_handoff runs inside an RQ job"
    settings = Settings.from_env(os.environ)
    integrations = settings.integrations
    return handoff(
        job.connection,
        HandoffRequest.from_json(payload),
        settings,
        kube=lambda: Kubernetes(api_client(integrations.env.get("KUBECONFIG"))),
        chat=chat_for(integrations),
    )


def chat_for(integrations: Integrations) -> Chat | None:
    """The chat webhook notify posts to, if one is configured."""
    if not integrations.chat_webhook_url:
        return None
    return Chat(webhook_url=integrations.chat_webhook_url, ca_bundle=integrations.ca_bundle)


def handoff(
    redis: Redis,
    request: HandoffRequest,
    settings: Settings,
    *,
    kube: Callable[[], Kubernetes],
    chat: Chat | None,
) -> dict[str, Any]:
    """Build, store and (with `post`) send the report; what came of it."""
    keys = Keys(request.prefix)
    policy = in_force(settings.policies_dir)
    now, since = clock.now(), parse_since(request.since)
    found = gather(redis, keys, now, since)
    rollouts, errors = read_rollouts(kube, policy.guardrails.allow.namespaces, now - since)
    report = build_report(
        now,
        since,
        found.incidents,
        found.entries_by_id,
        found.acks_by_id,
        found.proposals,
        rollouts,
        policy,
        request.flaky_after,
        rollout_errors=errors,
    )
    text, problem = markdown(settings.policies_dir / "templates", report)
    stored: dict[str, Any] = {"id": request.report_id, "by": request.by, "report": report}
    stored |= {"markdown": text, "template_error": problem, "truncated": found.truncated}
    save(redis, keys, request.report_id, stored | {"chat": "sending" if request.post else None})
    where = f"{settings.integrations.public_url}{report_path(request.report_id)}"
    outcome = post(chat, text, where) if request.post else None
    if request.post:
        save(redis, keys, request.report_id, stored | {"chat": outcome})
    return {"outcome": "stored", "id": request.report_id, "chat": outcome}


def read_rollouts(
    kube: Callable[[], Kubernetes], namespaces: Sequence[str], since: datetime
) -> tuple[list[Rollout], list[str]]:
    """The rollouts since `since` in each namespace, newest first, and the namespaces
    that could not be read, with why."""
    found: list[Rollout] = []
    errors: list[str] = []
    for namespace in namespaces:
        try:
            found += kube().rollouts(namespace, since)
        except (PermanentError, TransientError) as exc:
            log.warning("rollouts in %s not read: %s", namespace, exc)
            errors.append(f"rollouts in {namespace} not read: {exc}")
    return sorted(found, key=lambda r: r.rolled_out_at, reverse=True), errors


def post(chat: Chat | None, text: str, where: str) -> str:
    """Send the report to chat, cut at MAX_CHAT_CHARS with a pointer to `where` the
    whole one is; "posted", or why not (never raises: the report stands)."""
    if chat is None:
        return "not posted: no chat configured (ALERTPILOT_CHAT_WEBHOOK_URL)"
    if len(text) > MAX_CHAT_CHARS:
        cut = text[:MAX_CHAT_CHARS].rsplit("\n", 1)[0]
        text = f"{cut}\n\n(cut short: the whole report is at {where})"
    try:
        chat.post({"text": text})
    except (PermanentError, TransientError) as exc:
        log.warning("handoff report not posted to chat: %s", exc)
        return f"not posted: {exc}"
    return "posted"
