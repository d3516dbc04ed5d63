"""Proposals for mitigations that need a person's approval (rollout_restart by default).

The worker writes the exact change as a proposal (in Redis, expiring) and on
the timeline; `POST /api/v1/actions/<id>/approve` or `alertpilot actions
approve <id>` queues the job again, marked approved, and `reject` drops it.
Either is recorded on the timeline with its person. A proposal is used once:
approving it twice, after a reject, or after it expired, queues nothing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import Queue

from workers.incident import clock, timeline
from workers.incident.keys import Keys, text
from workers.jobs.contract import RUN_ACTION, approved_job_id, enqueue

DEFAULT_EXPIRY = 30 * 60


def propose(redis: Redis, keys: Keys, payload: dict[str, Any], change: str, *, expires: int) -> str:
    """Store the proposal; its id (short, unguessable, and hex: an id from
    token_urlsafe may start with "-", which a command line takes for an option)."""
    proposal_id = secrets.token_hex(8)
    # The window is the clock's (an injected one in tests); Redis's TTL only clears it away.
    expires_at = clock.timestamp() + expires
    doc = {"payload": payload, "change": change, "expires_at": expires_at}
    with redis.pipeline() as pipe:  # MULTI: listed if and only if it exists
        pipe.set(keys.proposal(proposal_id), json.dumps(doc), ex=expires)
        pipe.zadd(keys.proposals, {proposal_id: expires_at})
        pipe.zremrangebyscore(keys.proposals, "-inf", clock.timestamp())
        pipe.execute()
    return proposal_id


@dataclass(frozen=True)
class Proposal:
    id: str
    incident_id: str
    action: str
    change: str
    """The exact change, as the worker wrote it ("rollout restart of deployment ...")."""
    expires_at: float
    approver: str = "responder"
    """The role approving needs (the route's `approver`): responder or admin."""


def pending(redis: Redis, keys: Keys, *, limit: int = 100) -> list[Proposal]:
    """Proposals still waiting, soonest to expire first."""
    now = clock.timestamp()
    ids = [
        text(i)
        for i in redis.zrangebyscore(keys.proposals, now, "+inf", 0, limit)
        if isinstance(i, (bytes, str))
    ]
    docs = redis.mget([keys.proposal(i) for i in ids]) if ids else []
    found = []
    for proposal_id, raw in zip(ids, docs, strict=True):
        if raw is None:
            continue  # approved or rejected between the two reads, or cleared by its TTL
        doc = parse(raw)
        payload = doc.get("payload", {})
        found.append(
            Proposal(
                id=proposal_id,
                incident_id=str(payload.get("incident_id", "")),
                action=str(payload.get("action", "")),
                change=str(doc.get("change", "")),
                expires_at=float(doc.get("expires_at", 0)),
                approver=approver(payload),
            )
        )
    return [p for p in found if p.expires_at > now]


def reject(redis: Redis, keys: Keys, proposal_id: str, *, by: str, reason: str = "") -> bool:
    """Drop the proposal, recorded on its incident's timeline; False if unknown or expired."""
    note = f": {reason}" if reason else ""
    return _settle(redis, keys, proposal_id, "rejected", by=by, note=note) is not None


def parse(raw: bytes | str) -> dict[str, Any]:
    """A stored proposal: {payload, change}. Approving it removes it
    (`approve`), so it cannot be approved twice."""
    doc: dict[str, Any] = json.loads(text(raw))
    return doc


def approver(payload: dict[str, Any]) -> str:
    """The role a proposal's approval needs: its route's `approver`, a responder by default."""
    return str((payload.get("params") or {}).get("approver") or "responder")


class NotAllowed(Exception):
    """The proposal needs an approver of a higher role (`needed`) than the person's."""

    def __init__(self, needed: str) -> None:
        super().__init__(f"this proposal needs the approval of a {needed}")
        self.needed = needed


def approve(
    redis: Redis,
    queue: Queue,
    keys: Keys,
    proposal_id: str,
    *,
    by: str,
    may: Callable[[str], bool] = lambda needed: True,
) -> str | None:
    """Queue the proposed job, marked approved; its job id, or None if unknown or expired.
    `may(role)` says whether the person may approve what needs that role (the route's
    `approver`: responder or admin); NotAllowed when not, and nothing changes.

    One transaction: the proposal is removed, the approval written on the timeline
    and the job queued together, so an approval is never half done, and of two
    people approving at once only one queues the job.
    """

    def check(payload: dict[str, Any]) -> None:
        needed = approver(payload)
        if not may(needed):
            raise NotAllowed(needed)
        if isinstance(payload.get("approved"), dict):  # the object it names
            payload["approved"]["proposal"] = proposal_id

    def queue_job(pipe: Pipeline, payload: dict[str, Any]) -> None:
        job_id = approved_job_id(str(payload["incident_id"]), proposal_id)
        enqueue(queue, RUN_ACTION, payload, job_id, pipeline=pipe)

    payload = _settle(redis, keys, proposal_id, "approved", by=by, check=check, then=queue_job)
    return approved_job_id(str(payload["incident_id"]), proposal_id) if payload else None


def _settle(
    redis: Redis,
    keys: Keys,
    proposal_id: str,
    kind: str,
    *,
    by: str,
    note: str = "",
    check: Callable[[dict[str, Any]], None] = lambda payload: None,
    then: Callable[[Pipeline, dict[str, Any]], None] = lambda pipe, payload: None,
) -> dict[str, Any] | None:
    """Use the pending proposal once (approved or rejected): its payload, or None if it
    is unknown or expired. Under WATCH, so of two people at once only one uses it;
    `check` may refuse before anything is written; the proposal's removal, the timeline
    entry and `then`'s writes (the approved job) are one transaction."""
    key = keys.proposal(proposal_id)
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                if raw is None:
                    return None
                proposal = parse(raw)
                if clock.timestamp() >= float(proposal.get("expires_at", "inf")):
                    return None
                payload: dict[str, Any] = proposal["payload"]
                check(payload)
                entry = timeline.entry(
                    kind,
                    f"{proposal['change']} {kind} by {by}{note}",
                    action=payload["action"],
                    proposal=proposal_id,
                    by=by,
                )
                pipe.multi()  # RQ's enqueue(pipeline=) would open it after our first command
                pipe.delete(key)
                pipe.zrem(keys.proposals, proposal_id)
                timeline.append(pipe, keys, str(payload["incident_id"]), entry)
                then(pipe, payload)
                pipe.execute()
                return payload
            except WatchError:
                continue  # someone else took or changed it: look again
