"""Redis locks a job holds, and giving them back when its work horse is killed.

A work horse killed while it held a lock left it until it expired (the action lock:
JOB_TIMEOUT, 300 s), and RQ's crash retry of that job waited it out, retry after retry:
its first real try came about 350 s after the crash, on the 5th of 6 allowed. Each lock
here holds the id of its job and is listed in the job's set of locks; when the worker
sees its work horse die (workers/runner.py), it releases those still holding that id.
Two runs of one job at once (RQ can deliver a job twice) still exclude each other: a
lock is never taken over, only released by the worker whose horse died holding it.
"""

from __future__ import annotations

from redis import Redis
from redis.lock import Lock

from workers.jobs.contract import JOB_TIMEOUT

_RELEASE_DEAD = """
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('GET', name) == ARGV[1] then
    redis.call('DEL', name)
  end
end
redis.call('DEL', KEYS[1])
"""


def acquire(
    redis: Redis, name: str, job_id: str, held: str, *, timeout: float, wait: float
) -> Lock | None:
    """The lock `name` for `job_id`, listed in `held` (the job's set of locks); None if
    another holder keeps it past `wait`."""
    if not job_id:
        raise ValueError("a job lock needs the job's id")
    lock: Lock = redis.lock(name, timeout=timeout, blocking_timeout=wait)
    if not lock.acquire(token=job_id):
        return None
    with redis.pipeline() as pipe:
        pipe.sadd(held, name)
        pipe.expire(held, JOB_TIMEOUT * 2)
        pipe.execute()
    return lock


def release_dead(redis: Redis, held: str, job_id: str) -> None:
    """Release every lock in `held` that still holds `job_id`: its work horse is dead."""
    redis.eval(_RELEASE_DEAD, 1, held, job_id)
