"""Where a runbook's steps may connect, and what a failing dependency makes of them
(issue 16): a Prometheus that answers 503 and an endpoint that hangs are step results
that say so, the page leaves first all the same, and an alert label cannot send a check
to a host outside the step's `hosts`."""

from __future__ import annotations

import json
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

from tests.conftest import post, run_jobs, timeline, write_policy
from tests.support.mitigation import latency, route
from webhook.app import create_app
from workers.config import Settings


class _Server(BaseHTTPRequestHandler):
    """/api/v1/query: 503 as an overloaded Prometheus answers; /hang: 3 s; else 200."""

    seen: list[str]

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/query"):
            self.do_POST()
            return
        self.seen.append(self.path)
        if self.path.startswith("/hang"):
            time.sleep(3)  # past the step's timeout; the thread ends by itself
        self._answer(200, b"ok")

    def do_POST(self) -> None:
        self.seen.append(self.path)
        body = {"status": "error", "errorType": "unavailable", "error": "too many queries"}
        self._answer(503, json.dumps(body).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Server,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_port}", seen
    httpd.shutdown()
    httpd.server_close()


def _app(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    runbook: str,
) -> FlaskClient:
    routes = route("[page]").replace(
        "    severity: SEV2\n", "    severity: SEV2\n    runbook: api\n"
    )
    directory = write_policy(tmp_path / "policies", routes)
    (directory / "runbooks").mkdir()
    (directory / "runbooks" / "api.yaml").write_text(runbook)
    monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
    changed = replace(settings, policies_dir=directory)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def test_a_503_and_a_hang_are_results_and_the_page_leaves_first(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    server: tuple[str, list[str]],
) -> None:
    where, _ = server
    monkeypatch.setenv("ALERTPILOT_PROMETHEUS_URL", f"http://{where}")
    runbook = f"""\
title: t
steps:
  - {{type: promql, name: p95, query: 'up'}}
  - {{type: http_check, name: hanging, url: "http://{where}/hang", timeout: 1s}}
"""
    app = _app(tmp_path, settings, redis, monkeypatch, runbook)
    (incident_id,) = post(app, latency()).json["incidents"]
    started = time.monotonic()
    run_jobs(queue)
    took = time.monotonic() - started
    entries = timeline(app, incident_id)
    kinds = [e["kind"] for e in entries]
    assert kinds.index("dry_run") < kinds.index("runbook")  # the page went first
    (ran,) = [e for e in entries if e["kind"] == "runbook"]
    results = {r["name"]: r for r in ran["results"]}
    assert results["p95"]["summary"] == "Prometheus answered 503: too many queries"
    assert results["hanging"]["summary"] == "no answer within 1s"
    assert took < 2.5  # the hang is cut at its 1 s timeout, side by side with the query


def test_an_alert_label_cannot_send_a_check_outside_its_hosts(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    server: tuple[str, list[str]],
) -> None:
    where, seen = server
    port = where.split(":")[1]
    runbook = f"""\
title: t
steps:
  - type: http_check
    name: health
    url: "http://{{{{ labels.instance }}}}:{port}/healthz"
    hosts: ["*.svc", "localhost"]
  - type: tcp_check
    name: redis
    host: "{{{{ labels.instance }}}}"
    port: {port}
    hosts: ["*.svc"]
"""
    app = _app(tmp_path, settings, redis, monkeypatch, runbook)
    doc = latency()
    doc["alerts"][0]["labels"]["instance"] = "127.0.0.1"  # the rule's author says where
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    (ran,) = [e for e in timeline(app, incident_id) if e["kind"] == "runbook"]
    results = {r["name"]: r for r in ran["results"]}
    assert results["health"]["summary"] == (
        f"http://127.0.0.1:{port}/healthz: not a host it may reach"
    )
    assert results["redis"]["summary"] == "127.0.0.1: not a host it may reach"
    assert seen == []  # nothing connected

    doc = latency("api-canary")
    doc["alerts"][0]["labels"]["instance"] = "localhost"  # within hosts: it goes
    (other,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    (ran,) = [e for e in timeline(app, other) if e["kind"] == "runbook"]
    results = {r["name"]: r for r in ran["results"]}
    assert results["health"]["ok"], results["health"]
    assert seen == ["/healthz"]
