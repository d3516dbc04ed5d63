"""Shared fixtures: a real Redis database, cleaned around each test, and the app on it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from werkzeug.serving import make_server

from tests.support.chat_standin import ChatStandIn
from tests.support.clock import AheadClock
from tests.support.kube_standin import KubeStandIn
from tests.support.pagerduty_standin import PagerDutyStandIn
from tests.support.statuspage_standin import StatuspageStandIn
from webhook.app import create_app
from workers.config import Settings
from workers.incident import clock
from workers.incident.keys import Keys
from workers.jobs.contract import LANES, lane_queue, lanes

if TYPE_CHECKING:
    from tests.support.mitigation import MitigationBench

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alertmanager"
REDIS_URL = os.environ.get("ALERTPILOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
"""Alertmanager's credential: it may post notifications, nothing else."""
PEOPLE = {"ada": "admin", "rui": "responder", "vic": "viewer"}
"""The users file of every test app: a person of each role, token `ap_test_<name>`."""
ADMIN = {"Authorization": "Bearer ap_test_ada"}
RESPONDER = {"Authorization": "Bearer ap_test_rui"}
VIEWER = {"Authorization": "Bearer ap_test_vic"}


@pytest.fixture
def redis() -> Iterator[Redis]:
    connection = Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def policies_dir() -> Path:
    return REPO / "policies"


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_users_file(tmp_path_factory.mktemp("users"))


