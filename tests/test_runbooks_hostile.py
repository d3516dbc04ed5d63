"""A hostile review of issue 16 (runbooks that run themselves): alert labels chosen by whoever
writes an alerting rule, a worst-day Kubernetes namespace, lanes that run late, and the
on-demand command. Each test names the defect it checks in its docstring; the assertions
are the behaviour the runbook runner should have."""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import (
    RESPONDER,
    VIEWER,
    _BurstWorker,
    due,
    post,
    run_jobs,
    timeline,
    write_policy,
)
from tests.support.chat_standin import ChatStandIn
from tests.support.kube_standin import KubeStandIn
from tests.support.mitigation import MitigationBench, latency, resolved, route
from webhook.app import create_app
from workers.config import Settings
from workers.incident.keys import Keys
from workers.incident.transitions import DECLARED_MESSAGE_WAIT
from workers.jobs.contract import lane_queue

# --- shared bench -------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Records every request; /api/v1/query answers a one-sample vector of value 0
    (or `prom_answer`, when set), everything else 200 ok."""

    seen: list[str]
    queries: list[str]
    prom_answer: tuple[int, dict[str, Any]] | None = None

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path.startswith("/api/v1/query"):
            from urllib.parse import parse_qs, urlsplit

            self.queries.extend(parse_qs(urlsplit(self.path).query).get("query", []))
            status, body = self.prom_answer or (
                200,
                {
                    "status": "success",
                    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0"]}]},
                },
            )
            self._answer(status, json.dumps(body).encode())
            return
        self._answer(200, b"ok")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.queries: list[str] = []
        self.handler = type("H", (_Recorder,), {"seen": self.seen, "queries": self.queries})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.handler.prom_answer = (status, body)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _policy_app(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    runbooks: dict[str, str],
    routes: str | None = None,
    *,
    dry_run: bool = True,
) -> FlaskClient:
    if routes is None:
        routes = route("[page]").replace(
            "    severity: SEV2\n", "    severity: SEV2\n    runbook: api\n"
        )
    directory = write_policy(tmp_path / "policies", routes)
    (directory / "runbooks").mkdir(exist_ok=True)
    for name, text in runbooks.items():
        (directory / "runbooks" / f"{name}.yaml").write_text(text)
    monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
    changed = replace(settings, policies_dir=directory, dry_run=dry_run)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def _runs(app: FlaskClient, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in timeline(app, incident_id) if e["kind"] == "runbook"]


def _results(app: FlaskClient, incident_id: str) -> dict[str, dict[str, Any]]:
    (ran,) = _runs(app, incident_id)
    return {r["name"]: r for r in ran["results"]}


def _with_labels(**labels: str) -> dict[str, Any]:
    doc = latency()
    doc["alerts"][0]["labels"].update(labels)
    return doc


def _tcp_runbook(port: int) -> str:
    return f"title: t\nsteps:\n  - {{type: tcp_check, name: d, host: 127.0.0.1, port: {port}}}\n"


def _run_lane(queue: Queue, name: str) -> None:
    lane = lane_queue(queue, name)
    _BurstWorker([lane], connection=queue.connection, serializer=JSONSerializer).work(burst=True)


# --- where a check may connect --------------------------------------------------------------


def test_a_backslash_in_a_label_sends_an_http_check_outside_its_hosts(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Defect: `_http` checks the host `urllib.parse.urlsplit` finds (after the last `@`),
    but requests/urllib3 end the authority at a backslash: `http://127.0.0.1:P\\@x.svc/`
    passes the `*.svc` allowlist and connects to 127.0.0.1:P (workers/runbook_steps.py
    `_http`, workers/policy/runbooks.py `allows`)."""
    port = recorder.port
    runbook = f"""\
title: t
steps:
  - type: http_check
    name: health
    url: "http://{{{{ labels.instance }}}}:{port}/healthz"
    hosts: ["*.svc"]
"""
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    doc = _with_labels(instance=f"127.0.0.1:{port}\\@x.svc")
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    health = _results(app, incident_id)["health"]
    assert recorder.seen == [], f"connected to 127.0.0.1 outside hosts: {recorder.seen}"
    assert not health["ok"], health


