"""Redis unreachable: 503 so Alertmanager retries, and the retry is accepted once Redis is back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from redis import ConnectionPool, Redis
from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import ADMIN, AUTH, LANE_SUFFIXES, REDIS_URL, fixture, post
from tests.support.redis_server import free_port, redis_server
from webhook.app import create_app
from workers.config import Settings


def test_redis_down_is_503_and_the_same_notification_is_accepted_when_it_is_back(
    settings: Settings, tmp_path: Path
) -> None:
    with redis_server(tmp_path) as server:
        connection = Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=1)
        client = create_app(
            replace(settings, redis_url=server.url),
            redis=connection,
            registry=CollectorRegistry(),
        ).test_client()
        server.stop()

        down = post(client, fixture("firing-two-alerts.json"))
        assert down.status_code == 503
        assert down.json["error"]["code"] == "unavailable"
        assert down.headers["Retry-After"]
        assert client.get("/readyz").status_code == 503

        server.start()  # same port
        back = post(client, fixture("firing-two-alerts.json"))
        assert back.status_code == 200
        assert back.json["status"] == "accepted"
        assert connection.zcard("aptest:incidents:open") == 1
        assert sum(connection.llen(f"rq:queue:aptest{s}") for s in LANE_SUFFIXES) == 3


def test_closed_port_is_503_not_500(settings: Settings) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    connection = Redis.from_url(url, socket_connect_timeout=1)
    client = create_app(
        replace(settings, redis_url=url), redis=connection, registry=CollectorRegistry()
    ).test_client()
    response = client.post(
        "/api/v1/alertmanager", json=fixture("firing-two-alerts.json"), headers=AUTH
    )
    assert response.status_code == 503
    assert client.get("/api/v1/incidents", headers=ADMIN).status_code == 503


class FailingConnection(Connection):
    """Redis goes away after `allowed` round trips (every packed send is one)."""

    allowed = 0
    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        FailingConnection.sends += 1
        if FailingConnection.sends > FailingConnection.allowed:
            raise RedisConnectionError("connection lost (test)")
        super().send_packed_command(command, check_health)


def test_redis_lost_at_any_point_of_intake_leaves_nothing_half_written(
    settings: Settings, redis: Redis
) -> None:
    """Whichever round trip fails: 503 and Redis holds none of it, or 200 and all of it."""
    pool = ConnectionPool.from_url(REDIS_URL, connection_class=FailingConnection)
    flaky = Redis(connection_pool=pool, retry=None)
    uncached = replace(settings, resend_cache_seconds=0)  # Redis is flushed between posts
    client = create_app(uncached, redis=flaky, registry=CollectorRegistry()).test_client()
    FailingConnection.allowed, FailingConnection.sends = 10_000, 0
    assert post(client, fixture("firing-two-alerts.json")).status_code == 200
    needed = FailingConnection.sends
    assert needed >= 3  # GET, then WATCH + reads, then MULTI/EXEC
    outcomes: list[int] = []
    for allowed in range(needed):
        redis.flushdb()
        pool.disconnect()
        FailingConnection.allowed, FailingConnection.sends = allowed, 0
        response = post(client, fixture("firing-two-alerts.json"))
        if response.status_code == 200:  # only once EXEC went through
            assert redis.zcard("aptest:incidents:open") == 1
            assert sum(redis.llen(f"rq:queue:aptest{s}") for s in LANE_SUFFIXES) == 3
            outcomes.append(200)
            continue
        assert response.status_code == 503, allowed
        assert redis.dbsize() == 0, f"half-written after {allowed} round trips: {redis.keys()}"
        outcomes.append(503)
    pool.disconnect()
    assert outcomes[:3] == [503, 503, 503]
