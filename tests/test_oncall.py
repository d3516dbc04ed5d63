"""The on-call handoff (issue 17): `GET /api/v1/handoff` (at once, without rollouts), the
worker's job behind `POST /api/v1/handoff` (with the rollouts Kubernetes shows, stored,
and with `post` in chat) and `alertpilot handoff`. Incidents come in through the real
receiver; alertpilot's clock is advanced (`due`), nothing sleeps.

Until webhook/app.py registers webhook/oncall_api.py, `_app` registers it on the test
app, as the app factory will.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import (
    REPO,
    RESPONDER,
    VIEWER,
    due,
    post,
    run_jobs,
    serving,
    write_policy,
)
from tests.support.chat_standin import ChatStandIn
from tests.support.mitigation import GUARDRAILS, MitigationBench, latency, resolved
from webhook import oncall_api, oncall_cli
from webhook.app import create_app
from workers import approvals, oncall_job
from workers.incident import clock, timeline
from workers.incident.keys import Keys
from workers.incident.record import AlertState, Incident
from workers.kube import Kubernetes, api_client
from workers.oncall import build_report
from workers.oncall_markdown import BUILT_IN, SAMPLE, TEMPLATE, render
from workers.oncall_store import MAX_ENTRIES, HandoffRequest, gather
from workers.policy.loader import load_policy

SEVERITIES = """\
severities:
  SEV1: {name: High, response_time: 15m, update_every: 1h}
  SEV2: {name: Medium, response_time: 1h, postmortem_within: 1d}
  SEV3: {name: Low, response_time: 1d}
default: {severity: SEV3, actions: [notify]}
"""
ROUTES = """\
routes:
  - name: disk-flaps
    matchers: ['alertname="DiskPressure"']
    severity: SEV3
    actions: [notify]
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    actions: [notify]
"""
FLAPS = 5


def _app(mitigation: MitigationBench, template: str | None = None) -> FlaskClient:
    """alertpilot on SEVERITIES and ROUTES (the allowed namespace: production), with the
    handoff API registered; `template`: the team's oncall.md.j2."""
    directory = write_policy(mitigation.tmp_path / "policies", ROUTES, SEVERITIES)
    (directory / "20-mitigations.yaml").write_text(yaml.safe_dump(GUARDRAILS))
    if template is not None:
        (directory / "templates").mkdir(exist_ok=True)
        (directory / "templates" / TEMPLATE).write_text(template)
    mitigation.monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(directory))
    changed = replace(mitigation.settings, policies_dir=directory, dry_run=False)
    app = create_app(changed, redis=mitigation.redis, registry=CollectorRegistry())
    if oncall_api.blueprint.name not in app.blueprints:  # until webhook/app.py registers it
        app.register_blueprint(oncall_api.blueprint)
    return app.test_client()


def _flapping(n: int) -> dict[str, Any]:
    """DiskPressure on worker-3, its n-th instance: a new startsAt, as Prometheus sends
    an alert that fires again after it resolved."""
    doc = copy.deepcopy(latency())
    alert = doc["alerts"][0]
    alert["labels"] = {"alertname": "DiskPressure", "node": "worker-3", "severity": "ticket"}
    alert["annotations"] = {"summary": "disk pressure on worker-3"}
    alert["startsAt"] = f"2026-11-27T0{n}:00:00Z"
    alert["fingerprint"] = hashlib.sha256(b"disk/worker-3").hexdigest()[:16]
    doc["groupKey"] = '{}:{node="worker-3"}'
    return doc


def _command(app: FlaskClient, incident_id: str, name: str, **body: str) -> Any:
    answer = app.post(f"/api/v1/incidents/{incident_id}/{name}", json=body, headers=RESPONDER)
    assert answer.status_code == 200, answer.json
    return answer