def test_a_label_cannot_choose_the_port_of_an_http_check(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Defect: only the host is checked; a label that fills the host can also end the
    authority with its own port and push the policy's port into the fragment
    (`localhost:P/healthz#` -> `http://localhost:P/healthz#:9/healthz`): the rule's author
    chooses where alertpilot connects, which `_Reaching` says it must not
    (workers/runbook_steps.py `_http`)."""
    runbook = """\
title: t
steps:
  - type: http_check
    name: health
    url: "http://{{ labels.instance }}:9/healthz"
    hosts: ["localhost"]
"""
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    doc = _with_labels(instance=f"localhost:{recorder.port}/healthz#")
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    health = _results(app, incident_id)["health"]
    assert recorder.seen == [], f"the label picked port {recorder.port}: {recorder.seen}"
    assert not health["ok"], health


def test_a_numeric_label_is_not_a_host_name_that_matches_a_pattern(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Defect: `*` matches any run of letters, digits and dashes, so "2130706433" (an
    IPv4 address in integer form: getaddrinfo reads it as 127.0.0.1; 2852039166 is the
    cloud metadata address) passes `hosts: ["*"]`, meant for short service names
    (workers/policy/runbooks.py `_host_pattern` / `allows`)."""
    runbook = f"""\
title: t
steps:
  - type: tcp_check
    name: dep
    host: "{{{{ labels.instance }}}}"
    port: {recorder.port}
    hosts: ["*"]
"""
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    doc = _with_labels(instance=str(int.from_bytes(socket.inet_aton("127.0.0.1"), "big")))
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    dep = _results(app, incident_id)["dep"]
    assert not dep["ok"] and "not a host it may reach" in dep["summary"], dep


def test_userinfo_and_a_fragment_in_a_label_do_not_reach_past_hosts(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Regression guard: `x.svc@127.0.0.1` and `127.0.0.1?@x.svc` are refused (the host is
    the one both parsers agree on)."""
    port = recorder.port
    runbook = f"""\
title: t
steps:
  - type: http_check
    name: health
    url: "http://{{{{ labels.instance }}}}:{port}/healthz"
    hosts: ["*.svc"]
  - type: http_check
    name: other
    url: "http://{{{{ labels.other }}}}:{port}/healthz"
    hosts: ["*.svc"]
"""
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    doc = _with_labels(instance="x.svc@127.0.0.1", other=f"127.0.0.1:{port}?@x.svc")
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    results = _results(app, incident_id)
    assert recorder.seen == []
    assert not results["health"]["ok"] and not results["other"]["ok"]


# --- PromQL ---------------------------------------------------------------------------------


def test_a_label_cannot_rewrite_a_promql_query(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Defect: a label value is spliced into the query unescaped (`autoescape=False`, no
    PromQL quoting), so a `"` in a label closes the matcher and the rule's author
    chooses the number shown: `... * 0 or vector(0) or ...` makes a 5xx rate read 0,
    "ok" under its threshold (workers/runbook_steps.py `_promql` / `_render`)."""
    monkeypatch.setenv("ALERTPILOT_PROMETHEUS_URL", f"http://127.0.0.1:{recorder.port}")
    runbook = """\
title: t
steps:
  - type: promql
    name: errors
    query: 'sum(rate(http_requests_total{service="{{ labels.service }}",code=~"5.."}[5m]))'
    threshold: 1
"""
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    hostile = 'x"}[5m])) * 0 or vector(0) or sum(rate(x{a="'
    (incident_id,) = post(app, _with_labels(service=hostile)).json["incidents"]
    run_jobs(queue)
    errors = _results(app, incident_id)["errors"]
    for query in recorder.queries:  # what was asked, if anything, is the policy's query
        parsed = promql_parser.parse(query)
        assert isinstance(parsed, promql_parser.AggregateExpr), f"rewritten to: {query}"
        matchers = parsed.expr.args[0].vector_selector.matchers.matchers
        assert ("service", hostile) in [(m.name, m.value) for m in matchers], query
    if not recorder.queries:
        assert not errors["ok"], errors


def test_a_prometheus_token_echoed_in_an_error_stays_off_the_timeline(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Regression guard: a proxy that echoes the bearer token in its error does not put
    it on the timeline or the API."""
    token = "s3cr3t-prometheus-token-0123456789"
    monkeypatch.setenv("ALERTPILOT_PROMETHEUS_URL", f"http://127.0.0.1:{recorder.port}")
    monkeypatch.setenv("ALERTPILOT_PROMETHEUS_TOKEN", token)
    recorder.answer(
        401,
        {
            "status": "error",
            "errorType": "unauthorized",
            "error": f"bad Authorization: Bearer {token}",
        },
    )
    runbook = "title: t\nsteps:\n  - {type: promql, name: up, query: up}\n"
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    shown = app.get(f"/api/v1/incidents/{incident_id}", headers=VIEWER).get_data(as_text=True)
    assert recorder.queries, "Prometheus was asked"
    assert token not in shown and token[:12] not in shown


# --- Kubernetes -----------------------------------------------------------------------------

WORKLOAD = "title: t\nsteps:\n  - type: workload_status\n  - type: rollout_history\n"
KUBE_ROUTES = route("[page, notify]").replace(
    "    severity: SEV2\n", "    severity: SEV2\n    runbook: api\n"
)


def _kube_app(mitigation: MitigationBench, runbook: str = WORKLOAD) -> FlaskClient:
    folder = mitigation.tmp_path / "policies" / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api.yaml").write_text(runbook)
    return mitigation.app(KUBE_ROUTES)


def test_a_sibling_deployments_warnings_are_not_this_workloads(
    mitigation: MitigationBench, kube: KubeStandIn
) -> None:
    """Defect: Warning events are matched by name prefix `<deployment>-`, so production/api
    shows the events of production/api-canary's pods (and of any deployment named
    `api-...`) as its own (workers/kube.py `Kubernetes.workload`, `prefix`)."""
    kube.add_event(
        "production",
        "api-canary-5d8f9-zzzzz.1",
        involved_kind="Pod",
        involved_name="api-canary-5d8f9-zzzzz",
        reason="FailedScheduling",
        message="0/3 nodes are available: insufficient memory",
    )
    app = _kube_app(mitigation)
    (incident_id,) = post(app, latency("api")).json["incidents"]
    run_jobs(mitigation.queue)
    workload = _results(app, incident_id)["workload"]
    assert workload["summary"].startswith("production/api:"), workload
    assert "api-canary" not in workload["summary"], workload["summary"]


def test_a_workloads_warning_is_found_in_a_namespace_with_many_warnings(
    mitigation: MitigationBench, kube: KubeStandIn
) -> None:
    """Defect: the Warning events are one list call with `limit=500` and no `continue`:
    on a bad day (over 500 warnings in the namespace, listed in name order) the crash-
    looping workload's own BackOff is never seen (workers/kube.py `workload`, MAX_EVENTS)."""
    kube.add_deployment("production", "web", replicas=1)
    kube.add_pod(
        "production",
        "web-7c9-bad",
        labels={"app": "web"},
        ready=False,
        restarts=3,
        waiting_reason="CrashLoopBackOff",
    )
    for n in range(520):  # another team's noisy deployment, earlier in name order
        kube.add_event(
            "production",
            f"aaa-batch-{n:04d}.1",
            involved_kind="Pod",
            involved_name=f"aaa-batch-{n:04d}",
            reason="FailedMount",
            message="MountVolume.SetUp failed",
        )
    kube.add_event(
        "production",
        "web-7c9-bad.1",
        involved_kind="Pod",
        involved_name="web-7c9-bad",
        reason="BackOff",
        message="Back-off restarting failed container",
        count=9,
    )
    folder = mitigation.tmp_path / "policies" / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api.yaml").write_text("title: t\nsteps:\n  - type: workload_status\n")
    app = mitigation.app(KUBE_ROUTES)
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)
    workload = _results(app, incident_id)["workload"]
    assert "BackOff x9 on pod web-7c9-bad" in workload["summary"], workload["summary"]


def test_a_large_workloads_pods_are_all_counted(
    mitigation: MitigationBench, kube: KubeStandIn
) -> None:
    """Defect: the pods are one list call with `limit=200` and no `continue`, and the
    summary counts what that page held as if it were all: 230 crash-looping pods read
    "197 more pods not well" (workers/kube.py `workload`, MAX_PODS; runbook_steps.py
    `_workload`). (Also cut by the 300-character bound: see the next test.)"""
    kube.add_deployment("production", "big", replicas=230)
    for n in range(230):
        kube.add_pod(
            "production",
            f"big-5f6-{n:04d}",
            labels={"app": "big"},
            ready=False,
            restarts=2,
            waiting_reason="CrashLoopBackOff",
        )
    folder = mitigation.tmp_path / "policies" / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api.yaml").write_text("title: t\nsteps:\n  - type: workload_status\n")
    app = mitigation.app(KUBE_ROUTES)
    (incident_id,) = post(app, latency("big")).json["incidents"]
    run_jobs(mitigation.queue)
    workload = _results(app, incident_id)["workload"]
    assert workload["summary"].startswith("production/big: 0/230 ready"), workload
    assert "and 229 more pods not well" in workload["summary"], workload["summary"]


def test_three_troubled_pods_do_not_push_the_count_and_warnings_off_the_line(
    mitigation: MitigationBench, kube: KubeStandIn
) -> None:
    """Defect: the workload line lists up to three troubled pods (~80 characters each)
    before the count of the others and the Warning events, then `StepResult.to_json`
    cuts it at MAX_SUMMARY (300): with three or more pods crash-looping, the count and
    every warning are cut off the timeline, the API and chat (workers/runbook_steps.py
    `_workload` / `to_json`)."""
    kube.add_deployment("production", "web", replicas=5)
    for n in range(5):
        kube.add_pod(
            "production",
            f"web-7c9-{n}",
            labels={"app": "web"},
            ready=False,
            restarts=4,
            waiting_reason="CrashLoopBackOff",
            last_terminated_reason="OOMKilled",
        )
    kube.add_event(
        "production",
        "web-7c9-0.1",
        involved_kind="Pod",
        involved_name="web-7c9-0",
        reason="BackOff",
        message="Back-off restarting failed container",
        count=7,
    )
    folder = mitigation.tmp_path / "policies" / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api.yaml").write_text("title: t\nsteps:\n  - type: workload_status\n")
    app = mitigation.app(KUBE_ROUTES)
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)
    summary = _results(app, incident_id)["workload"]["summary"]
    assert "and 4 more pods not well" in summary, summary
    assert "BackOff x7 on pod web-7c9-0" in summary, summary


