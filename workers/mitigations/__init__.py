"""Mitigations on Kubernetes, each behind the guardrails (workers/guardrails.py).

One module per kind of change: scale (scale_up), rate_limit (annotations or a
pre-approved manifest), rollout (rollout_restart, rollback). Each handler is
called with the job's request, the incident as it is now and the Cluster, and
returns what happened for the timeline; a transition "resolved" is its revert.
"""

from __future__ import annotations

from workers.mitigations.common import Cluster
from workers.mitigations.rate_limit import rate_limit
from workers.mitigations.rollout import rollback, rollout_restart
from workers.mitigations.scale import scale_up

__all__ = ["Cluster", "rate_limit", "rollback", "rollout_restart", "scale_up"]
