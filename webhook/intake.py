"""Apply one notification to incident state and enqueue its jobs, in one Redis transaction.

The reads of the current incidents are WATCHed and the writes (incident
documents, indexes, timeline, the jobs themselves, the group's last digest)
go out in one MULTI/EXEC, so a notification is applied whole or not at all: a
200 means its effect is in Redis, and a crash or a Redis error before EXEC
leaves nothing behind for the retry to trip over.

Resends are cheap: Alertmanager re-sends a group's whole state, so a
notification whose digest equals the last one applied for its group (a repeat,
or the twin from the other Alertmanager of an HA pair) stops at one GET, or at
none when this process saw that digest made durable in the last few seconds
(`Applied`; a byte-for-byte repeat is known from its body's hash, unparsed).
A new notification costs three round trips: the digest check, the WATCH with
every read the decision needs, and MULTI..EXEC.

With replicas to wait for (ALERTPILOT_REDIS_WAIT_REPLICAS), "in Redis" means on them
too: webhook/replication.py WAITs after EXEC, and before a duplicate found in Redis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ResponseError, WatchError
from rq import Queue

from webhook import replay, replication
from workers.incident import timeline
from workers.incident.alerts import Alert, Notification
from workers.incident.keys import Keys, base36, group_hash, text
from workers.incident.record import Incident
from workers.incident.transitions import Change, Context, JobSpec, absent, apply, drop_stale
from workers.incident.writer import Writer
from workers.policy import Match, Policy, evaluate
from workers.policy.engine import key_hash

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
"""Optimistic-lock retries before giving up with 503 (Alertmanager then retries)."""

Outcome = Literal["accepted", "duplicate"]


class Contention(Exception):
    """Too many concurrent writers on the same incidents; safe to retry later."""


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    incidents: list[str] = field(default_factory=list)
    jobs: list[JobSpec] = field(default_factory=list)
    stale: int = 0
    """Alerts dropped as older than what was already applied."""
    policy: str | None = None
    """Content hash of the policy set the notification was evaluated against."""


@dataclass(frozen=True)
class Limits:
    dedup_ttl_seconds: int
    """How long a group's last digest is kept (a resend after it is re-evaluated, harmlessly)."""
    stale_window_seconds: int
    """How long after a resolve a firing copy of the same instance counts as stale."""
    retention_seconds: int
    """How long a resolved incident, its timeline and its key index are kept."""
    replay_size: int = 0
    """How many accepted notifications to keep for `policy diff --replay` (0: none)."""
    replay_max_bytes: int = 0
    """Their total size at most (webhook/replay.py `keep`)."""
    resend_cache_seconds: float = 0.0
    """How long this process answers a resend it saw durable without asking Redis."""
    wait_replicas: int = 0
    """Replicas that must confirm a notification's writes before it is answered (0: none)."""
    wait_timeout_ms: int = 500
    """How long to wait for them."""


@dataclass(frozen=True)
class _Group:
    key: str
    hash: str
    alerts: list[tuple[Alert, Match]]


def _batch(pipe: Pipeline, *commands: tuple[str, ...]) -> list[Any]:
    """Several commands in one round trip, on the pipeline's own connection (redis-py
    sends a watching pipeline's commands one by one); a WATCH among them leaves the
    pipeline watching, as `pipe.watch` would. Every reply is read before an error one
    is raised, so the connection stays in step (redis-py drops it on a transport error)."""
    if pipe.connection is None:
        pipe.connection = pipe.connection_pool.get_connection()
    connection = pipe.connection
    packed = connection.pack_commands(commands)  # type: ignore[no-untyped-call]
    connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
    replies: list[Any] = []
    error: ResponseError | None = None
    for command in commands:
        try:
            replies.append(pipe.parse_response(connection, command[0]))  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            error = error or exc
            replies.append(None)
    if error is not None:
        raise error
    return replies


@dataclass(frozen=True)
class Repeat:
    """A byte-for-byte repeat of a notification already applied: how many alerts it
    held by status (the receiver's counters count them as for any duplicate)."""

    firing: int
    resolved: int