def _week(app: FlaskClient, queue: Queue, redis: Redis, keys: Keys) -> dict[str, str]:
    """A week on call: DiskPressure fires and resolves FLAPS times; HighLatency on api
    resolves (its postmortem, due after a day, is overdue; a follow-up is open) and on
    api-canary stays open (IC ada, identified, acknowledged, a restart waiting for
    approval). The incidents' ids by name."""
    flaps = []
    for n in range(FLAPS):
        doc = _flapping(n)
        flaps += post(app, doc).json["incidents"]
        run_jobs(queue)
        post(app, resolved(doc))
        run_jobs(queue)
    assert len(set(flaps)) == FLAPS  # each firing after a resolve is a new incident
    api = latency("api")
    (closed,) = post(app, api).json["incidents"]
    (still,) = post(app, latency("api-canary")).json["incidents"]
    run_jobs(queue)
    post(app, resolved(api))
    _command(app, closed, "follow-ups", text="Alert per endpoint", owner="vic", due="2020-01-02")
    _command(app, still, "acknowledge")
    _command(app, still, "assign", role="ic", person="ada")
    _command(app, still, "status", status="identified")
    _command(app, still, "notes", text="api-canary p95 back under 1s after the scale-up")
    run_jobs(queue)
    due(queue, 86400 + 60)  # the postmortem of `closed` is overdue
    payload = {"incident_id": still, "action": "rollout_restart", "params": {}}
    approvals.propose(redis, keys, payload, "rollout restart of production/api-canary", expires=900)
    return {"closed": closed, "open": still, "flap": flaps[-1]}


def sections(markdown: str) -> dict[str, list[str]]:
    """The report's `## ` sections: their heading (count included) -> their list items."""
    found: dict[str, list[str]] = {}
    heading = ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading = line[3:]
            found[heading] = []
        elif line.startswith("- ") and heading:
            found[heading].append(line[2:])
    return found


def test_the_handoff_names_the_flapping_alert_and_the_open_incident_with_counts(
    mitigation: MitigationBench, queue: Queue, redis: Redis, keys: Keys
) -> None:
    app = _app(mitigation)
    ids = _week(app, queue, redis, keys)
    answer = app.get("/api/v1/handoff?since=7d", headers=VIEWER)
    assert answer.status_code == 200, answer.json
    report, shown = answer.json["report"], sections(answer.json["markdown"])

    (flaky,) = report["flaky"]
    assert (flaky["alertname"], flaky["fired"], flaky["resolved"]) == ("DiskPressure", 5, 5)
    assert (flaky["incidents"], flaky["routes"]) == (FLAPS, ["disk-flaps"])
    (line,) = shown["Flaky alerts (1)"]
    assert line.startswith("DiskPressure (") and "fired 5 times, resolved 5 times" in line
    assert "in 5 incidents, route disk-flaps" in line

    (still,) = report["open"]
    assert (still["id"], still["ic"], still["phase"]) == (ids["open"], ["ada"], "identified")
    (line,) = shown["Still open (1)"]
    assert f"`{ids['open']}`" in line and "identified since" in line and "IC ada" in line
    assert "last note: api-canary p95 back under 1s" in line

    assert report["counts"]["incidents"] == FLAPS + 2
    assert len(shown[f"Incidents ({FLAPS + 2})"]) == FLAPS + 2
    listed = {i["id"]: i for i in report["incidents"]}
    assert listed[ids["open"]]["time_to_acknowledge_seconds"] is not None
    assert listed[ids["flap"]]["status"] == "resolved"
    figures = report["figures"]
    assert (figures["SEV2"]["incidents"], figures["SEV3"]["incidents"]) == (2, FLAPS)
    assert figures["SEV2"]["acknowledged"] == 1


def test_the_handoff_lists_overdue_postmortems_open_follow_ups_and_pending_approvals(
    mitigation: MitigationBench, queue: Queue, redis: Redis, keys: Keys
) -> None:
    app = _app(mitigation)
    ids = _week(app, queue, redis, keys)
    answer = app.get("/api/v1/handoff", headers=VIEWER).json  # since 7d by default
    report, shown = answer["report"], sections(answer["markdown"])
    (overdue,) = report["postmortems_overdue"]
    assert (overdue["incident_id"], overdue["severity"]) == (ids["closed"], "SEV2")
    assert overdue["overdue_seconds"] >= 60
    (line,) = shown["Overdue postmortems (1)"]
    assert f"`{ids['closed']}`" in line and "overdue" in line
    (follow_up,) = report["follow_ups_open"]
    assert (follow_up["id"], follow_up["owner"], follow_up["overdue"]) == ("F1", "vic", True)
    assert shown["Open follow-ups (1)"] == [
        f"`{ids['closed']}` F1 (P2, vic, due 2020-01-02, overdue): Alert per endpoint"
    ]
    (waiting,) = report["pending_approvals"]
    assert (waiting["incident_id"], waiting["action"]) == (ids["open"], "rollout_restart")
    assert len(shown["Pending approvals (1)"]) == 1
    checklist = shown[f"Checklist for the incoming engineer ({len(report['checklist'])})"]
    assert all(item.startswith("[ ] ") for item in checklist)
    named = " ".join(checklist)
    for words in (f"Take over SEV2 {ids['open']}", "flapping alert DiskPressure (fired 5 times"):
        assert words in named
    assert f"overdue postmortem of {ids['closed']}" in named and "follow-up F1" in named
    assert f"alertpilot actions approve {waiting['id']}" in named


