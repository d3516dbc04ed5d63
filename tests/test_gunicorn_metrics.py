"""/metrics of the real `alertpilot serve` (gunicorn, webhook/gunicorn_conf.py) with two
worker processes: the per-process counters are the sum of both processes', and the
series read from Redis appear once, with Redis's value, whichever process answers.

The processes are told apart by their own multiprocess files (one per pid, in the
operator's PROMETHEUS_MULTIPROC_DIR): posting goes on, in bounded rounds, until both
have counted notifications, so the sum is a sum of two. Loopback only; every wait is
bounded, and the server is stopped by pid in `_running`'s `finally`.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from tests.conftest import AUTH
from tests.test_processes import (
    _accepted_per_process,
    _free_port,
    _http,
    _notification,
    _running,
    _serve_env,
)

WORKERS = 2
ROUND = 16
"""Notifications per round, posted 4 at a time so both processes get some."""
MAX_ROUNDS = 6
SCRAPES = 8
"""Scrapes of /metrics: gunicorn hands each to either process."""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> tuple[Samples, list[str]]:
    """The samples of one /metrics answer, and every sample's name as often as it came."""
    code, body = _http("GET", f"{base}/metrics")
    assert code == 200
    samples: Samples = {}
    names = []
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
            names.append(s.name)
    return samples, names


def test_serve_with_two_workers_reports_the_sum_of_both_workers_counters(
    tmp_path: Path, redis: Redis
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = _serve_env(
        tmp_path,
        port,
        ALERTPILOT_WEB_CONCURRENCY=str(WORKERS),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    with _running(["serve"], env, tmp_path / "serve") as serve:
        serve.wait_for(f"{base}/readyz")
        serve.wait_until(
            lambda: serve.stderr().count("Booting worker with pid") >= WORKERS,
            f"{WORKERS} gunicorn workers booted",
        )

        def post(i: int) -> tuple[int, bytes]:
            return _http("POST", f"{base}/api/v1/alertmanager", _notification(i), AUTH)

        posted = 0
        per_process: dict[str, float] = {}
        for n in range(MAX_ROUNDS):
            with ThreadPoolExecutor(max_workers=4) as pool:
                replies = list(pool.map(post, range(posted, posted + ROUND)))
            posted += ROUND
            bad = [(code, body[:200]) for code, body in replies if code != 200]
            assert not bad, f"not every notification got 200: {bad}\n{serve.logs()}"
            assert {json.loads(body)["status"] for _, body in replies} == {"accepted"}
            per_process = _accepted_per_process(metrics_dir, tmp_path / f"round-{n}")
            if sum(1 for v in per_process.values() if v) >= WORKERS:
                break
        counted = {pid: v for pid, v in per_process.items() if v}
        assert len(counted) == WORKERS, f"one process took every post: {per_process}"
        assert sum(counted.values()) == posted

        open_incidents = posted  # each notification is a new group, so a new incident
        urgent_jobs = redis.llen("rq:queue:aptest-urgent")  # no worker runs them
        assert urgent_jobs > 0
        for _ in range(SCRAPES):
            samples, names = scrape(base)
            accepted = ("alertpilot_notifications_received_total", (("outcome", "accepted"),))
            intake = (
                "alertpilot_http_request_duration_seconds_count",
                (("code", "200"), ("endpoint", "/api/v1/alertmanager"), ("method", "POST")),
            )
            firing = ("alertpilot_alerts_received_total", (("status", "firing"),))
            assert samples[accepted] == posted
            assert samples[intake] == posted
            assert samples[firing] == 2 * posted  # two alerts in each notification
            # Read from Redis once per scrape, by the process answering: never summed.
            assert names.count("alertpilot_mitigations_paused") == 1
            assert samples[("alertpilot_queue_jobs", (("lane", "urgent"),))] == urgent_jobs
            opened = sum(v for (n, _), v in samples.items() if n == "alertpilot_incidents_open")
            assert opened == open_incidents
