"""Mitigations on Kubernetes, each behind the guardrails (workers/guardrails.py).

One module per kind of change: scale (scale_up), rate_limit (annotations or a
pre-approved manifest), rollout (rollout_restart, rollback). Each handler is
called with the job's request, the incident as it is now and the Cluster, and
returns what happened for the timeline; a transition "resolved" is its revert.
"""

from __future__ import annotations

from collections.abc import Callable

from workers.actions import Outcome
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.mitigations.common import Cluster
from workers.mitigations.rate_limit import rate_limit
from workers.mitigations.rollout import rollback, rollout_restart
from workers.mitigations.scale import scale_up

Mitigation = Callable[[ActionRequest, Incident, Cluster], Outcome]
MITIGATIONS: dict[str, Mitigation] = {
    "scale_up": scale_up,
    "rate_limit": rate_limit,
    "rollout_restart": rollout_restart,
    "rollback": rollback,
}

__all__ = ["MITIGATIONS", "Cluster", "Mitigation"]
