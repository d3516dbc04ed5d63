"""Proposals for mitigations that need a person's approval (rollout_restart by default).

The worker writes the exact change as a proposal (in Redis, expiring) and on
the timeline; `POST /api/v1/actions/<id>/approve` or `alertpilot actions
approve <id>` queues the job again, marked approved. A proposal is used once:
approving it twice, or after it expired, queues nothing.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from redis import Redis

from workers.incident.keys import Keys, text

DEFAULT_EXPIRY = 30 * 60


def propose(redis: Redis, keys: Keys, payload: dict[str, Any], change: str, *, expires: int) -> str:
    """Store the proposal; its id (short, unguessable, and hex: an id from
    token_urlsafe may start with "-", which a command line takes for an option)."""
    proposal_id = secrets.token_hex(8)
    doc = {"payload": payload, "change": change}
    redis.set(keys.proposal(proposal_id), json.dumps(doc), ex=expires)
    return proposal_id


def parse(raw: bytes | str) -> dict[str, Any]:
    """A stored proposal: {payload, change}. Approving it removes it
    (webhook/approvals_api.py), so it cannot be approved twice."""
    doc: dict[str, Any] = json.loads(text(raw))
    return doc
