"""Redis unreachable: 503 so Alertmanager retries, and the retry is accepted once Redis is back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry
from redis import Redis

from tests.conftest import AUTH, fixture, post
from tests.support.redis_server import free_port, redis_server
from webhook.app import create_app
from webhook.settings import Settings


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

        server.start()  # same port, empty: nothing was half-written before
        assert connection.dbsize() == 0
        back = post(client, fixture("firing-two-alerts.json"))
        assert back.status_code == 200
        assert back.json["status"] == "accepted"
        assert connection.zcard("aptest:incidents:open") == 1
        assert connection.llen("rq:queue:aptest") == 3


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
    assert client.get("/api/v1/incidents", headers=AUTH).status_code == 503