def test_odd_workload_labels_read_only_and_bounded(
    mitigation: MitigationBench, kube: KubeStandIn, vendors: tuple[Any, Any, ChatStandIn]
) -> None:
    """Regression guard: a deployment label of `..`, `a,b`, unicode or 300 characters makes
    only get/list calls, and a 100,000-character event message is cut on the timeline
    and in chat."""
    _, _, chat = vendors
    kube.add_event(
        "production",
        "api.1",
        involved_kind="Deployment",
        involved_name="api",
        reason="ProgressDeadlineExceeded",
        message="x" * 100_000,
    )
    app = _kube_app(mitigation)
    ids = []
    for name in ("api", "..", "a,b", "ä/../x", "d" * 300):
        doc = latency("api")
        doc["alerts"][0]["labels"]["deployment"] = name
        doc["alerts"][0]["fingerprint"] = hashlib.sha256(name.encode()).hexdigest()[:16]
        doc["groupKey"] = f"{{}}:{{d={name!r}}}"
        ids += post(app, doc).json["incidents"]
    run_jobs(mitigation.queue)
    assert {verb for _, _, verb in kube.calls} <= {"get", "list"}, kube.calls
    for incident_id in ids:
        for result in _results(app, incident_id).values():
            assert len(result["summary"]) <= 300
    assert chat.messages
    assert all(len(m.body["text"]) < 4000 for m in chat.messages)


