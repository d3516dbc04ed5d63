"""`alertpilot worker`: an RQ worker with its scheduler, reading the JSON job payloads."""

from __future__ import annotations

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer


def run_worker(redis_url: str, queue_name: str, *, burst: bool = False) -> int:
    redis = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    worker = Worker([queue], connection=redis, serializer=JSONSerializer)
    worker.work(with_scheduler=True, burst=burst)
    return 0