class Applied:
    """Digests this process has seen made durable in Redis, for `ttl` seconds: a resend
    (or an HA twin's copy) that matches one is a duplicate without a Redis round trip.

    Only what Redis holds is remembered (after a read of it, or after EXEC), so this
    answers exactly what the shared digest would, unless Redis lost data within the
    last `ttl` seconds: then a resend is taken as a duplicate until its entry expires,
    and Alertmanager's next resend applies it. Bounded to `size` groups (oldest out).

    The bodies of those notifications are remembered too (their SHA-256): the same
    bytes again, while their digest is still their group's last, are the same
    notification, valid and applied, so `repeat` answers them before any parsing.
    Alertmanager's resends of an unchanged group are byte-for-byte repeats; an HA
    twin's copy is not (its externalURL differs) and goes by the digest.
    """

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._seen: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._bodies: OrderedDict[bytes, tuple[str, str, Repeat]] = OrderedDict()
        self._lock = threading.Lock()  # gunicorn's threads share it

    def holds(self, marker: str, last: str) -> bool:
        found = self._seen.get(marker)
        return found is not None and found[0] == last and time.monotonic() < found[1]

    def repeat(self, body: bytes) -> Repeat | None:
        found = self._bodies.get(hashlib.sha256(body).digest()) if self.ttl > 0 else None
        if found is None or not self.holds(found[0], found[1]):
            return None
        return found[2]

    def add(self, marker: str, last: str, notification: Notification, body: bytes) -> None:
        if self.ttl <= 0:
            return
        firing = sum(1 for alert in notification.alerts if alert.status == "firing")
        repeat = Repeat(firing, len(notification.alerts) - firing)
        with self._lock:
            self._seen[marker] = (last, time.monotonic() + self.ttl)
            self._seen.move_to_end(marker)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            if body:
                self._bodies[hashlib.sha256(body).digest()] = (marker, last, repeat)
                while len(self._bodies) > self.size:
                    self._bodies.popitem(last=False)


