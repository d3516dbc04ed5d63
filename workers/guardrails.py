"""The guardrails every mitigation passes before any call to the API server.

All state lives in Redis, so the limits hold across every worker: the kill
switch, the per-incident attempt cap, the per-target cooldown and the hourly
budget. The allowlist and caps come from the `mitigations:` section of the policy in
force when the job runs (not when it was queued): a policy tightened since, or
a kill switch thrown since, reaches work already queued or approved. A refusal
is a reason, written on the timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis import Redis

from workers import kill_switch
from workers.incident import clock
from workers.incident.durations import DurationError, parse_duration
from workers.incident.keys import Keys, text
from workers.policy.model import Guardrails


@dataclass(frozen=True)
class Guard:
    dry_run: bool = True
    namespaces: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    """A workload carrying all these labels is allowed too (a label selector)."""
    max_replicas: int = 50
    max_factor: float = 3.0
    cooldown_seconds: int = 600
    attempts_per_incident: int = 2
    budget_per_hour: int = 20

    @classmethod
    def from_policy(cls, doc: Guardrails, *, dry_run: bool = False) -> Guard:
        """The policy's `mitigations:`; `dry_run` also when the route in force says so."""
        return cls(
            dry_run=doc.dry_run or dry_run,
            namespaces=tuple(doc.allow.namespaces),
            workloads=tuple(doc.allow.workloads),
            labels=tuple(sorted(doc.allow.labels.items())),
            max_replicas=doc.max_replicas,
            max_factor=doc.max_factor,
            cooldown_seconds=seconds(doc.cooldown, 600),
            attempts_per_incident=doc.attempts_per_incident,
            budget_per_hour=doc.budget_per_hour,
        )


def paused(redis: Redis, keys: Keys, env: Mapping[str, str]) -> str | None:
    """Why mitigations are paused (kill switch in Redis, or the environment), or None."""
    return kill_switch.reason(redis, keys, env)


@dataclass(frozen=True)
class Refusal:
    reason: str
    needs_person: bool = False
    """The attempt cap is reached: a person takes over (workers/handoff.py)."""


def refuse(
    redis: Redis,
    keys: Keys,
    guard: Guard,
    *,
    env: Mapping[str, str],
    incident_id: str,
    action: str,
    namespace: str,
    name: str,
    labels: Callable[[], Mapping[str, str]],
) -> Refusal | None:
    """Why this mitigation may not run now, or None.

    `labels` reads the target's labels; it is called only when the allowlist
    has a label selector and does not name the target. The cooldown is checked
    here and again under the target lock (`claim`), where the budget is spent.
    """
    stop = paused(redis, keys, env)
    if stop is not None:
        return Refusal(f"mitigations are paused: {stop}")
    if namespace not in guard.namespaces:
        return Refusal(f"namespace {namespace!r} is not in the mitigation allowlist")
    if not _allowed(guard, name, labels):
        return Refusal(f"{namespace}/{name} is not in the mitigation allowlist")
    attempts = int(redis.get(keys.attempts(incident_id, action)) or 0)
    if attempts >= guard.attempts_per_incident:
        message = f"{action} was tried {attempts} times for this incident: a person decides now"
        return Refusal(message, needs_person=True)
    return cooling(redis, keys, action, namespace, name)


def cooling(redis: Redis, keys: Keys, action: str, namespace: str, name: str) -> Refusal | None:
    until = redis.get(keys.cooldown(action, namespace, name))
    if until is not None and _until(until) > clock.timestamp():
        return Refusal(f"{namespace}/{name} is cooling down after the last {action}")
    return None


def _until(stored: bytes | str) -> float:
    """The end of a cooldown as stored (seconds since the epoch); a value written before
    cooldowns carried their end (an incident id) counts as running until it expires."""
    try:
        return float(text(stored))
    except ValueError:
        return float("inf")


BUDGET_TTL = 7200
"""Seconds an hour's budget count, and a job's claim on it, are kept."""


def claim(
    redis: Redis,
    keys: Keys,
    guard: Guard,
    *,
    env: Mapping[str, str],
    action: str,
    namespace: str,
    name: str,
    job_id: str,
) -> Refusal | None:
    """Under the target lock, just before the change: the kill switch and the cooldown
    once more (thrown, or another incident acted, while this job waited for the lock),
    then one unit of the hourly budget, once per job: a rerun of a job whose run died
    holding a unit (a killed work horse) takes no second one."""
    stop = paused(redis, keys, env)
    if stop is not None:
        return Refusal(f"mitigations are paused: {stop}")
    refusal = cooling(redis, keys, action, namespace, name)
    if refusal is not None:
        return refusal
    if not job_id:
        raise ValueError("a budget unit is claimed by a job: job_id is required")
    hour = keys.budget(int(clock.timestamp() // 3600))
    if not redis.set(keys.budget_claim(job_id), hour, nx=True, ex=BUDGET_TTL):
        return None  # this job's earlier run took the unit and neither used nor gave it back
    used = int(redis.incr(hour))
    redis.expire(hour, BUDGET_TTL)
    if used > guard.budget_per_hour:
        refund(redis, keys, job_id)
        return Refusal(f"the mitigation budget ({guard.budget_per_hour} an hour) is spent")
    return None


def refund(redis: Redis, keys: Keys, job_id: str) -> None:
    """Give back the unit this job claimed, to the hour it came from, when the change did
    not happen (failed, or nothing to do)."""
    hour = redis.getdel(keys.budget_claim(job_id))
    if hour is not None:
        redis.decr(text(hour))


def _allowed(guard: Guard, name: str, labels: Callable[[], Mapping[str, str]]) -> bool:
    """Named in `workloads`, or carrying every label of the selector; both empty: any."""
    if not guard.workloads and not guard.labels:
        return True
    if name in guard.workloads:
        return True
    if not guard.labels:
        return False
    found = labels()
    return all(found.get(key) == value for key, value in guard.labels)


def applied(
    redis: Redis, keys: Keys, guard: Guard, *, incident_id: str, action: str, target: str
) -> None:
    """After a change: count the attempt and start the target's cooldown."""
    namespace, _, name = target.partition("/")
    with redis.pipeline() as pipe:
        pipe.incr(keys.attempts(incident_id, action))
        pipe.expire(keys.attempts(incident_id, action), 90 * 24 * 3600)
        # The end by alertpilot's clock decides; the TTL only clears the key away.
        until = clock.timestamp() + guard.cooldown_seconds
        pipe.set(keys.cooldown(action, namespace, name), f"{until:.3f}", ex=guard.cooldown_seconds)
        pipe.execute()


def seconds(duration: str, default: int) -> int:
    """'1h30m' -> 5400; `default` for a value that is not a duration."""
    try:
        return int(parse_duration(duration).total_seconds())
    except DurationError:
        return default
