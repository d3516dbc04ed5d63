"""Intake benchmark: cost of a new notification and of a resend, against a bare Flask ceiling.

Run with `make bench`. Every figure is a ratio to the baseline measured in the
same run: a bare Flask app that parses the same JSON body and answers 200. No
network: all three go through Flask's test client; Redis is the real server.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from flask import Flask, jsonify, request
from prometheus_client import CollectorRegistry
from redis import Redis

from webhook.app import create_app
from workers.config import Settings

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "alertmanager" / "firing-two-alerts.json"
REDIS_URL = os.environ.get("ALERTPILOT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ROUNDS = 2000
HEADERS = {"Authorization": "Bearer bench", "Content-Type": "application/json"}


def bare_flask() -> Flask:
    app = Flask(__name__)

    @app.post("/api/v1/alertmanager")
    def receive() -> object:
        return jsonify({"status": "ok", "alerts": len(json.loads(request.get_data())["alerts"])})

    return app


def timed(call: Callable[[int], None], rounds: int = ROUNDS) -> list[float]:
    for i in range(50):  # warm up
        call(-1 - i)
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - start)
    return samples


def notification(i: int) -> bytes:
    doc = json.loads(FIXTURE.read_text())
    doc["groupKey"] = f'{{}}:{{alertname="HighLatency", service="api-{i}"}}'
    for n, alert in enumerate(doc["alerts"]):
        alert["labels"]["service"] = f"api-{i}"
        alert["fingerprint"] = f"{i & 0xFFFFFFFF:08x}{n:08x}"
    return json.dumps(doc).encode()


def main() -> None:
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    settings = Settings(
        policies_dir=REPO / "policies", webhook_token="bench", key_prefix="apbench:"
    )
    settings = replace(settings, queue_name="apbench")
    app = create_app(settings, redis=redis, registry=CollectorRegistry()).test_client()
    bare = bare_flask().test_client()
    body = FIXTURE.read_bytes()
    bodies = {i: notification(i) for i in range(-50, ROUNDS)}

    def check(response: object, expected: str) -> None:
        status = response.json["status"]  # type: ignore[attr-defined]
        assert status == expected, status

    baseline = timed(
        lambda i: check(bare.post("/api/v1/alertmanager", data=body, headers=HEADERS), "ok")
    )
    app.post("/api/v1/alertmanager", data=body, headers=HEADERS)
    resend = timed(
        lambda i: check(app.post("/api/v1/alertmanager", data=body, headers=HEADERS), "duplicate")
    )
    new = timed(
        lambda i: check(
            app.post("/api/v1/alertmanager", data=bodies[i], headers=HEADERS), "accepted"
        )
    )
    redis.flushdb()
    base = statistics.median(baseline)
    print(f"intake benchmark, {ROUNDS} requests each, median per request")
    print(f"  bare Flask ceiling        {base * 1e6:8.0f} us   1.00x")
    for name, samples in (("resend (duplicate)", resend), ("new incident + 3 jobs", new)):
        median = statistics.median(samples)
        p99 = sorted(samples)[int(len(samples) * 0.99)]
        print(
            f"  {name:<25} {median * 1e6:8.0f} us  {median / base:5.2f}x   p99 {p99 * 1e6:6.0f} us"
        )


if __name__ == "__main__":
    main()
