"""A worker killed with SIGKILL in the middle of a Statuspage create: one incident, not two."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from tests.conftest import REDIS_URL, REPO, post, run_retries
from tests.test_communication import payments
from workers.jobs.contract import lane_queue


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _wait(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_during_statuspage_create_leaves_one_incident_after_the_rerun(
    live: FlaskClient, queue: Queue, vendors: Any, redis: Redis, tmp_path: Path
) -> None:
    _, sp, _ = vendors
    # Statuspage stores the create, then takes 6 s to answer (within the client's 10 s).
    sp.hold_after_create(6)
    (incident_id,) = post(live, payments()).json["incidents"]
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "ALERTPILOT_QUEUE": "aptest",
        "ALERTPILOT_POLICIES_DIR": str(REPO / "policies"),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "worker"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("w"),
    )
    try:
        job_id = f"{incident_id}-declared-statuspage"
        log = tmp_path / "worker.log"
        _wait("the statuspage job to start", lambda: f"({job_id})" in log.read_text())
        time.sleep(2.0)  # the POST is in flight: stored at Statuspage, no answer yet
        for child in _children(worker.pid):  # the work horse (and the scheduler)
            os.kill(child, signal.SIGKILL)
        comms = lane_queue(queue, "comms")
        _wait("RQ to schedule the retry", lambda: job_id in comms.scheduled_job_registry)
        assert "Work-horse terminated unexpectedly" in log.read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=5)
    # The dead horse's action lock would expire on its own after JOB_TIMEOUT (300 s),
    # which is when the crash retry can take it; spare the test that wait.
    assert redis.delete(f"aptest:lock:{incident_id}:statuspage") == 1, redis.keys("aptest:*")
    run_retries(queue, job_id)  # the retry is due
    (adopted,) = sp.incidents.values()
    assert len(adopted["incident_updates"]) == 1  # adopted, not posted to twice
    assert len([r for r in sp.requests if r.method == "POST"]) == 1
    stored = redis.hget(f"aptest:incident:{incident_id}:external", "statuspage")
    assert stored is not None and stored.decode() in sp.incidents


pytestmark = pytest.mark.e2e