def test_the_immediate_report_says_how_to_get_the_rollouts(
    mitigation: MitigationBench,
) -> None:
    answer = _app(mitigation).get("/api/v1/handoff?since=1h", headers=VIEWER).json
    assert answer["report"]["rollouts"] is None
    assert "alertpilot handoff" in answer["report"]["rollouts_note"]
    assert "## Recent rollouts (not read)" in answer["markdown"]
    assert answer["report"]["counts"]["incidents"] == 0
    assert sections(answer["markdown"])["Incidents (0)"] == ["None."]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=59m", "since"),
        ("since=91d", "since"),
        ("since=7", "since"),
        ("since=-1d", "since"),
        ("since=7d&since=1d", "since"),
        ("days=7", "days"),
    ],
)
def test_a_period_outside_1h_to_90d_or_an_unknown_parameter_is_400_naming_it(
    mitigation: MitigationBench, query: str, field: str
) -> None:
    answer = _app(mitigation).get(f"/api/v1/handoff?{query}", headers=VIEWER)
    assert answer.status_code == 400
    assert answer.json["error"]["details"]["field"] == field


def test_the_bounds_themselves_are_accepted(mitigation: MitigationBench) -> None:
    app = _app(mitigation)
    for since, shown in (("1h", "1h"), ("90d", "90d"), ("36h", "1d12h")):
        answer = app.get(f"/api/v1/handoff?since={since}", headers=VIEWER)
        assert answer.status_code == 200 and answer.json["report"]["since"] == shown


def test_the_period_bounds_incidents_but_not_what_still_waits_for_a_person(
    mitigation: MitigationBench, queue: Queue, redis: Redis, keys: Keys
) -> None:
    app = _app(mitigation)
    ids = _week(app, queue, redis, keys)
    due(queue, 3 * 3600)  # everything but the open incident ended over 3 hours ago
    report = app.get("/api/v1/handoff?since=1h", headers=VIEWER).json["report"]
    assert [i["id"] for i in report["incidents"]] == [ids["open"]]
    assert report["flaky"] == [] and report["figures"]["SEV3"]["incidents"] == 0
    assert [p["incident_id"] for p in report["postmortems_overdue"]] == [ids["closed"]]
    assert [f["id"] for f in report["follow_ups_open"]] == ["F1"]


# The worker's job: rollouts, the stored report, chat.


def _rollouts(mitigation: MitigationBench) -> None:
    """production/payments rolled out revision 7 two hours ago (its revision 6 an hour
    before: not current); production/checkout's current one is a month old; staging
    (not an allowed namespace) rolled out a minute ago."""
    kube, now = mitigation.kube, clock.now()
    template = {"metadata": {"labels": {}}, "spec": {"containers": [{"name": "app"}]}}

    def rolled(namespace: str, name: str, revision: int, *ages: tuple[int, float]) -> None:
        kube.add_deployment(namespace, name, revision=revision)
        for number, hours in ages:
            image = {"name": name, "image": f"registry.example/{name}:{number}"}
            spec = {"metadata": template["metadata"], "spec": {"containers": [image]}}
            created = now - timedelta(hours=hours)
            kube.add_replicaset(namespace, f"{name}-r{number}", name, number, spec, created)

    rolled("production", "payments", 7, (6, 3.0), (7, 2.0))
    rolled("production", "checkout", 3, (3, 24 * 30.0))
    rolled("staging", "payments", 2, (2, 1 / 60))


def _job(
    mitigation: MitigationBench, report_id: str, chat: Any = None, **options: Any
) -> dict[str, Any]:
    """The job for `report_id`, called as the worker calls it, with the stand-ins."""
    settings = replace(mitigation.settings, policies_dir=mitigation.tmp_path / "policies")
    request = HandoffRequest(prefix=settings.key_prefix, report_id=report_id, **options)
    kubeconfig = str(mitigation.tmp_path / "kubeconfig")
    return oncall_job.handoff(
        mitigation.redis,
        request,
        settings,
        kube=lambda: Kubernetes(api_client(kubeconfig)),
        chat=chat,
    )


