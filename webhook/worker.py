"""`alertpilot worker`: an RQ worker with its scheduler, reading the JSON job payloads."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from workers.policy.store import shared


def run_worker(
    redis_url: str,
    queue_name: str,
    *,
    policies_dir: Path,
    reload_seconds: float,
    burst: bool = False,
) -> int:
    """The policy set is loaded and watched here, in the parent: the work horses RQ
    forks start with it parsed, and each mitigation job refreshes it as it starts."""
    shared(policies_dir).watch(reload_seconds)
    redis = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    worker = Worker([queue], connection=redis, serializer=JSONSerializer)
    worker.work(with_scheduler=True, burst=burst)
    return 0
