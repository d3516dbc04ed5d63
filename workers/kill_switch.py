"""The kill switch for automatic mitigations: while it is on, every mitigation job is
recorded as blocked, with the reason, and changes nothing (workers/guardrails.py).

An admin turns it on and off (`POST /api/v1/mitigations/pause`, or `alertpilot
mitigations pause` with Redis at hand); the environment can hold it on too
(ALERTPILOT_MITIGATIONS_PAUSED), which only a redeploy turns off.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis import Redis

from workers.config import SettingsError, boolean
from workers.incident import clock
from workers.incident.keys import Keys, text

ENVIRONMENT = "ALERTPILOT_MITIGATIONS_PAUSED"


def reason(redis: Redis, keys: Keys, env: Mapping[str, str]) -> str | None:
    """Why mitigations are paused, or None."""
    try:
        held = boolean(env, ENVIRONMENT, False)
    except SettingsError:  # a typo must not let mitigations run, nor fail every request
        return f"{ENVIRONMENT} is {env.get(ENVIRONMENT)!r}, not true or false: taken as paused"
    if held:
        return f"{ENVIRONMENT} is set"
    found = redis.get(keys.mitigations_paused)
    return text(found) if found is not None else None


def pause(redis: Redis, keys: Keys, why: str, *, by: str) -> str:
    """Turn it on; the reason every blocked mitigation shows."""
    shown = f"{why} (paused by {by})"
    with redis.pipeline() as pipe:  # a second pause keeps the first one's time
        pipe.set(keys.mitigations_paused, shown)
        pipe.set(keys.mitigations_paused_at, f"{clock.timestamp():.0f}", nx=True)
        pipe.execute()
    return shown


def resume(redis: Redis, keys: Keys) -> None:
    redis.delete(keys.mitigations_paused, keys.mitigations_paused_at)
