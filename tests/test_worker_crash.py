"""A worker killed with SIGKILL in the middle of a vendor call: after the crash retry, the
page, the Statuspage incident and the scale-up each happened once.

Each test runs a real `alertpilot worker`, has the vendor's stand-in take the call and hold
its answer back, kills the work horse meanwhile, and runs RQ's crash retry in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from tests.conftest import REDIS_URL, REPO, ROUTING_KEY, post, run_retries, timeline
from tests.support.mitigation import MitigationBench, entries, latency
from tests.test_communication import payments
from workers.jobs.contract import lane_queue

HOLD_S = 5.0
"""How long a stand-in holds its answer: well inside the clients' timeouts (10 s, 30 s)."""


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


@contextlib.contextmanager
def _worker(log: Path, policies: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`alertpilot worker` on this test's Redis, queue and `policies`; stopped on the way out."""
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "ALERTPILOT_QUEUE": "aptest",
        "ALERTPILOT_POLICIES_DIR": str(policies),
    }
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "webhook.cli", "worker"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            yield worker
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=5)


def _kill_work_horse(worker: subprocess.Popen[bytes], log: Path, lane: Queue, job_id: str) -> None:
    """SIGKILL the work horse running `job_id` (and the scheduler), then wait for RQ to
    schedule the crash retry."""
    for child in _children(worker.pid):
        os.kill(child, signal.SIGKILL)
    _wait("RQ to schedule the retry", lambda: job_id in lane.scheduled_job_registry)
    assert "Work-horse terminated unexpectedly" in log.read_text()


def _given_back_by_the_worker(redis: Redis, job_id: str, *names: str) -> None:
    """The worker saw its horse die and released the locks it held in the job's name
    (workers/jobs/locks.py): the crash retry takes them at once instead of waiting for
    them to expire (300 s and 120 s), and the test deletes nothing itself."""
    for name in names:
        assert redis.get(f"aptest:lock:{name}") is None, (name, redis.keys("aptest:lock:*"))
    assert not redis.exists(f"aptest:job-locks:{job_id}")


def _effects(redis: Redis, action: str) -> dict[str, bytes | None]:
    return {key.decode(): redis.get(key) for key in redis.keys(f"aptest:effect:*-{action}")}


def test_sigkill_during_statuspage_create_leaves_one_incident_after_the_rerun(
    live: FlaskClient, queue: Queue, vendors: Any, redis: Redis, tmp_path: Path
) -> None:
    _, sp, _ = vendors
    # Statuspage stores the create, then takes 6 s to answer (within the client's 10 s).
    sp.hold_after_create(6)
    (incident_id,) = post(live, payments()).json["incidents"]
    job_id = f"{incident_id}-declared-statuspage"
    log = tmp_path / "worker.log"
    with _worker(log, REPO / "policies") as worker:
        _wait("the statuspage job to start", lambda: f"({job_id})" in log.read_text())
        # The POST is in flight: stored at Statuspage, no answer yet. (Not sp.incidents: the
        # stand-in holds its lock while it holds the answer.)
        time.sleep(2.0)
        _kill_work_horse(worker, log, lane_queue(queue, "comms"), job_id)
    _given_back_by_the_worker(redis, job_id, f"{incident_id}:statuspage")
    run_retries(queue, job_id)  # the retry is due
    (adopted,) = sp.incidents.values()
    assert len(adopted["incident_updates"]) == 1  # adopted, not posted to twice
    assert len([r for r in sp.requests if r.method == "POST"]) == 1
    stored = redis.hget(f"aptest:incident:{incident_id}:external", "statuspage")
    assert stored is not None and stored.decode() in sp.incidents