# --- ordering of the chat messages -----------------------------------------------------------

ESCALATING = """\
routes:
  - name: checkout-down
    matchers: ['alertname="CheckoutDown"']
    severity: SEV1
    incident_key: "svc/{{ labels.service }}"
    runbook: checkout
    actions: [notify]
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: "svc/{{ labels.service }}"
    runbook: api
    actions: [notify]
"""


def _checkout() -> dict[str, Any]:
    doc = latency()
    alert = copy.deepcopy(doc["alerts"][0])
    alert["labels"]["alertname"] = "CheckoutDown"
    alert["labels"]["checkout_host"] = "localhost"
    alert["startsAt"] = "2026-11-26T23:40:00Z"  # after the HighLatency alert
    alert["fingerprint"] = "feedfacefeedface"
    doc["alerts"] = [alert]
    doc["groupKey"] = '{}:{alertname="CheckoutDown"}'
    return doc


def _escalating_app(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    port: int,
) -> FlaskClient:
    api = f"title: a\nsteps:\n  - {{type: tcp_check, name: dep, host: 127.0.0.1, port: {port}}}\n"
    checkout = f"""\
title: c
steps:
  - type: tcp_check
    name: checkout
    host: "{{{{ labels.checkout_host }}}}"
    port: {port}
    hosts: ["localhost"]
"""
    return _policy_app(
        tmp_path,
        settings,
        redis,
        monkeypatch,
        {"api": api, "checkout": checkout},
        ESCALATING,
        dry_run=False,
    )


