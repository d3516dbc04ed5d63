"""The replay buffer (`policy diff --replay`) is bounded by count and by bytes."""

from __future__ import annotations

import json
from dataclasses import replace

from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis

from tests.conftest import ADMIN, fixture, post
from webhook.app import create_app
from workers.config import Settings
from workers.incident.keys import Keys


def _client(settings: Settings, redis: Redis, *, size: int, max_bytes: int) -> FlaskClient:
    bounded = replace(settings, replay_size=size, replay_max_bytes=max_bytes)
    return create_app(bounded, redis=redis, registry=CollectorRegistry()).test_client()


def _notification(n: int, padding: int = 0) -> dict[str, object]:
    doc = fixture("firing-two-alerts.json")
    doc["groupKey"] = f'{{}}:{{service="svc-{n}"}}'
    for i, alert in enumerate(doc["alerts"]):
        alert["labels"]["service"] = f"svc-{n}"
        alert["fingerprint"] = f"{n:08x}{i:08x}"
        alert["annotations"]["description"] = "x" * padding
    return doc


def _recorded(redis: Redis, keys: Keys) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in redis.lrange(keys.replay, 0, -1)]


def test_the_oldest_go_first_once_the_bytes_pass_the_bound(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    client = _client(settings, redis, size=1000, max_bytes=20_000)
    for n in range(40):
        assert post(client, _notification(n, padding=500)).json["status"] == "accepted"
    entries = redis.lrange(keys.replay, 0, -1)
    total = sum(len(e) for e in entries)
    assert total <= 20_000
    assert int(redis.get(keys.replay_bytes) or 0) == total
    assert 5 < len(entries) < 40  # some kept, the oldest dropped
    kept = [str(doc["groupKey"]) for doc in _recorded(redis, keys)]
    assert kept[0] == '{}:{service="svc-39"}'  # newest first
    assert '{}:{service="svc-0"}' not in kept


def test_the_count_bound_still_holds(settings: Settings, redis: Redis, keys: Keys) -> None:
    client = _client(settings, redis, size=3, max_bytes=10_000_000)
    for n in range(5):
        post(client, _notification(n))
    entries = redis.lrange(keys.replay, 0, -1)
    assert len(entries) == 3
    assert int(redis.get(keys.replay_bytes) or 0) == sum(len(e) for e in entries)


def test_a_notification_larger_than_the_bound_is_accepted_but_not_kept(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    client = _client(settings, redis, size=100, max_bytes=4_000)
    post(client, _notification(1))
    response = post(client, _notification(2, padding=8_000))
    assert response.json["status"] == "accepted"
    assert [doc["groupKey"] for doc in _recorded(redis, keys)] == ['{}:{service="svc-1"}']
    assert int(redis.get(keys.replay_bytes) or 0) == len(redis.lindex(keys.replay, 0) or b"")


def test_a_lost_byte_count_heals_and_never_stops_recording(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    """A count larger than the list (its list deleted by hand) must not make every later
    record drop itself; nor may a count that went missing let the list grow unbounded."""
    client = _client(settings, redis, size=100, max_bytes=50_000)
    post(client, _notification(1))
    redis.delete(keys.replay)
    redis.set(keys.replay_bytes, 10_000_000)
    post(client, _notification(2))
    post(client, _notification(3))
    entries = redis.lrange(keys.replay, 0, -1)
    assert [json.loads(e)["groupKey"] for e in entries] == [
        '{}:{service="svc-3"}',
        '{}:{service="svc-2"}',
    ]
    assert int(redis.get(keys.replay_bytes) or 0) == sum(len(e) for e in entries)


def test_the_bytes_are_a_metric(settings: Settings, redis: Redis, keys: Keys) -> None:
    client = _client(settings, redis, size=100, max_bytes=1_000_000)
    post(client, _notification(1))
    size = int(redis.get(keys.replay_bytes) or 0)
    assert size > 0
    metrics = client.get("/metrics", headers=ADMIN).get_data(as_text=True)
    assert f"alertpilot_replay_bytes {float(size)}" in metrics
