"""Redis under Sentinel (issue 18, "HA Redis"): REDIS_URL's Sentinel form, and a failover
that loses nothing answered 200 while the worker and its scheduler carry on.

The failover test runs a primary, one replica and three sentinels on loopback
(tests/support/sentinel.py), the receiver with WAIT 1, and a real `alertpilot worker`
(with RQ's scheduler), all through the Sentinel REDIS_URL; it SIGKILLs the primary while
notifications keep arriving.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from tests.conftest import ADMIN, fetch, post, timeline, write_policy
from tests.support.mitigation import latency
from tests.support.redis_server import redis_server
from tests.support.sentinel import SERVICE, SentinelCluster, sentinel_cluster
from tests.support.worker_process import wait_for, worker_process
from webhook.app import create_app
from workers.config import Settings, SettingsError
from workers.jobs.contract import enqueue, lanes
from workers.redis_connection import SENTINEL_PORT, SentinelAddress, connect, parse

PASSWORD = "s3cr3t:p@ss/w0rd"
RECORD = "tests.support.jobs.record"
ROUTES = """\
routes:
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV3
    actions: [notify]
"""
"""One incident per notification (the default incident key: its groupKey and route),
one cheap job each."""

# --- REDIS_URL ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,redis-sentinel/mymaster",
            SentinelAddress(
                (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("redis-sentinel", SENTINEL_PORT)),
                "mymaster",
            ),
        ),
        (
            "redis+sentinel://:s3cr3t%3Ap%40ss%2Fw0rd@h1:1,h2:2/alertpilot/3",
            SentinelAddress((("h1", 1), ("h2", 2)), "alertpilot", 3, None, PASSWORD),
        ),
        (
            "redis+sentinel://alertpilot:pw@[::1]:26379,[fd00::2]/svc.prod_1",
            SentinelAddress(
                (("::1", 26379), ("fd00::2", 26379)), "svc.prod_1", 0, "alertpilot", "pw"
            ),
        ),
        ("redis://:pw@localhost:6379/15", None),
        ("rediss://localhost:6380/0", None),
        ("unix:///run/redis.sock?db=2", None),
    ],
)
def test_redis_url_is_one_server_or_the_sentinels_and_their_service(
    url: str, expected: SentinelAddress | None
) -> None:
    assert parse(url) == expected
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "must start with redis://, rediss://, unix:// or redis+sentinel://"),
        (f"sentinel://:{PASSWORD}@h:26379/svc", "must start with"),
        (f"redis+sentinel://:{PASSWORD}@h:26379", "expected the service name"),
        (f"redis+sentinel://:{PASSWORD}@h:26379/", "expected the service name"),
        (f"redis+sentinel://:{PASSWORD}@h:26379/svc/zero", "database after the service"),
        (f"redis+sentinel://:{PASSWORD}@h:26379/svc/0/extra", "database after the service"),
        (f"redis+sentinel://:{PASSWORD}@h:0/svc", "sentinel 1 of 1: the port must be 1-65535"),
        (f"redis+sentinel://:{PASSWORD}@h:1,h:x/svc", "sentinel 2 of 2: the port must be"),
        (f"redis+sentinel://:{PASSWORD}@h:1,,h:2/svc", "sentinel 2 of 3 is not host[:port]"),
        (f"redis+sentinel://:{PASSWORD}@h:1/svc?db=1", "takes no ?options"),
        ("redis+sentinel://s3cr3t@h:1/svc", "credentials go as :password@"),
        # The '@' forgotten: the password is taken for a host, and still not quoted.
        ("redis+sentinel://:s3cr3t/svc", "sentinel 1 of 1 is not host[:port]"),
        ("redis+sentinel://h:1/s3cr3t@", "sentinel 1 of 1 is not host[:port]"),
    ],
)
def test_a_bad_redis_url_is_a_settings_error_naming_it_never_its_password(
    url: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_URL": url})
    said = str(caught.value)
    assert said.startswith("REDIS_URL: ")
    assert message in said
    for secret in ("s3cr3t", "p@ss", "w0rd"):
        assert secret not in said


def test_the_sentinels_password_is_its_own_setting_and_needs_a_sentinel_url(
    tmp_path: Path,
) -> None:
    password = tmp_path / "sentinel-password"
    password.write_text("sentinel-s3cr3t\n")
    url = f"redis+sentinel://:{PASSWORD.replace('@', '%40')}@h:26379/{SERVICE}"
    settings = Settings.from_env(
        {"REDIS_URL": url, "ALERTPILOT_REDIS_SENTINEL_PASSWORD_FILE": str(password)}
    )
    assert settings.redis_sentinel_password == "sentinel-s3cr3t"
    assert "s3cr3t" not in repr(settings)
    with pytest.raises(SettingsError, match="ALERTPILOT_REDIS_SENTINEL_PASSWORD: only with"):
        Settings.from_env(
            {"REDIS_URL": "redis://h:6379/0", "ALERTPILOT_REDIS_SENTINEL_PASSWORD": "x"}
        )


def test_waiting_for_replicas_is_off_by_default_and_bounded() -> None:
    assert Settings.from_env({}).redis_wait_replicas == 0
    waiting = Settings.from_env(
        {"ALERTPILOT_REDIS_WAIT_REPLICAS": "1", "ALERTPILOT_REDIS_WAIT_TIMEOUT": "250ms"}
    )
    assert (waiting.redis_wait_replicas, waiting.redis_wait_timeout_seconds) == (1, 0.25)
    with pytest.raises(SettingsError, match="ALERTPILOT_REDIS_WAIT_TIMEOUT: at most 4s"):
        Settings.from_env({"ALERTPILOT_REDIS_WAIT_TIMEOUT": "5s"})


# --- WAIT -----------------------------------------------------------------------------


def test_a_notification_no_replica_confirmed_is_503_and_so_is_its_retry(
    settings: Settings, tmp_path: Path
) -> None:
    """EXEC went through but no replica has it (there is none): not 200, and the retry,
    which finds its digest, is not answered 200 on that digest alone either."""
    with redis_server(tmp_path) as server:
        waiting = replace(
            settings, redis_url=server.url, redis_wait_replicas=1, redis_wait_timeout_seconds=0.05
        )
        client = create_app(waiting, registry=CollectorRegistry()).test_client()
        assert post(client, latency("api")).status_code == 503
        assert post(client, latency("api")).status_code == 503
        redis = Redis.from_url(server.url)
        assert redis.zcard("aptest:incidents:open") == 1  # applied once, never confirmed
        unwaiting = replace(waiting, redis_wait_replicas=0)
        client = create_app(unwaiting, registry=CollectorRegistry()).test_client()
        assert post(client, latency("api")).json["status"] == "duplicate"


# --- failover -------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    fingerprint: str
    status: int
    outcome: str | None
    started: float
    ended: float


class Posters:
    """Threads posting a new notification each (its own groupKey and fingerprint) every
    `pause` seconds, recording every answer, until stopped."""

    def __init__(self, app: Flask, threads: int = 2, pause: float = 0.1) -> None:
        self.app = app
        self.pause = pause
        self.posted: list[Posted] = []
        self.docs: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._count = itertools.count()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Posters:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        client = self.app.test_client()
        while not self._stop.is_set():
            with self._lock:
                n = next(self._count)
            doc = latency(f"svc-{n}")
            fingerprint = doc["alerts"][0]["fingerprint"]
            self.docs[fingerprint] = doc
            started = time.monotonic()
            response = post(client, doc)
            outcome = response.json.get("status") if response.status_code == 200 else None
            self.posted.append(
                Posted(fingerprint, response.status_code, outcome, started, time.monotonic())
            )
            time.sleep(self.pause)

    def ok_since(self, since: float) -> int:
        return sum(1 for p in self.posted if p.status == 200 and p.started >= since)

    def since(self, since: float) -> int:
        return sum(1 for p in self.posted if p.started >= since)


def _on_incidents(client: FlaskClient) -> dict[str, str]:
    """Every alert fingerprint on an open incident, read through the API: its incident."""
    found = client.get("/api/v1/incidents?status=open&limit=1000", headers=ADMIN)
    assert found.status_code == 200, found.json
    where: dict[str, str] = {}
    for summary in found.json["incidents"]:
        incident = client.get(f"/api/v1/incidents/{summary['id']}", headers=ADMIN).json
        for alert in incident["alerts"]:
            where[alert["fingerprint"]] = incident["id"]
    return where


def _ran(redis: Redis) -> list[str]:
    return [item.decode().split()[0] for item in redis.lrange("aptest:ran", 0, -1)]


def _schedule(queue: Queue, name: str, seconds: float) -> None:
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    assert enqueue(queue, RECORD, {"key": "aptest:ran", "name": name}, f"job-{name}", at=at)


@dataclass(frozen=True)
class Moments:
    killed: float
    failed_over: float
    rejoining: float
    rejoined: float


def _fail_over(ha: SentinelCluster, posters: Posters, queue: Queue, log: Path) -> Moments:
    """While `posters` post: cut the replica off, kill the primary, wait for the sentinels
    to promote the replica, restart the old primary as its replica. Jobs are scheduled
    to fall due during the outage and queued after it."""
    wait_for("10 notifications accepted", lambda: posters.ok_since(0) >= 10, 20, log)
    _schedule(queue, "across", 1.5)  # falls due while there is no primary
    ha.wait_synced()
    with ha.replica_cut_off():
        time.sleep(0.3)  # what is posted now is on the primary only, waiting in WAIT
        killed = time.monotonic()
        old = ha.kill_primary()
    ha.wait_for_failover(old)
    failed_over = time.monotonic()
    # The new primary has no replica yet: WAIT 1 cannot be met.
    wait_for("posts without a replica", lambda: posters.since(failed_over) >= 2, 10)
    rejoining = time.monotonic()
    ha.rejoin(old)
    rejoined = time.monotonic()
    queue.enqueue(RECORD, {"key": "aptest:ran", "name": "after"}, job_id="job-after")
    _schedule(queue, "after-scheduled", 1.0)
    wait_for("10 accepted again", lambda: posters.ok_since(rejoined) >= 10, 20, log)
    return Moments(killed, failed_over, rejoining, rejoined)


def _retry(app: Flask, posted: list[Posted], docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Alertmanager's retry of every notification that got 503, once: its outcome
    (accepted: Redis had lost it; duplicate: it had been kept) or status."""
    client = app.test_client()
    outcomes: dict[str, str] = {}
    for p in posted:
        if p.status != 200:
            response = post(client, docs[p.fingerprint])
            ok = response.status_code == 200
            outcomes[p.fingerprint] = response.json["status"] if ok else str(response.status_code)
    return outcomes