def test_sigkill_during_pagerduty_trigger_leaves_one_open_alert_after_the_rerun(
    live: FlaskClient, queue: Queue, vendors: Any, redis: Redis, tmp_path: Path
) -> None:
    pd, _, _ = vendors
    pd.hold_after_accept(HOLD_S)  # PagerDuty takes the trigger, the answer waits
    (incident_id,) = post(live, payments()).json["incidents"]
    job_id = f"{incident_id}-declared-page"
    log = tmp_path / "worker.log"
    with _worker(log, REPO / "policies") as worker:
        _wait("PagerDuty to take the trigger", lambda: pd.events("trigger"))
        _kill_work_horse(worker, log, lane_queue(queue, "urgent"), job_id)
    assert [e["dedup_key"] for e in pd.events("trigger")] == [incident_id]  # before the rerun
    assert not [e for e in timeline(live, incident_id) if e.get("action") == "page"]
    _given_back_by_the_worker(redis, job_id, f"{incident_id}:page")
    run_retries(queue, job_id)
    # The rerun sent the trigger again, with the same dedup_key: PagerDuty adds it to the
    # alert the first one opened (one page for the responder), it opens none.
    assert [e["dedup_key"] for e in pd.events("trigger")] == [incident_id, incident_id]
    assert pd.alerts == {(ROUTING_KEY, incident_id): "triggered"}
    assert pd.opened == [(ROUTING_KEY, incident_id)]
    (paged,) = [e for e in timeline(live, incident_id) if e.get("action") == "page"]
    assert (paged["kind"], paged["transition"]) == ("succeeded", "declared")
    assert f"dedup_key {incident_id}" in paged["message"]
    assert _effects(redis, "page") == {f"aptest:effect:{job_id}": b"succeeded"}
    assert redis.hget("aptest:stats:jobs_finished", "page|succeeded") == b"1"


def test_sigkill_during_scale_write_scales_once_after_the_rerun(
    mitigation: MitigationBench, tmp_path: Path
) -> None:
    kube, redis, queue = mitigation.kube, mitigation.redis, mitigation.queue
    app = mitigation.app()  # scale_up by 4 (max 20), dry run off: production/api 4 -> 8
    kube.hold_after_write("deployments/scale", HOLD_S)  # the API server takes it, then waits

    def scale_writes() -> list[Any]:
        return [r for r in kube.requests if r.path.endswith("/scale") and r.method != "GET"]

    (incident_id,) = post(app, latency()).json["incidents"]
    job_id = f"{incident_id}-declared-scale_up"
    log = tmp_path / "worker.log"
    with _worker(log, tmp_path / "policies") as worker:
        _wait("the API server to take the scale write", scale_writes)
        _kill_work_horse(worker, log, queue, job_id)
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8  # the write landed
    assert entries(app, incident_id, "scale_up") == []  # and nothing says so yet
    _given_back_by_the_worker(redis, job_id, f"{incident_id}:scale_up", "target:production/api")
    run_retries(queue, job_id)
    # The rerun repeated the first run's decision (4 -> 8), found 8 there and wrote nothing.
    assert json.loads(redis.get(f"aptest:intent:{job_id}") or "") == {"current": 4, "desired": 8}
    (write,) = scale_writes()
    assert (write.method, write.status, write.body["spec"]["replicas"]) == ("PUT", 200, 8)
    deployment = kube.deployment("production", "api")
    assert deployment["spec"]["replicas"] == 8
    assert deployment["metadata"]["generation"] == 2  # one change of the spec
    (done,) = entries(app, incident_id, "scale_up")
    assert (done["kind"], done["message"]) == ("succeeded", "scaled production/api from 4 to 8")
    assert _effects(redis, "scale_up") == {f"aptest:effect:{job_id}": b"succeeded"}
    assert redis.get(f"aptest:incident:{incident_id}:attempts:scale_up") == b"1"
    revert = redis.hgetall(f"aptest:incident:{incident_id}:mitigation:scale_up")
    assert (revert[b"before"], revert[b"after"]) == (b"4", b"8")  # the revert puts back 4


pytestmark = pytest.mark.e2e
