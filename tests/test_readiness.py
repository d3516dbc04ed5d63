"""/readyz answers ready or not to anyone; why a policy reload was rejected is for
those with credentials (GET /api/v1/status) and the log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis

from tests.conftest import ADMIN, write_policy
from tests.support.redis_server import free_port
from webhook.app import create_app
from webhook.app_services import services_of
from workers.config import Settings

ROUTES = """\
routes:
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
"""


@pytest.fixture
def broken(settings: Settings, redis: Redis, tmp_path: Path) -> Flask:
    """The app after a reload of a broken policy file was rejected (the old set stays)."""
    directory = write_policy(tmp_path / "secret-policies", ROUTES)
    app = create_app(
        replace(settings, policies_dir=directory), redis=redis, registry=CollectorRegistry()
    )
    (directory / "10-routes.yaml").write_text("routes: [\n")
    assert services_of(app).policies.reload() is False
    return app


def test_readyz_shows_only_ready_and_the_policy_hash(broken: Flask) -> None:
    response = broken.test_client().get("/readyz")
    policy = services_of(broken).policies.get()
    assert response.status_code == 200
    assert response.json == {"status": "ready", "policy": {"hash": policy.content_hash}}


def test_readyz_does_not_show_the_policy_path_or_the_parse_error(
    broken: Flask, tmp_path: Path
) -> None:
    body = broken.test_client().get("/readyz").get_data(as_text=True)
    assert str(tmp_path) not in body
    assert "secret-policies" not in body
    assert "10-routes.yaml" not in body


def test_readyz_is_503_when_redis_is_unreachable(settings: Settings) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    connection = Redis.from_url(url, socket_connect_timeout=1)
    app = create_app(
        replace(settings, redis_url=url), redis=connection, registry=CollectorRegistry()
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"


def test_status_needs_credentials(broken: Flask) -> None:
    response = broken.test_client().get("/api/v1/status")
    assert response.status_code == 401
    assert response.json["error"]["details"]["field"] == "Authorization"
    assert "10-routes.yaml" not in response.get_data(as_text=True)


def test_status_shows_redis_hash_routes_and_why_the_last_reload_was_rejected(
    broken: Flask,
) -> None:
    response = broken.test_client().get("/api/v1/status", headers=ADMIN)
    policy = services_of(broken).policies.get()
    assert response.status_code == 200
    assert response.json["redis"] == "ok"
    assert response.json["policy"]["hash"] == policy.content_hash
    assert response.json["policy"]["routes"] == len(policy.routes) == 1
    assert "10-routes.yaml" in response.json["policy"]["last_reload_error"]


def test_status_shows_no_reload_error_while_the_policy_is_good(client: FlaskClient) -> None:
    response = client.get("/api/v1/status", headers=ADMIN)
    assert response.status_code == 200
    assert response.json["policy"]["last_reload_error"] is None


def test_status_shows_redis_unreachable(settings: Settings) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    connection = Redis.from_url(url, socket_connect_timeout=1)
    app = create_app(
        replace(settings, redis_url=url), redis=connection, registry=CollectorRegistry()
    )
    response = app.test_client().get("/api/v1/status", headers=ADMIN)
    assert response.status_code == 200
    assert response.json["redis"] == "unreachable"