def test_the_job_lists_the_rollouts_of_the_allowed_namespaces_and_stores_the_report(
    mitigation: MitigationBench,
) -> None:
    app = _app(mitigation)
    _rollouts(mitigation)
    assert app.get("/api/v1/handoff/00000000000000aa", headers=VIEWER).status_code == 404
    assert _job(mitigation, "00000000000000aa", since="1d") == {
        "outcome": "stored",
        "id": "00000000000000aa",
        "chat": None,
    }
    stored = app.get("/api/v1/handoff/00000000000000aa", headers=VIEWER).json
    (rollout,) = stored["report"]["rollouts"]
    assert (rollout["namespace"], rollout["name"], rollout["revision"]) == (
        "production",
        "payments",
        7,
    )
    assert rollout["images"] == "registry.example/payments:7"
    assert sections(stored["markdown"])["Recent rollouts (1)"] == [
        f"production/payments: revision 7 at {rollout['rolled_out_at']} "
        "(registry.example/payments:7)"
    ]
    assert not [r for r in mitigation.kube.requests if "/namespaces/staging/" in r.path]
    assert ("apps", "deployments", "list") in mitigation.kube.calls


def test_a_namespace_kubernetes_refuses_is_named_and_the_report_stands(
    mitigation: MitigationBench,
) -> None:
    app = _app(mitigation)
    mitigation.kube.forbid("deployments", "list")  # the Role before it allows listing
    _job(mitigation, "00000000000000bb")
    report = app.get("/api/v1/handoff/00000000000000bb", headers=VIEWER).json["report"]
    assert report["rollouts"] == []
    assert report["rollouts_note"].startswith("rollouts in production not read: ")
    assert "403" in report["rollouts_note"]


def test_post_queues_the_job_which_posts_the_report_to_chat(
    mitigation: MitigationBench, queue: Queue, redis: Redis, keys: Keys, chat: ChatStandIn
) -> None:
    app = _app(mitigation)
    _week(app, queue, redis, keys)
    _rollouts(mitigation)
    before = len(chat.messages)
    queued = app.post("/api/v1/handoff", json={"since": "7d", "post": True}, headers=RESPONDER)
    assert queued.status_code == 202
    report_id = queued.json["id"]
    assert queued.headers["Location"] == f"/api/v1/handoff/{report_id}"
    assert app.get(f"/api/v1/handoff/{report_id}", headers=VIEWER).status_code == 404
    run_jobs(queue)
    stored = app.get(f"/api/v1/handoff/{report_id}", headers=VIEWER).json
    assert (stored["chat"], stored["by"]) == ("posted", "rui")
    (message,) = chat.messages[before:]
    text = message.body["text"]
    assert text == stored["markdown"] and text.startswith("# On-call handoff: ")
    assert "## Flaky alerts (1)" in text and "## Recent rollouts (1)" in text
    assert redis.ttl(f"{keys.prefix}handoff:{report_id}") > 6 * 86400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since": "100d"}, "since"),
        ({"since": 7}, "since"),
        ({"post": "yes"}, "post"),
        ({"until": "now"}, "until"),
    ],
)
def test_a_bad_request_for_the_job_is_400_naming_the_field_and_queues_nothing(
    mitigation: MitigationBench, queue: Queue, body: dict[str, Any], field: str
) -> None:
    answer = _app(mitigation).post("/api/v1/handoff", json=body, headers=RESPONDER)
    assert answer.status_code == 400
    assert answer.json["error"]["details"]["field"] == field
    assert queue.count == 0


def test_only_a_responder_queues_the_job_and_a_report_id_is_checked(
    mitigation: MitigationBench,
) -> None:
    app = _app(mitigation)
    assert app.post("/api/v1/handoff", json={}, headers=VIEWER).status_code == 403
    assert app.get("/api/v1/handoff").status_code == 401
    bad = app.get("/api/v1/handoff/../x", headers=VIEWER)
    assert bad.status_code == 404
    bad = app.get("/api/v1/handoff/NOT-AN-ID", headers=VIEWER)
    assert bad.status_code == 400 and bad.json["error"]["details"]["field"] == "report_id"


