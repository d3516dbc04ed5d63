"""The guardrails every mitigation passes before any call to the API server.

All state lives in Redis, so the limits hold across every worker: the kill
switch, the per-incident attempt cap, the per-target cooldown and the hourly
budget. The allowlist and caps come from the policy's `mitigations:` section,
carried in the job. A refusal is a reason, written on the timeline.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis

from workers.config import boolean
from workers.keys import Keys, text


@dataclass(frozen=True)
class Guard:
    dry_run: bool = True
    namespaces: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    max_replicas: int = 50
    max_factor: float = 3.0
    cooldown_seconds: int = 600
    attempts_per_incident: int = 2
    budget_per_hour: int = 20

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Guard:
        """The `guardrails` the intake put into the job (the policy's `mitigations:`)."""
        doc = params.get("guardrails") or {}
        allow = doc.get("allow") or {}
        return cls(
            dry_run=bool(doc.get("dry_run", True)),
            namespaces=tuple(allow.get("namespaces") or ()),
            workloads=tuple(allow.get("workloads") or ()),
            max_replicas=int(doc.get("max_replicas", 50)),
            max_factor=float(doc.get("max_factor", 3.0)),
            cooldown_seconds=_seconds(str(doc.get("cooldown", "10m"))),
            attempts_per_incident=int(doc.get("attempts_per_incident", 2)),
            budget_per_hour=int(doc.get("budget_per_hour", 20)),
        )


def paused(redis: Redis, keys: Keys, env: Mapping[str, str]) -> str | None:
    """Why mitigations are paused (kill switch in Redis, or the environment), or None."""
    if boolean(env, "ALERTPILOT_MITIGATIONS_PAUSED", False):
        return "ALERTPILOT_MITIGATIONS_PAUSED is set"
    reason = redis.get(keys.mitigations_paused)
    return text(reason) if reason is not None else None


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
) -> str | None:
    """The reason this mitigation may not run now, or None (then it is counted)."""
    stop = paused(redis, keys, env)
    if stop is not None:
        return f"mitigations are paused: {stop}"
    if namespace not in guard.namespaces:
        return f"namespace {namespace!r} is not in the mitigation allowlist"
    if guard.workloads and name not in guard.workloads:
        return f"{namespace}/{name} is not in the mitigation allowlist"
    attempts = int(redis.get(keys.attempts(incident_id, action)) or 0)
    if attempts >= guard.attempts_per_incident:
        return f"{action} was tried {attempts} times for this incident: a person decides now"
    if redis.exists(keys.cooldown(action, namespace, name)):
        return f"{namespace}/{name} is cooling down after the last {action}"
    hour = keys.budget(int(time.time() // 3600))
    used = int(redis.incr(hour))
    redis.expire(hour, 7200)
    if used > guard.budget_per_hour:
        redis.decr(hour)
        return f"the mitigation budget ({guard.budget_per_hour} an hour) is spent"
    return None


def applied(
    redis: Redis, keys: Keys, guard: Guard, *, incident_id: str, action: str, target: str
) -> None:
    """After a change: count the attempt and start the target's cooldown."""
    namespace, _, name = target.partition("/")
    with redis.pipeline() as pipe:
        pipe.incr(keys.attempts(incident_id, action))
        pipe.expire(keys.attempts(incident_id, action), 90 * 24 * 3600)
        pipe.set(keys.cooldown(action, namespace, name), incident_id, ex=guard.cooldown_seconds)
        pipe.execute()


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = duration[:-1], duration[-1]
    return int(number) * units[unit] if number.isdigit() and unit in units else 600