def test_every_notification_answered_200_is_on_an_incident_after_the_primary_is_killed(
    settings: Settings, tmp_path: Path
) -> None:
    began = time.monotonic()
    policies = write_policy(tmp_path / "policies", ROUTES)
    with sentinel_cluster(tmp_path / "redis") as ha:
        ha_settings = replace(
            settings,
            redis_url=ha.url,
            policies_dir=policies,
            queue_name="apha",
            redis_wait_replicas=1,
            redis_wait_timeout_seconds=0.5,
        )
        app = create_app(ha_settings, registry=CollectorRegistry())
        redis = connect(ha_settings, socket_timeout=5, socket_connect_timeout=2)
        queue = Queue("apha", connection=redis, serializer=JSONSerializer)
        (tmp_path / "worker").mkdir()
        log = tmp_path / "worker" / "worker.log"
        with worker_process(ha.url, "apha", log.parent) as worker:
            wait_for("the scheduler", lambda: redis.exists("rq:scheduler-lock:apha"), 30, log)
            _schedule(queue, "before", 0.5)
            with Posters(app) as posters:
                wait_for("the job due before the kill", lambda: "before" in _ran(redis), 20, log)
                moments = _fail_over(ha, posters, queue, log)
            retried = _retry(app, posters.posted, posters.docs)
            ran = {"across", "after", "after-scheduled"}
            wait_for("the jobs", lambda: ran <= set(_ran(redis)), 30, log)
            wait_for("the lanes drained", lambda: not any(len(q) for q in lanes(queue)), 30, log)
            assert worker.poll() is None, log.read_text()[-3000:]

        posted = posters.posted
        reader = app.test_client()
        on_incidents = _on_incidents(reader)
        lost = {p.fingerprint for p in posted if p.status == 200} - on_incidents.keys()
        windows = _windows(posted, moments)
        in_flight = [p.status for p in posted if p.started < moments.killed < p.ended]
        print(f"\nfailover: {_summary(posted, retried, windows, time.monotonic() - began)}")
        print(f"in flight at the kill: {in_flight}")

        assert not lost, f"answered 200, on no incident: {sorted(lost)}"
        assert set(retried.values()) <= {"accepted", "duplicate"}, retried
        assert set(retried) <= on_incidents.keys()
        assert in_flight and set(in_flight) == {503}, in_flight  # on the primary only
        assert windows["no replica"][200] == 0  # WAIT 1 with no replica is never a 200
        assert all(p.status in (200, 503) for p in posted)
        assert all(p.outcome == "accepted" for p in posted if p.status == 200)
        assert {"before", "across", "after", "after-scheduled"} <= set(_ran(redis))
        after = {on_incidents[p.fingerprint] for p in posted if p.started >= moments.rejoined}
        after |= {on_incidents[f] for f, outcome in retried.items() if outcome == "accepted"}
        abandoned = _notify_jobs(reader, queue, set(on_incidents.values()), after, log)
        print(f"notify jobs whose run went with the old primary: {abandoned}")


