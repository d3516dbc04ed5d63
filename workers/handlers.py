"""The handler of each action for one job run: real adapters, or dry run.

Dry run wins when the worker says so (ALERTPILOT_DRY_RUN) or the job does (a
dry-run route, or a dry-run webhook). Mitigations also obey the policy's
`mitigations.dry_run` (workers/mitigations).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from rq import Queue

from workers.actions import Handler, Outcome, dry_run
from workers.chat import Chat
from workers.communication import Vendors, notify, page, statuspage
from workers.config import Integrations
from workers.incident.errors import PermanentError
from workers.incident.record import Incident
from workers.jobs.contract import ACTION_NAMES, MITIGATION_ACTIONS, ActionRequest
from workers.kube import Kubernetes, api_client
from workers.mitigations import Cluster, rate_limit, rollback, rollout_restart, scale_up
from workers.pagerduty import PagerDuty
from workers.policy.engine import Policy
from workers.policy.problems import PolicyError
from workers.policy.store import in_force as policy_in_force
from workers.statuspage import RateLimiter, Statuspage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """What an action reaches while it runs: the vendors (communication), the cluster
    and the policy in force (mitigations)."""

    vendors: Vendors
    cluster: Cluster


Run = Callable[[ActionRequest, Incident, Runtime], Outcome]
ACTIONS: dict[str, Run] = {
    "page": lambda request, incident, rt: page(request, incident, rt.vendors),
    "statuspage": lambda request, incident, rt: statuspage(request, incident, rt.vendors),
    "notify": lambda request, incident, rt: notify(request, incident, rt.vendors),
    "scale_up": lambda request, incident, rt: scale_up(request, incident, rt.cluster),
    "rate_limit": lambda request, incident, rt: rate_limit(request, incident, rt.cluster),
    "rollout_restart": lambda request, incident, rt: rollout_restart(request, incident, rt.cluster),
    "rollback": lambda request, incident, rt: rollback(request, incident, rt.cluster),
}
"""The one registry of what runs each action (its parameters: workers/params.py PARAMS;
its name: workers/jobs/contract.py ACTION_NAMES; a test checks the three agree)."""


def build_handlers(
    integrations: Integrations, redis: Redis, prefix: str, queue: Queue
) -> dict[str, Handler]:
    """`queue`: where mitigations queue what follows them (handoffs, follow-up attempts)."""
    runtime = Runtime(
        vendors_for(integrations, redis, prefix),
        Cluster(redis, integrations.env, _kube(integrations), queue, lambda: _policy(integrations)),
    )

    def handler(name: str) -> Handler:
        def run(request: ActionRequest, incident: Incident) -> Outcome:
            if name in MITIGATION_ACTIONS and request.transition == "resolved":
                # A revert puts back only what was really changed (its record), dry run or
                # not since: dry run stops new changes, it must not strand a made one.
                return ACTIONS[name](request, incident, runtime)
            if request.dry_run or integrations.dry_run:
                return dry_run(request, incident)
            return ACTIONS[name](request, incident, runtime)

        return run

    return {name: handler(name) for name in ACTION_NAMES}


def _policy(integrations: Integrations) -> Policy:
    try:
        return policy_in_force(integrations.policies_dir)
    except PolicyError as exc:
        # In full in the log only: the timeline gets no file paths or parse errors.
        log.error("policy set in %s does not load:\n%s", integrations.policies_dir, exc)
        raise PermanentError("no valid policy set to check the mitigation against") from None


def _kube(integrations: Integrations) -> Callable[[], Kubernetes]:
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
    )
