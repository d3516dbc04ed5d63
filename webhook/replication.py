"""Intake's writes confirmed by the replicas (ALERTPILOT_REDIS_WAIT_REPLICAS): Redis WAIT,
so a notification answered 200 is on that many replicas and survives a failover to one.

WAIT counts what the connection it is sent on wrote, so it goes on the transaction's own
connection, after EXEC and before redis-py gives that connection back to the pool
(`transaction`). A duplicate found in Redis may be the retry of a notification whose
WAIT failed (its EXEC went through): its digest is written again, if it is still there,
and that write waited for (`confirmed`), which also covers every write before it.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.connection import Connection
from redis.exceptions import RedisError


class NotReplicated(RedisError):
    """The writes went through on the primary, but fewer replicas than asked for
    confirmed them in time (or the primary went away before they did): a failover now
    could lose them, so they are not answered 200 (the receiver answers 503, as for any
    Redis error). Alertmanager retries the same notification, which then finds its
    digest and waits for the replicas again, or, on a new primary that never got it,
    is applied afresh.

    Not a ConnectionError: redis-py would run a transaction that failed with one after
    EXEC again, without its WATCH, and apply it twice."""


def _wait(connection: Connection, replicas: int, timeout_ms: int) -> None:
    try:
        connection.send_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
        confirmed = int(connection.read_response())
    except RedisError as exc:  # the primary went away: no telling what the replicas got
        raise NotReplicated(f"WAIT {replicas}: {type(exc).__name__}") from exc
    if confirmed < replicas:
        raise NotReplicated(f"WAIT {replicas}: {confirmed} replicas in {timeout_ms} ms")


class _Transaction(Pipeline):
    """A MULTI/EXEC pipeline that, after EXEC, WAITs for `replicas` on its connection."""

    def __init__(self, redis: Redis, replicas: int, timeout_ms: int) -> None:
        super().__init__(redis.connection_pool, redis.response_callbacks, True, None)
        self.replicas = replicas
        self.timeout_ms = timeout_ms

    def _execute_transaction(  # type: ignore[no-untyped-def]
        self, connection: Connection, commands, raise_on_error
    ) -> list[Any]:
        replies: list[Any] = super()._execute_transaction(connection, commands, raise_on_error)
        if self.replicas:
            _wait(connection, self.replicas, self.timeout_ms)
        return replies


def transaction(redis: Redis, replicas: int, timeout_ms: int) -> Pipeline:
    """`redis.pipeline()`, whose `execute` raises NotReplicated unless `replicas` (0:
    none) confirmed the transaction within `timeout_ms`."""
    return _Transaction(redis, replicas, timeout_ms)


_DIGEST_AGAIN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return 1
"""


def confirmed(redis: Redis, marker: str, digest: str, replicas: int, timeout_ms: int) -> bool:
    """The group's digest, just read, is on `replicas` replicas (at once when 0): it is
    written again, if still there, and waited for (NotReplicated if too few confirm).
    False when it is no longer there (a failover since the read lost it)."""
    if not replicas:
        return True
    with redis.pipeline(transaction=False) as pipe:  # one connection, one round trip
        pipe.eval(_DIGEST_AGAIN, 1, marker, digest)
        pipe.execute_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
        kept, count = pipe.execute()
    if not kept:
        return False
    if count < replicas:
        raise NotReplicated(f"WAIT {replicas}: {count} replicas in {timeout_ms} ms")
    return True
