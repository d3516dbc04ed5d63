"""A route's runbook runs when its incident is declared (issue 16, part 2): promql
against Debian's real Prometheus, http_check and tcp_check on loopback; every failure
is a step's result, and the page does not wait for any of it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import REDIS_URL, due, post, run_jobs, timeline, write_policy
from tests.support.chat_standin import ChatStandIn
from tests.support.mitigation import latency, route
from tests.support.prometheus import (
    DrivenExporter,
    PrometheusServer,
    driven_exporter,
    run_prometheus,
)
from webhook.app import create_app
from workers.config import Settings
from workers.prometheus import Prometheus

RUNBOOK = """\
title: API latency
steps:
  - type: promql
    name: p95_latency
    query: >-
      histogram_quantile(0.95, sum(rate(
      http_request_duration_seconds_bucket{{job="{{{{ labels.job }}}}"}}[30s])) by (le))
    unit: s
    threshold: 0.5
  - type: promql
    name: broken
    query: "http_request_duration_seconds_bucket / on() vector(1)"
  - {{type: http_check, name: health, url: "{health}", timeout: 2s}}
  - {{type: http_check, name: hanging, url: "{hanging}", timeout: 1s}}
  - {{type: tcp_check, name: redis, host: 127.0.0.1, port: {redis_port}}}
  - {{type: tcp_check, name: closed, host: 127.0.0.1, port: {closed_port}, timeout: 1s}}
  - {{type: workload_status}}
"""


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/hang":
            time.sleep(3)  # longer than the step's timeout; the server thread ends by itself
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def exporter() -> Iterator[DrivenExporter]:
    with driven_exporter() as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, exporter: DrivenExporter
) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("prometheus")
    with run_prometheus(workdir, jobs={"api": exporter.target}) as running:
        running.wait_until_scraped()
        yield running


@pytest.fixture
def health() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def app(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    prometheus: PrometheusServer,
    health: str,
) -> FlaskClient:
    routes = route("[page, notify]").replace(
        "    severity: SEV2\n", "    severity: SEV2\n    runbook: api\n"
    )
    directory = write_policy(tmp_path / "policies", routes)
    (directory / "runbooks").mkdir()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    redis_port = int(REDIS_URL.split(":")[2].split("/")[0])
    (directory / "runbooks" / "api.yaml").write_text(
        RUNBOOK.format(
            health=f"{health}/healthz",
            hanging=f"{health}/hang",
            redis_port=redis_port,
            closed_port=closed,
        )
    )
    monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
    monkeypatch.setenv("ALERTPILOT_PROMETHEUS_URL", prometheus.base_url)
    changed = replace(settings, policies_dir=directory)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def _alert() -> dict[str, Any]:
    doc = latency()
    doc["alerts"][0]["labels"]["job"] = "api"
    return doc


def test_the_runbook_runs_on_declare_and_every_failure_is_a_result(
    app: FlaskClient, exporter: DrivenExporter, prometheus: PrometheusServer, queue: Queue
) -> None:
    exporter.observe(0.08, 80)
    exporter.observe(0.7, 20)  # a true p95 of 0.7 s: bucket (0.5, 1]
    client = Prometheus(prometheus.base_url, token=None, ca_bundle=None)
    deadline = time.monotonic() + 15
    while client.query('http_request_duration_seconds_count{job="api"}').value != 100:
        assert time.monotonic() < deadline, "Prometheus never scraped the observations"
        time.sleep(0.2)
    time.sleep(2)  # a second scrape with them in it, for rate()
    (incident_id,) = post(app, _alert()).json["incidents"]
    run_jobs(queue)
    entries = timeline(app, incident_id)
    kinds = [e["kind"] for e in entries]
    assert kinds.index("dry_run") < kinds.index("runbook")  # the page went first
    (ran,) = [e for e in entries if e["kind"] == "runbook"]
    results = {r["name"]: r for r in ran["results"]}
    p95 = results["p95_latency"]
    assert p95["value"] is not None and 0.5 < p95["value"] <= 1.0, p95
    assert p95["ok"] is False and "over 0.5" in p95["summary"]
    assert not results["broken"]["ok"]  # parses, but Prometheus refuses to run it
    assert "Prometheus answered 422: multiple matches" in results["broken"]["summary"]
    assert results["health"]["ok"] and results["health"]["summary"].startswith("HTTP 200")
    assert not results["hanging"]["ok"] and "within 1s" in results["hanging"]["summary"]
    assert results["redis"]["ok"]
    assert not results["closed"]["ok"]
    assert not results["workload"]["ok"]  # the policy allows no namespace: not even asked
    assert "not one alertpilot may read" in results["workload"]["summary"]
    assert ran["message"].endswith("7 steps, 5 not ok")


def test_without_prometheus_the_promql_steps_say_so(
    app: FlaskClient, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERTPILOT_PROMETHEUS_URL")
    (incident_id,) = post(app, _alert()).json["incidents"]
    run_jobs(queue)
    (ran,) = [e for e in timeline(app, incident_id) if e["kind"] == "runbook"]
    results = {r["name"]: r for r in ran["results"]}
    assert results["p95_latency"]["summary"] == "no Prometheus (ALERTPILOT_PROMETHEUS_URL)"


def test_each_update_runs_the_runbook_again_and_chat_shows_now_and_then(
    app: FlaskClient,
    exporter: DrivenExporter,
    prometheus: PrometheusServer,
    queue: Queue,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = Path(os.environ["ALERTPILOT_POLICIES_DIR"])
    routes = directory / "10-routes.yaml"
    routes.write_text(routes.read_text().replace("[page, notify]", "[notify]"))
    client = Prometheus(prometheus.base_url, token=None, ca_bundle=None)
    p95 = (
        "histogram_quantile(0.95, sum(rate("
        'http_request_duration_seconds_bucket{job="api"}[30s])) by (le))'
    )
    with ChatStandIn() as chat:
        monkeypatch.setenv("ALERTPILOT_DRY_RUN", "false")
        monkeypatch.setenv("ALERTPILOT_CHAT_WEBHOOK_URL", chat.slack_url)
        monkeypatch.setenv("ALERTPILOT_CA_BUNDLE", chat.ca_path)
        live = create_app(
            replace(settings, policies_dir=directory, dry_run=False),
            redis=redis,
            registry=CollectorRegistry(),
        ).test_client()
        exporter.observe(0.7, 200)  # slow now: p95 in (0.5, 1]
        _until(client, p95, lambda v: v is not None and v > 0.5)
        (incident_id,) = post(live, _alert()).json["incidents"]
        run_jobs(queue)
        exporter.observe(0.05, 5000)  # fast again: p95 falls to the lowest bucket
        _until(client, p95, lambda v: v is not None and v < 0.5)
        due(queue, 4 * 3600)  # SEV2's update_every: the first tick
        texts = [m.body["text"] for m in chat.messages]
    runs = [e for e in timeline(live, incident_id) if e["kind"] == "runbook"]
    assert [r["when"] for r in runs] == ["declared", "update-1"]
    (update,) = [t for t in texts if t.startswith(":information_source:")]
    (line,) = [x for x in update.splitlines() if x.startswith("Current metrics:")]
    assert "p95_latency" in line and "(at declaration: " in line and "over 0.5" in line


def _until(client: Prometheus, expr: str, done: Any) -> None:
    deadline = time.monotonic() + 20
    while not done(client.query(expr).value):
        assert time.monotonic() < deadline, f"never: {expr}"
        time.sleep(0.25)