def test_an_escalation_inside_the_wait_leaves_no_stale_declared_message(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
    live: FlaskClient,
    vendors: tuple[Any, Any, ChatStandIn],
) -> None:
    """Regression guard: an escalation while the declared message still waits for the run
    posts the escalated message; the waiting SEV2 message, released or due later, is
    superseded (workers/jobs/dispatch.py) and never follows it with the old severity."""
    _, _, chat = vendors
    app = _escalating_app(tmp_path, settings, redis, monkeypatch, recorder.port)
    post(app, latency())
    for lane in ("urgent", "comms"):  # the bulk lane's worker is still on a slow run
        _run_lane(queue, lane)
    post(app, _checkout())
    for lane in ("urgent", "comms"):
        _run_lane(queue, lane)
    due(queue, DECLARED_MESSAGE_WAIT + 1)
    heads = [m.body["text"].split("\n")[0] for m in chat.messages]
    assert len(heads) == 1 and "Escalated to SEV1" in heads[0], heads


def test_the_escalated_run_renders_over_the_alert_that_escalated(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Defect: every run renders over the incident's earliest firing alert, so the
    escalated run of checkout-down's runbook renders over the HighLatency alert of the
    other route: its `labels.checkout_host` is undefined and the escalated snapshot is a
    template error (workers/runbook_steps.py `_labels`)."""
    app = _escalating_app(tmp_path, settings, redis, monkeypatch, recorder.port)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert post(app, _checkout()).json["incidents"] == [incident_id]
    run_jobs(queue)
    (escalated,) = [r for r in _runs(app, incident_id) if r.get("when") == "escalated-SEV1"]
    (result,) = escalated["results"]
    assert result["ok"], result


def test_a_late_runbook_run_does_not_post_the_declared_message_twice(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
    live: FlaskClient,
    vendors: tuple[Any, Any, ChatStandIn],
) -> None:
    """Regression guard: the scheduler posted the declared message at its time; the run
    that comes later, and a rerun of it, release nothing."""
    _, _, chat = vendors
    app = _escalating_app(tmp_path, settings, redis, monkeypatch, recorder.port)
    (incident_id,) = post(app, latency()).json["incidents"]
    bulk = lane_queue(queue, "")
    held = bulk.get_job_ids()
    assert any("-runbook-declared" in j for j in held), held
    bulk.connection.delete(bulk.key)  # the run is late
    _run_lane(queue, "comms")
    due(queue, DECLARED_MESSAGE_WAIT + 1)
    assert len([m for m in chat.messages if "declared" in m.body["text"]]) == 1
    for _ in range(2):  # the late run, then its rerun
        for job_id in held:
            job = bulk.fetch_job(job_id)
            assert job is not None
            bulk.enqueue_job(job)
        run_jobs(queue)
    assert len([m for m in chat.messages if "declared" in m.body["text"]]) == 1
    assert len(_runs(app, incident_id)) == 2


# --- the on-demand command and the route view ------------------------------------------------


def test_running_the_runbook_of_a_resolved_incident_keeps_its_retention(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Defect: POST /incidents/<id>/runbook is not refused on a resolved incident
    (`run_runbook` has no `_open`), and writing its change SETs the incident record
    without its TTL: a resolved incident asked about is kept forever, past
    retention (workers/incident/commands.py `run_runbook`, writer.py `write`)."""
    runbook = _tcp_runbook(recorder.port)
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    doc = latency()
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(queue)
    post(app, resolved(doc))
    run_jobs(queue)
    record = Keys(settings.key_prefix).incident(incident_id)
    assert redis.ttl(record) > 0
    asked = app.post(f"/api/v1/incidents/{incident_id}/runbook", headers=RESPONDER)
    run_jobs(queue)
    assert asked.status_code in (200, 409), asked.json
    assert redis.ttl(record) > 0, "the resolved incident lost its retention"


def test_the_runbook_command_refuses_what_it_should(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    queue: Queue,
    recorder: Recorder,
) -> None:
    """Regression guard: an unknown incident is 404, a body with fields is 400, a viewer
    403, odd route names 400/404, and a route without a runbook 409 to run."""
    runbook = _tcp_runbook(recorder.port)
    app = _policy_app(tmp_path, settings, redis, monkeypatch, {"api": runbook})
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert app.post("/api/v1/incidents/nope-123/runbook", headers=RESPONDER).status_code == 404
    bad = app.post(
        f"/api/v1/incidents/{incident_id}/runbook", headers=RESPONDER, json={"steps": "rm -rf"}
    )
    assert bad.status_code == 400, bad.json
    assert app.post(f"/api/v1/incidents/{incident_id}/runbook", headers=VIEWER).status_code == 403
    for name, status in (
        ("..", 404),
        ("%2e%2e", 400),
        ("a" * 65, 400),
        ("api%0a", 400),
        ("ä", 400),
        ("nope", 404),
    ):
        got = app.get(f"/api/v1/routes/{name}/runbook", headers=VIEWER)
        assert got.status_code in (status, 400, 404), (name, got.status_code)
        assert got.status_code != 200
    other = _with_labels(alertname="Other")
    other["alerts"][0]["fingerprint"] = "0123456789abcdef"
    other["groupKey"] = '{}:{alertname="Other"}'
    (other_id,) = post(app, other).json["incidents"]
    default = app.post(f"/api/v1/incidents/{other_id}/runbook", headers=RESPONDER)
    assert default.status_code == 409, default.json
