"""The worker alertpilot runs (workers/runner.py): lanes by urgency, a scheduler that rides
out a Redis restart, and a prompt stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import REDIS_URL, REPO
from tests.support.redis_server import redis_server
from tests.support.worker_process import wait_for, worker_process
from workers.jobs.contract import LANES, RUN_ACTION, RUN_TICK, enqueue, lane, lane_queue
from workers.runner import HEARTBEAT_FILE, make_worker

RECORD = "tests.support.jobs.record"


def _names(redis: Redis, key: str) -> list[str]:
    return [item.decode().split()[0] for item in redis.lrange(key, 0, -1)]


def test_each_action_has_one_lane_pages_first_then_communication() -> None:
    assert lane(RUN_ACTION, {"action": "page", "transition": "resolved"}) == "urgent"
    for action in ("statuspage", "notify"):
        assert lane(RUN_ACTION, {"action": action, "transition": "update"}) == "comms"
    for action in ("scale_up", "rate_limit", "rollout_restart", "rollback"):
        assert lane(RUN_ACTION, {"action": action, "transition": "declared"}) == ""
    assert lane(RUN_TICK, {"action": "page"}) == ""
    assert LANES[0] == "urgent"


def test_the_worker_takes_the_urgent_lane_before_bulk_work_queued_earlier(redis: Redis) -> None:
    queue = Queue("aptest", connection=redis, serializer=JSONSerializer)
    for n in range(3):
        queue.enqueue(RECORD, {"key": "aptest:ran", "name": f"bulk{n}"})
    lane_queue(queue, "comms").enqueue(RECORD, {"key": "aptest:ran", "name": "comms"})
    lane_queue(queue, "urgent").enqueue(RECORD, {"key": "aptest:ran", "name": "page"})

    make_worker(redis, "aptest").work(burst=True)

    assert _names(redis, "aptest:ran") == ["page", "comms", "bulk0", "bulk1", "bulk2"]


def test_scheduled_jobs_run_within_seconds_of_redis_coming_back(tmp_path: Path) -> None:
    """Redis stops for 5 s (AOF: its data is kept) while jobs fall due; RQ's own scheduler
    process died on the first error and came back only at maintenance, 10 minutes on."""
    with redis_server(tmp_path, persist=True) as server:
        redis = Redis.from_url(server.url)
        queue = Queue("aprun", connection=redis, serializer=JSONSerializer)
        due = datetime.now(UTC) + timedelta(seconds=3)
        for name, at in (("during", due), ("after", due + timedelta(seconds=5))):
            enqueue(queue, RECORD, {"key": "ran", "name": name}, f"job-{name}", at=at)
        beat = tmp_path / HEARTBEAT_FILE
        log = tmp_path / "worker.log"
        with worker_process(server.url, "aprun", tmp_path) as worker:
            wait_for("the scheduler", lambda: redis.exists("rq:scheduler-lock:aprun"), 30)
            server.stop()
            time.sleep(5)  # real time: the worker and its scheduler are other processes
            beat_during = beat.stat().st_mtime
            server.start()
            back = time.time()
            wait_for("both jobs", lambda: len(redis.lrange("ran", 0, -1)) == 2, 30, log)
            ran = {n: float(t) for n, t in (i.decode().split() for i in redis.lrange("ran", 0, -1))}
            assert ran["during"] - back < 5, log.read_text()
            assert beat_during > back - 5  # the scheduler's loop went on while Redis was away
            assert "raised an exception" not in log.read_text()
            assert worker.poll() is None  # no exit on a Redis outage
            worker.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            worker.wait(timeout=30)
            assert time.monotonic() - stopping < 10, log.read_text()


def test_a_burst_worker_stops_soon_after_its_last_job(tmp_path: Path, redis: Redis) -> None:
    """RQ's pubsub thread waits up to 60 s for a message; the stop waited that out."""
    Queue("aptest", connection=redis, serializer=JSONSerializer).enqueue(
        RECORD, {"key": "aptest:ran", "name": "one"}
    )
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "ALERTPILOT_QUEUE": "aptest",
        "ALERTPILOT_POLICIES_DIR": str(REPO / "policies"),
        "PYTHONPATH": str(REPO),
    }
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "webhook.cli", "worker", "--burst"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
        check=True,
    )
    took = time.monotonic() - started
    assert _names(redis, "aptest:ran") == ["one"]
    assert took < 15, f"{took:.1f}s"