def write_users_file(directory: Path) -> Path:
    """PEOPLE as a users file (ALERTPILOT_USERS_FILE) in `directory`."""
    path = directory / "users.yaml"
    lines = ["users:"]
    for name, role in PEOPLE.items():
        digest = hashlib.sha256(f"ap_test_{name}".encode()).hexdigest()
        lines += [f"  - name: {name}", f"    role: {role}", f"    token_sha256: {digest}"]
        lines += [f"    email: {name}@example.com", f"    slack_id: U{name.upper()}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def settings(policies_dir: Path, users_file: Path) -> Settings:
    return Settings(
        redis_url=REDIS_URL,
        policies_dir=policies_dir,
        webhook_token=TOKEN,
        users_file=users_file,
        key_prefix="aptest:",
        queue_name="aptest",
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def app(settings: Settings, redis: Redis) -> Flask:
    return create_app(settings, redis=redis, registry=CollectorRegistry())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)


LANE_SUFFIXES = tuple(f"-{name}" if name else "" for name in LANES)
"""What each lane adds to the queue's name (ALERTPILOT_QUEUE)."""


def queued_ids(queue: Queue) -> list[str]:
    """Every job id waiting in `queue`'s lanes, most urgent lane first."""
    return [job_id for lane in lanes(queue) for job_id in lane.get_job_ids()]


def empty(queue: Queue) -> None:
    """Drop every job waiting in `queue`'s lanes."""
    for lane in lanes(queue):
        lane.empty()


def fetch(queue: Queue, job_id: str) -> Job | None:
    """A job of `queue`'s installation, whichever lane it went to."""
    try:
        return Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return None


def page_lane(queue: Queue) -> Queue:
    """The lane page jobs go to (their scheduled and failed registries are its)."""
    return lane_queue(queue, "urgent")


def run_retries(queue: Queue, job_id: str) -> None:
    """Run the jobs, and each retry of `job_id` as soon as it is scheduled (no waiting),
    until it stops being retried: it succeeded or failed for good."""
    run_jobs(queue)
    for _ in range(10):
        job = fetch(queue, job_id)
        assert job is not None
        lane = lane_queue(queue, lane_name(job.origin))
        if job_id not in lane.scheduled_job_registry.get_job_ids():
            return
        lane.scheduled_job_registry.remove(job)
        lane.enqueue_job(job)  # the retry is due
        run_jobs(queue)


def lane_name(origin: str) -> str:
    """The lane (one of LANES) a job's origin queue is."""
    return next((name for name in LANES if name and origin.endswith(f"-{name}")), "")


class _BurstWorker(SimpleWorker):
    """A burst run takes no commands: no pubsub thread, whose stop could wait out a 60 s
    get_message (RQ 2.12 with redis-py 8.2): the suite's intermittent 60 s stalls."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def run_jobs(queue: Queue) -> None:
    """Run every queued job in this process, as a worker would, then return."""
    _BurstWorker(lanes(queue), connection=queue.connection, serializer=JSONSerializer).work(
        burst=True
    )


def due(queue: Queue, seconds: float) -> None:
    """Let `seconds` pass on alertpilot's clock, then do what the worker's scheduler does
    (queue the scheduled jobs now due, by that clock) and run what is queued. No sleep."""
    _CLOCK.advance(seconds)
    for lane in lanes(queue):
        registry = lane.scheduled_job_registry
        job_ids = registry.get_jobs_to_schedule(int(clock.timestamp()))
        jobs = Job.fetch_many(job_ids, connection=lane.connection, serializer=lane.serializer)
        with lane.connection.pipeline() as pipe:
            for job in jobs:
                if job is not None:
                    lane._enqueue_job(job, pipeline=pipe)
            for job_id in job_ids:
                registry.remove(job_id, pipeline=pipe)
            pipe.execute()
    run_jobs(queue)


_CLOCK = AheadClock()


@pytest.fixture(autouse=True)
def ahead_clock() -> Iterator[AheadClock]:
    """alertpilot's clock for this test: real time, plus what `due` advanced it by."""
    global _CLOCK
    _CLOCK = AheadClock()
    previous = clock.install(_CLOCK)
    yield _CLOCK
    clock.install(previous)


SEVERITIES = """\
severities:
  SEV0: {name: Critical, response_time: 5m, update_every: 30m, public: true}
  SEV1: {name: High, response_time: 15m, update_every: 1h, public: true}
  SEV2: {name: Medium, response_time: 1h, update_every: 4h}
  SEV3: {name: Low, response_time: 1d}
default: {severity: SEV3, actions: [notify]}
"""


def write_policy(directory: Path, routes: str, severities: str = SEVERITIES) -> Path:
    """A policy set of `severities` (with a SEV3 default route) and `routes`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "00-severities.yaml").write_text(severities)
    (directory / "10-routes.yaml").write_text(routes)
    return directory


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def timeline(client: FlaskClient, incident_id: str) -> list[dict[str, Any]]:
    """The incident's timeline, read through the API as a person would."""
    entries: list[dict[str, Any]] = client.get(
        f"/api/v1/incidents/{incident_id}", headers=ADMIN
    ).json["timeline"]
    return entries


def post(client: FlaskClient, doc: dict[str, Any], **headers: str) -> Any:
    return client.post("/api/v1/alertmanager", json=doc, headers={**AUTH, **headers})


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app on a real HTTP server on loopback, for clients other than Flask's test client."""
    with serving(app) as url:
        yield url


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """`app` on a real HTTP server on a free loopback port, while inside; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, like a real one
STATUSPAGE_KEY = "sp-key-4c1d"


@pytest.fixture
def vendors() -> Iterator[tuple[PagerDutyStandIn, StatuspageStandIn, ChatStandIn]]:
    with (
        PagerDutyStandIn() as pd,
        StatuspageStandIn(
            page_id="pg1", api_key=STATUSPAGE_KEY, components={"cmp1": "API"}, min_interval=0
        ) as sp,
        ChatStandIn() as chat,
    ):
        yield pd, sp, chat


@pytest.fixture
def live(
    monkeypatch: pytest.MonkeyPatch,
    vendors: tuple[PagerDutyStandIn, StatuspageStandIn, ChatStandIn],
    settings: Settings,
    redis: Redis,
) -> FlaskClient:
    """The app and the worker's environment with dry run off and the stand-ins as vendors."""
    pd, sp, chat = vendors
    for name, value in {
        "ALERTPILOT_DRY_RUN": "false",
        "ALERTPILOT_PAGERDUTY_EVENTS_URL": pd.base_url,
        "ALERTPILOT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "ALERTPILOT_STATUSPAGE_API_URL": sp.base_url,
        "ALERTPILOT_STATUSPAGE_PAGE_ID": "pg1",
        "ALERTPILOT_STATUSPAGE_API_KEY": STATUSPAGE_KEY,
        "ALERTPILOT_CHAT_WEBHOOK_URL": chat.slack_url,
        "ALERTPILOT_CA_BUNDLE": pd.ca_path,
        "ALERTPILOT_PUBLIC_URL": "https://alertpilot.example",
    }.items():
        monkeypatch.setenv(name, value)
    app = create_app(replace(settings, dry_run=False), redis=redis, registry=CollectorRegistry())
    return app.test_client()


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[KubeStandIn]:
    """The Kubernetes API stand-in with production/api (4) and production/api-canary (2),
    and KUBECONFIG pointing the official client at it."""
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with KubeStandIn(token="kube-t0ken") as server:
        server.add_deployment("production", "api", replicas=4)
        server.add_deployment("production", "api-canary", replicas=2)
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


@pytest.fixture
def mitigation(
    live: FlaskClient,
    kube: KubeStandIn,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> MitigationBench:
    """The stand-in Kubernetes API, Redis and the queue, with dry run off and the vendors'
    stand-ins (`live`); `.app(routes, manifests, **guardrails)` is alertpilot on that policy."""
    # Imported here, not above: tests.support.mitigation builds on this module's helpers.
    from tests.support.mitigation import MitigationBench

    return MitigationBench(
        kube=kube,
        redis=redis,
        queue=queue,
        settings=settings,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
    )
