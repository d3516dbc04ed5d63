"""`alertpilot worker`: the job runtime's worker (workers/runner.py) over every lane,
with the policy set loaded and watched in the parent."""

from __future__ import annotations

from pathlib import Path

from workers.config import Settings
from workers.policy.store import shared
from workers.redis_connection import connect
from workers.runner import HEARTBEAT_FILE, make_worker, preload

__all__ = ["HEARTBEAT_FILE", "run_worker"]


def run_worker(settings: Settings, *, heartbeat_dir: Path | None, burst: bool = False) -> int:
    """The policy set is loaded and watched here, in the parent: the work horses RQ
    forks start with it parsed, and each mitigation job refreshes it as it starts."""
    shared(settings.policies_dir).watch(settings.policy_reload_seconds)
    preload(settings)
    redis = connect(settings)  # RQ's scheduler rebuilds its own pool from this one's
    worker = make_worker(redis, settings.queue_name, heartbeat_dir=heartbeat_dir)
    worker.work(with_scheduler=True, burst=burst)
    return 0
