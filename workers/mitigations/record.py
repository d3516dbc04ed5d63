"""What a mitigation changed, kept so it can be put back after the incident.

A record (one Redis hash per incident and action) is written before the change
and holds what the object held before and what alertpilot set; `to_revert`,
`revert_lock` and `reverted` are the revert's side of it. Only a change really
made leaves a record; a refused one restores the earlier record.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from workers import guardrails
from workers.actions import Outcome
from workers.incident.errors import PermanentError, TransientError
from workers.incident.keys import Keys, text
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.mitigations.common import Cluster, target_lock


def record(
    cluster: Cluster, request: ActionRequest, incident: Incident, doc: dict[str, Any]
) -> None:
    """What a mitigation changed, for its revert (values stored as text)."""
    stored: Mapping[Any, Any] = {  # redis-py's mapping type is invariant in its keys
        k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()
    }
    cluster.redis.hset(Keys(request.prefix).mitigation(incident.id, request.action), mapping=stored)


@contextlib.contextmanager
def remembered(
    cluster: Cluster, request: ActionRequest, incident: Incident, doc: dict[str, Any]
) -> Iterator[None]:
    """Record the change before making it, so an answer lost after the change still
    leaves what to revert. A change the API server refused (any answer with a
    status: 4xx, 409, 429, 5xx) leaves the record as it was before (none, or an
    earlier attempt's), so a revert still finds what the object really holds."""
    earlier = recorded(cluster, request, incident)
    record(cluster, request, incident, doc)
    try:
        yield
    except (PermanentError, TransientError) as exc:
        if isinstance(exc, PermanentError) or exc.status is not None:
            reverted(cluster, request, incident)
            if earlier:
                record(cluster, request, incident, dict(earlier))
        raise


def recorded(cluster: Cluster, request: ActionRequest, incident: Incident) -> dict[str, str]:
    raw = cluster.redis.hgetall(Keys(request.prefix).mitigation(incident.id, request.action))
    return {text(k): text(v) for k, v in raw.items()}


def to_revert(
    request: ActionRequest, incident: Incident, cluster: Cluster
) -> dict[str, str] | Outcome:
    """What the mitigation recorded, or why there is nothing to revert now.

    A record exists only for a change really made, and it is put back even when
    dry run was switched on since (globally, for the policy, or by the incident
    taking a dry-run route): dry run stops new changes, it must not strand one
    made. While mitigations are paused the revert waits (a transient error: the
    job retries with backoff, then lands in the failed registry for `alertpilot
    jobs retry`), rather than being dropped; `revert_lock` checks again.
    """
    found = recorded(cluster, request, incident)
    if not found:
        return Outcome("skipped", f"nothing to revert: {request.action} changed nothing")
    _hold_while_paused(cluster, request)
    return found


@contextlib.contextmanager
def revert_lock(
    cluster: Cluster, request: ActionRequest, target: tuple[str, str]
) -> Iterator[None]:
    """The target lock for a revert, and the kill switch once more under it: thrown while
    the revert waited for the lock, the revert waits too."""
    with target_lock(cluster, Keys(request.prefix), target, request.job_id):
        _hold_while_paused(cluster, request)
        yield


def _hold_while_paused(cluster: Cluster, request: ActionRequest) -> None:
    stop = guardrails.paused(cluster.redis, Keys(request.prefix), cluster.env)
    if stop is not None:
        raise TransientError(f"mitigations are paused: {stop}; the revert waits")


def reverted(cluster: Cluster, request: ActionRequest, incident: Incident) -> None:
    cluster.redis.delete(Keys(request.prefix).mitigation(incident.id, request.action))