# alertpilot handoff


def _cli(url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="alertpilot")
    oncall_cli.register(parser.add_subparsers(required=True))
    args = parser.parse_args(["handoff", *argv])
    env = {"ALERTPILOT_URL": url, "ALERTPILOT_TOKEN": "ap_test_rui"}
    code: int = args.client(args, env)
    return code


def test_the_cli_prints_the_workers_report_with_its_rollouts(
    mitigation: MitigationBench,
    queue: Queue,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _app(mitigation)
    _rollouts(mitigation)
    monkeypatch.setattr(oncall_cli, "sleep", lambda seconds: run_jobs(queue))  # a worker
    with serving(app.application) as url:
        assert _cli(url, "--since", "1d") == 0
    out, err = capsys.readouterr()
    assert out.startswith("# On-call handoff: ") and err == ""
    assert sections(out)["Recent rollouts (1)"][0].startswith("production/payments: revision 7")


def test_without_a_worker_the_cli_prints_the_apis_report_and_says_rollouts_are_missing(
    mitigation: MitigationBench,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _app(mitigation)
    monkeypatch.setattr(oncall_cli, "WAIT_SECONDS", 0.0)
    monkeypatch.setattr(oncall_cli, "sleep", lambda seconds: None)
    with serving(app.application) as url:
        assert _cli(url, "--post") == 0
        assert _cli(url, "--since", "2y") == 1
    out, err = capsys.readouterr()
    assert "## Recent rollouts (not read)" in out
    lines = err.splitlines()
    assert re.fullmatch(
        r"alertpilot: no worker built report [0-9a-f]{16} within 0 s: this one, built by the "
        r"API, lacks the recent rollouts \(the chat post waits for a worker\)",
        lines[0],
    )
    assert lines[1].startswith("alertpilot: 400 bad request: since: expected a duration")


# The template.


def test_the_shipped_template_is_the_built_in_one_and_renders_the_sample() -> None:
    assert (REPO / "policies" / "templates" / TEMPLATE).read_text() == BUILT_IN
    text = render(None, SAMPLE)
    assert set(sections(text)) >= {"Flaky alerts (1)", "Still open (1)", "Recent rollouts (1)"}


def test_the_sample_has_every_field_of_a_real_report() -> None:
    now = datetime(2026, 11, 28, 9, tzinfo=UTC)
    report = build_report(
        now, timedelta(days=7), [], {}, {}, [], [], load_policy(REPO / "policies")
    )

    assert set(report) == set(SAMPLE)
    assert set(report["counts"]) == set(SAMPLE["counts"])
    assert set(report["mitigations"]) == set(SAMPLE["mitigations"])


def test_a_teams_template_writes_the_report_and_a_broken_one_falls_back_to_the_built_in(
    mitigation: MitigationBench,
) -> None:
    team = "Handoff for {{ since }}: {{ counts.open }} open, {{ flaky | length }} flaky\n"
    app = _app(mitigation, team)
    answer = app.get("/api/v1/handoff?since=1d", headers=VIEWER).json
    assert answer["markdown"] == "Handoff for 1d: 0 open, 0 flaky\n"
    # A change `policy validate` would refuse, on disk before a reload rejects it: the
    # templates are read when the report is written.
    path = mitigation.tmp_path / "policies" / "templates" / TEMPLATE
    path.write_text("{{ nothing_of_the_report }}")
    answer = app.get("/api/v1/handoff?since=1d", headers=VIEWER).json
    assert answer["markdown"].startswith("# On-call handoff: ")
    assert "'nothing_of_the_report' is undefined" in answer["template_error"]


def test_text_from_alerts_is_escaped_in_the_markdown_and_kept_in_the_json() -> None:
    now = datetime(2026, 11, 28, 9, tzinfo=UTC)
    incident = _incident("<!channel> p95 & more\n# heading", now - timedelta(hours=1))
    policy = load_policy(REPO / "policies")
    report = build_report(now, timedelta(days=1), [incident], {}, {}, [], None, policy)
    assert report["incidents"][0]["title"] == "<!channel> p95 & more\n# heading"
    (line,) = sections(render(None, report))["Incidents (1)"]
    assert "&lt;!channel&gt; p95 &amp; more # heading" in line


# The pure report: mitigations, and what is flaky.


def _incident(title: str, at: datetime, **changes: Any) -> Incident:
    stamp = at.isoformat().replace("+00:00", "Z")
    alert = AlertState(
        fingerprint="fp1",
        status="firing",
        starts_at=stamp,
        ends_at=None,
        labels={"alertname": "HighLatency"},
        annotations={},
        generator_url="",
        severity="SEV2",
        route="api-latency",
    )
    fields: dict[str, Any] = {
        "id": "abc123def456-x1",
        "key": "latency/api",
        "route": "api-latency",
        "severity": "SEV2",
        "status": "open",
        "started_at": stamp,
        "resolved_at": None,
        "updated_at": stamp,
        "title": title,
        "group_key": "{}",
        "receiver": "alertpilot",
        "external_url": "",
        "alerts": {"fp1": alert},
    }
    return Incident(**(fields | changes))


def test_mitigations_applied_blocked_and_reverted_are_told_apart() -> None:
    now = datetime(2026, 11, 28, 9, tzinfo=UTC)
    incident = _incident("p95", now - timedelta(hours=2))

    def entry(minutes: int, kind: str, transition: str, action: str = "scale_up") -> Any:
        at = (now - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
        message = f"{action} {kind} ({transition})"
        return {
            "at": at,
            "kind": kind,
            "action": action,
            "transition": transition,
            "message": message,
        }

    entries = [
        entry(100, "succeeded", "declared"),
        entry(90, "dry_run", "declared"),
        entry(80, "proposed", "declared", "rollout_restart"),
        entry(70, "blocked", "escalated"),
        entry(60, "succeeded", "declared", "notify"),  # not a mitigation
        entry(10, "succeeded", "resolved"),
        entry(5, "skipped", "resolved"),
    ]
    policy = load_policy(REPO / "policies")
    report = build_report(
        now, timedelta(hours=3), [incident], {incident.id: entries}, {}, [], None, policy
    )
    shown = {kind: [m["message"] for m in found] for kind, found in report["mitigations"].items()}
    assert shown == {
        "applied": ["scale_up succeeded (declared)"],
        "blocked": ["scale_up blocked (escalated)"],
        "reverted": ["scale_up succeeded (resolved)"],
    }
    assert {k: report["counts"][k] for k in shown} == {"applied": 1, "blocked": 1, "reverted": 1}


@pytest.mark.parametrize(("cycles", "flaky"), [(3, False), (4, True)])
def test_an_alert_is_flaky_when_it_fired_and_resolved_more_than_n_times(
    cycles: int, flaky: bool
) -> None:
    now = datetime(2026, 11, 28, 9, tzinfo=UTC)
    incidents, entries = [], {}
    for n in range(cycles):
        at = now - timedelta(hours=10 - n)
        stamp = (at + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        one = _incident("p95", at, id=f"abc123def456-x{n}", status="resolved", resolved_at=stamp)
        incidents.append(one)
        entries[one.id] = [{"at": stamp, "kind": "alert_resolved", "fingerprint": "fp1"}]
    policy = load_policy(REPO / "policies")
    report = build_report(now, timedelta(days=1), incidents, entries, {}, [], None, policy)
    assert [(a["alertname"], a["fired"]) for a in report["flaky"]] == (
        [("HighLatency", cycles)] if flaky else []
    )


@pytest.fixture
def chat(vendors: tuple[Any, Any, ChatStandIn]) -> ChatStandIn:
    return vendors[2]


def test_a_huge_timeline_is_read_up_to_its_newest_entries_and_says_so(
    client: FlaskClient, redis: Redis, keys: Keys
) -> None:
    """The handoff reads, in a request, at most MAX_ENTRIES of a timeline (the newest)
    and says the report is truncated: a flapping incident's 10,000 entries, times
    thousands of incidents, must not hold a receiver thread."""
    (incident_id,) = post(client, latency()).json["incidents"]
    notes = [timeline.entry("note", f"note {n}", by="rui") for n in range(MAX_ENTRIES + 50)]
    timeline.append(redis, keys, incident_id, *notes)
    found = gather(redis, keys, clock.now(), timedelta(days=1))
    assert found.truncated
    entries = found.entries_by_id[incident_id]
    assert len(entries) == MAX_ENTRIES
    assert entries[-1]["message"] == f"note {MAX_ENTRIES + 49}"  # the newest kept