class Intake:
    def __init__(
        self,
        *,
        redis: Redis,
        queue: Queue,
        keys: Keys,
        policy: Callable[[], Policy],
        limits: Limits,
        dry_run: bool,
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.keys = keys
        self.policy = policy
        self.limits = limits
        self.dry_run = dry_run
        self.applied = Applied(limits.resend_cache_seconds)
        self.wait = (limits.wait_replicas, limits.wait_timeout_ms)
        self.writer = Writer(keys, queue, limits.retention_seconds)

    def repeat(self, body: bytes) -> Repeat | None:
        """`body` is a notification this process applied (or found applied), still its
        group's last: a duplicate, known without parsing it."""
        return self.applied.repeat(body)

    def apply(self, notification: Notification, body: bytes = b"") -> IntakeResult:
        """Apply `notification` (parsed from `body`, which the resend cache keeps a hash of)."""
        marker = self.keys.group(_group_hash(notification))
        last = digest(notification)
        if self.applied.holds(marker, last):
            return IntakeResult("duplicate")
        if _same(self.redis.get(marker), last) and self._confirmed(marker, last):
            self.applied.add(marker, last, notification, body)
            return IntakeResult("duplicate")
        policy = self.policy()  # one whole set for the whole notification
        groups = _group(notification, policy)
        ctx = Context(
            policy=policy,
            notification=notification,
            now=timeline.utcnow(),
            dry_run=self.dry_run,
            stale_window_seconds=self.limits.stale_window_seconds,
        )
        for _ in range(MAX_ATTEMPTS):
            try:
                result = self._transaction(marker, last, groups, ctx)
            except WatchError:
                continue
            if result is None:  # applied meanwhile (an HA twin): a duplicate once confirmed
                if not self._confirmed(marker, last):
                    continue
                result = IntakeResult("duplicate")
            if not result.stale:  # the marker was written: Redis holds this digest now
                self.applied.add(marker, last, notification, body)
            return result
        raise Contention(f"gave up after {MAX_ATTEMPTS} conflicting writes")

    def _confirmed(self, marker: str, last: str) -> bool:
        """On the replicas; False: gone since read (a failover), to be applied again."""
        return replication.confirmed(self.redis, marker, last, *self.wait)

    def _transaction(
        self, marker: str, last: str, groups: list[_Group], ctx: Context
    ) -> IntakeResult | None:
        """Applied in one MULTI/EXEC, then WAIT; None if its digest is there already."""
        with replication.transaction(self.redis, *self.wait) as pipe:
            indexes = [self.keys.incident_key(g.hash) for g in groups]
            members = self.keys.group_incidents(key_hash(ctx.notification.group_key))
            # What every decision starts from, in one round trip with its WATCH.
            _, got, member_ids, *known = _batch(
                pipe,
                ("WATCH", marker, members, *indexes),
                ("GET", marker),
                ("SMEMBERS", members),
                *(("HMGET", index, "open", "last") for index in indexes),
            )
            if _same(got, last):
                return None
            stale = 0
            changes: list[Change] = []
            pending: dict[str, str] = {}
            seen: set[str] = set()
            for group, (open_id, last_id) in zip(groups, known, strict=True):
                change, dropped, tick, open_id = self._change(pipe, group, ctx, open_id, last_id)
                stale += dropped
                if open_id is not None:
                    seen.add(open_id)
                if change is not None:
                    changes.append(change)
                    if tick is not None:
                        pending[change.incident.id] = tick
            gone = self._others(pipe, member_ids, seen, changes, pending, ctx)
            pipe.multi()
            self._group_members(pipe, changes, gone, ctx)
            for change in changes:
                self.writer.write(pipe, change, pending.get(change.incident.id))
            if changes and self.limits.replay_size:
                record = replay.record(ctx.notification)
                limits = (self.limits.replay_size, self.limits.replay_max_bytes)
                replay.keep(pipe, self.keys, record, *limits)
            if not stale:
                # Only a fully applied notification becomes the group's "last": after a
                # stale copy, the next real resend must still be evaluated.
                pipe.set(marker, last, ex=self.limits.dedup_ttl_seconds)
            pipe.execute()
        if stale:
            log.info("dropped %d stale alerts of %s", stale, ctx.notification.group_key)
        used = ctx.policy.content_hash
        if not changes:
            return IntakeResult("duplicate", stale=stale, policy=used)
        jobs = [job for change in changes for job in change.jobs]
        return IntakeResult("accepted", [c.incident.id for c in changes], jobs, stale, used)

    def _others(
        self,
        pipe: Pipeline,
        member_ids: set[bytes],
        seen: set[str],
        changes: list[Change],
        pending: dict[str, str],
        ctx: Context,
    ) -> list[str]:
        """The group's other open incidents (its alerts split over routes): the changes
        its missing alerts make to them, added to `changes`; the ids no longer open."""
        gone: list[str] = []
        for incident_id in sorted(text(m) for m in member_ids):
            if incident_id in seen:
                continue
            found = self._absent(pipe, incident_id, ctx)
            if found is None:
                gone.append(incident_id)
            elif found[0] is not None:
                changes.append(found[0])
                if found[1] is not None:
                    pending[incident_id] = found[1]
        return gone

    def _group_members(
        self, pipe: Pipeline, changes: list[Change], gone: list[str], ctx: Context
    ) -> None:
        """Keep the group's set of open incidents: those holding its alerts, not `gone`."""
        members = self.keys.group_incidents(key_hash(ctx.notification.group_key))
        if gone:
            pipe.srem(members, *gone)
        group = ctx.notification.group_key
        for change in changes:
            incident = change.incident
            if incident.status == "open" and any(
                a.group_key == group for a in incident.alerts.values()
            ):
                pipe.sadd(members, incident.id)
                pipe.expire(members, self.limits.retention_seconds)

    def _absent(
        self, pipe: Pipeline, incident_id: str, ctx: Context
    ) -> tuple[Change | None, str | None] | None:
        """An open incident of this Alertmanager group that the notification lists no
        alert for (its route took none of them this time): what its missing alerts
        ending changes, and its pending tick; None once it is no longer open (it
        leaves the group's set)."""
        doc_key = self.keys.incident(incident_id)
        pipe.watch(doc_key)  # type: ignore[no-untyped-call]
        raw = pipe.get(doc_key)
        current = Incident.from_json(raw) if raw is not None else None
        if current is None or current.status != "open":
            return None
        return absent(current, ctx), self.writer.pending_tick(pipe, current.id)

    def _change(
        self,
        pipe: Pipeline,
        group: _Group,
        ctx: Context,
        open_id: bytes | None,
        last_id: bytes | None,
    ) -> tuple[Change | None, int, str | None, str | None]:
        """Read (under WATCH) the open or last incident of the group's key (its ids read
        already, under the same WATCH), then decide.

        Also the open incident's pending status-update tick, which a resolve or an
        escalation cancels.
        """
        known_id = open_id or last_id
        known = None
        if known_id is not None:
            doc_key = self.keys.incident(text(known_id))
            pipe.watch(doc_key)  # type: ignore[no-untyped-call]
            raw = pipe.get(doc_key)
            known = Incident.from_json(raw) if raw is not None else None
        fresh, stale = drop_stale(group.alerts, known, ctx)
        current = known if known is not None and open_id is not None else None
        tick = self.writer.pending_tick(pipe, current.id) if current is not None else None
        new_id = f"{group.hash[:12]}-{base36(int(timeline.seconds(ctx.now) * 1000))}"
        change = apply(current, fresh, ctx, key=group.key, new_id=new_id)
        return change, stale, tick, current.id if current is not None else None


def digest(notification: Notification) -> str:
    """Identity of a notification's content: its alerts, each in its state.

    startsAt is part of it, so an alert that resolves and later fires again is
    a new instance.
    """
    alerts = sorted((a.fingerprint, a.status, a.starts_at) for a in notification.alerts)
    body = json.dumps([alerts, notification.truncated_alerts])
    return hashlib.sha256(body.encode()).hexdigest()


def _group_hash(notification: Notification) -> str:
    return group_hash(notification.receiver, notification.group_key)


def _group(notification: Notification, policy: Policy) -> list[_Group]:
    """Alerts by incident key; an alert on two routes (`continue`) is in two groups."""
    groups: dict[str, list[tuple[Alert, Match]]] = {}
    for alert in notification.alerts:
        for match in evaluate(
            policy, alert.labels, annotations=alert.annotations, group_key=notification.group_key
        ):
            groups.setdefault(match.incident_key, []).append((alert, match))
    return [_Group(key, key_hash(key), alerts) for key, alerts in groups.items()]


def _same(stored: bytes | str | None, digest: str) -> bool:
    return stored is not None and text(stored) == digest