def _windows(posted: list[Posted], moments: Moments) -> dict[str, dict[int, int]]:
    """Answers by status, for the posts made wholly inside each period."""
    periods = {
        "before the kill": (0.0, moments.killed),
        "kill to failover": (moments.killed, moments.failed_over),
        "no replica": (moments.failed_over, moments.rejoining),
        "replica syncing": (moments.rejoining, moments.rejoined),
        "after rejoin": (moments.rejoined, float("inf")),
    }
    counts: dict[str, dict[int, int]] = {}
    for name, (start, end) in periods.items():
        inside = [p.status for p in posted if p.started >= start and p.ended <= end]
        counts[name] = {200: 0, 503: 0} | {s: inside.count(s) for s in inside}
    return counts


def _summary(
    posted: list[Posted], retried: dict[str, str], windows: dict[str, Any], took: float
) -> str:
    ok = sum(1 for p in posted if p.status == 200)
    outcomes = {o: list(retried.values()).count(o) for o in set(retried.values())}
    return (
        f"{len(posted)} posted, {ok} answered 200, {len(posted) - ok} 503; by period "
        f"{windows}; the {len(retried)} retries: {outcomes}; {took:.1f}s"
    )


def _notify_jobs(
    reader: FlaskClient, queue: Queue, incidents: set[str], after: set[str], log: Path
) -> list[str]:
    """Every incident's notify job ran, those queued after the failover certainly; the
    ones that did not: jobs a worker ran on the old primary after the replica was cut
    off, whose effects went with it. RQ still has each as queued or started (then
    abandoned: its maintenance reruns it, a crash retry, once its execution expires)."""
    abandoned = []
    for incident_id in sorted(incidents):
        if not any(e.get("action") == "notify" for e in timeline(reader, incident_id)):
            job = fetch(queue, f"{incident_id}-declared-notify")
            status = job.get_status() if job is not None else None
            assert incident_id not in after, f"{incident_id}: not notified\n{log.read_text()}"
            assert status in (JobStatus.QUEUED, JobStatus.STARTED), (incident_id, status)
            abandoned.append(incident_id)
    assert not any(lane.failed_job_registry.count for lane in lanes(queue))
    return abandoned


def test_the_cluster_harness_names_its_primary_and_cleans_up(tmp_path: Path) -> None:
    with sentinel_cluster(tmp_path) as ha:
        assert isinstance(ha, SentinelCluster)
        assert ha.primary_port() == ha.server_ports[0]
        processes = list(ha.processes.values())
    assert all(p.poll() is not None for p in processes)
