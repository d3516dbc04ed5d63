"""The handler of each action for one job run: real adapters, or dry run.

Dry run wins when the worker says so (ALERTPILOT_DRY_RUN) or the job does (a
dry-run route, or a dry-run webhook). Mitigations also obey the policy's
`mitigations.dry_run` (workers/mitigations).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from rq import Queue

from workers.actions import Action, Handler, Outcome, Reach, dry_run
from workers.chat import Chat
from workers.communication import NOTIFY, PAGE, STATUSPAGE, WAR_ROOM, Vendors
from workers.config import Integrations, Settings
from workers.incident.errors import PermanentError
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.kube import Kubernetes, api_client
from workers.mitigations import RATE_LIMIT, ROLLBACK, ROLLOUT_RESTART, SCALE_UP, Cluster
from workers.pagerduty import PagerDuty
from workers.policy.engine import Policy
from workers.policy.problems import PolicyError
from workers.policy.store import in_force as policy_in_force
from workers.slack import Slack
from workers.statuspage import RateLimiter, Statuspage

log = logging.getLogger(__name__)


COMMUNICATION: tuple[Action[Vendors], ...] = (PAGE, STATUSPAGE, NOTIFY, WAR_ROOM)
MITIGATIONS: tuple[Action[Cluster], ...] = (SCALE_UP, RATE_LIMIT, ROLLOUT_RESTART, ROLLBACK)
ACTIONS: dict[str, Action[Vendors] | Action[Cluster]] = {a.name: a for a in COMMUNICATION}
ACTIONS.update({a.name: a for a in MITIGATIONS})
"""The one registry of actions (a test checks it agrees with workers/params.py PARAMS
and workers/jobs/contract.py ACTION_NAMES)."""


def build_handlers(
    settings: Settings, redis: Redis, prefix: str, queue: Queue
) -> dict[str, Handler]:
    """`queue`: where mitigations queue what follows them (handoffs, follow-up attempts)."""
    integrations = settings.integrations
    vendors = vendors_for(integrations, redis, prefix)
    policy = functools.partial(_policy, settings.policies_dir)
    cluster = Cluster(redis, integrations.env, kube_for(integrations), queue, policy)

    def handler(action: Action[Reach], reach: Reach) -> Handler:
        def run(request: ActionRequest, incident: Incident) -> Outcome:
            if action.revert is not None and request.transition == "resolved":
                # A revert puts back only what was really changed (its record), dry run or
                # not since: dry run stops new changes, it must not strand a made one.
                return action.revert(request, incident, reach)
            if request.dry_run or settings.dry_run:
                return dry_run(request, incident)
            return action.run(request, incident, reach)

        return run

    handlers = {a.name: handler(a, vendors) for a in COMMUNICATION}
    handlers.update({a.name: handler(a, cluster) for a in MITIGATIONS})
    return handlers


def _policy(directory: Path) -> Policy:
    try:
        return policy_in_force(directory)
    except PolicyError as exc:
        # In full in the log only: the timeline gets no file paths or parse errors.
        log.error("policy set in %s does not load:\n%s", directory, exc)
        raise PermanentError("no valid policy set to check the mitigation against") from None


def kube_for(integrations: Integrations) -> Callable[[], Kubernetes]:
    """Kubernetes, built on first use (KUBECONFIG, else the pod's service account)."""
    made: list[Kubernetes] = []

    def get() -> Kubernetes:
        if not made:
            made.append(Kubernetes(api_client(integrations.env.get("KUBECONFIG"))))
        return made[0]

    return get


def vendors_for(integrations: Integrations, redis: Redis, prefix: str) -> Vendors:
    status = None
    if integrations.statuspage_page_id and integrations.statuspage_api_key:
        key = Statuspage.limiter_key(prefix, integrations.statuspage_api_key)
        status = Statuspage(
            base_url=integrations.statuspage_api_url,
            page_id=integrations.statuspage_page_id,
            api_key=integrations.statuspage_api_key,
            ca_bundle=integrations.ca_bundle,
            limiter=RateLimiter(redis, key),
        )
    chat = webhook = None
    if integrations.chat_webhook_url:
        chat = Chat(webhook_url=integrations.chat_webhook_url, ca_bundle=integrations.ca_bundle)
    if integrations.notify_webhook_url:
        webhook = Chat(
            webhook_url=integrations.notify_webhook_url, ca_bundle=integrations.ca_bundle
        )
    return Vendors(
        integrations=integrations,
        redis=redis,
        pagerduty=PagerDuty(
            base_url=integrations.pagerduty_events_url, ca_bundle=integrations.ca_bundle
        ),
        statuspage=status,
        chat=chat,
        webhook=webhook,
        slack=Slack(
            token=integrations.slack_bot_token,
            base_url=integrations.slack_api_url,
            ca_bundle=integrations.ca_bundle,
        )
        if integrations.slack_bot_token
        else None,
    )
