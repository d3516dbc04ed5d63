"""Mitigations on Kubernetes, each behind the guardrails (workers/guardrails.py).

One module per kind of change: scale (scale_up), rate_limit (annotations or a
pre-approved manifest), rollout (rollout_restart, rollback). Each declares its
`Action` (workers/actions.py): `run` is called with the job's request, the
incident as it is now and the Cluster, `revert` after the incident, and both
return what happened for the timeline.
"""

from __future__ import annotations

from workers.mitigations.common import Cluster
from workers.mitigations.rate_limit import RATE_LIMIT
from workers.mitigations.rollout import ROLLBACK, ROLLOUT_RESTART
from workers.mitigations.scale import SCALE_UP

__all__ = ["RATE_LIMIT", "ROLLBACK", "ROLLOUT_RESTART", "SCALE_UP", "Cluster"]
