"""The alerts about alertpilot itself, the series they read, and the Grafana dashboard.

- The rules pass Debian's `promtool check rules`, and its `test rules` runs the unit
  tests in deploy/prometheus/tests/, where each alert fires on synthetic series and
  stays quiet where it must.
- The Redis-read series those alerts need (the lanes' queues, workers and scheduler,
  the kill switch) follow real RQ state in a real Redis, and a scrape without Redis
  still answers.
- Every expression of the rules and of the dashboard parses as PromQL and names only
  series the /metrics of a test app exposes; every runbook_url names a section of
  docs/operations.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue, Worker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from tests.conftest import REPO, fixture, post, run_jobs
from webhook.app import create_app
from workers import kill_switch
from workers.config import Settings
from workers.incident.keys import Keys
from workers.jobs.contract import lane_queue, lanes

PROMTOOL = "/usr/bin/promtool"
RULES = REPO / "deploy" / "prometheus" / "alertpilot-rules.yaml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yaml"))
DASHBOARD = REPO / "deploy" / "grafana" / "alertpilot-dashboard.json"
OPERATIONS = REPO / "docs" / "operations.md"
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d"}
PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself, not alertpilot."""
PROMTOOL_TIMEOUT_S = 60

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
        cwd=REPO,
    )


def alerting_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def rule_unit_tests() -> list[dict[str, Any]]:
    """Every alert_rule_test of every promtool test file."""
    return [
        case
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, from the parsed expression."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def dashboard_exprs() -> list[str]:
    """Every panel's query, Grafana's variables replaced by what they stand for."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    nested = [inner for panel in panels for inner in panel.get("panels", [])]
    exprs = []
    for panel in panels + nested:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def samples_of(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def exposed_names(client: FlaskClient, queue: Queue) -> set[str]:
    """The series names in the /metrics of a test app that has taken a notification and
    whose jobs have run (series with labels appear once something is counted)."""
    post(client, fixture("firing-two-alerts.json"))
    run_jobs(queue)
    app = client.application.extensions["alertpilot"]
    kill_switch.pause(app.redis, app.keys, "a scrape with every series", by="ada")
    try:  # the pause's start is a series only while paused
        return {name for name, _ in samples_of(client)}
    finally:
        kill_switch.resume(app.redis, app.keys)


def by_lane(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["lane"]: value for (n, labels), value in samples.items() if n == name}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# promtool ---------------------------------------------------------------------------------


def test_promtool_check_rules_passes() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    done = promtool("test", "rules", *(str(p.relative_to(REPO)) for p in RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fired = {
        (case["alertname"], alert["exp_labels"]["severity"])
        for case in rule_unit_tests()
        for alert in case["exp_alerts"]
    }
    quiet = {case["alertname"] for case in rule_unit_tests() if not case["exp_alerts"]}
    rules = {(rule["alert"], rule["labels"]["severity"]) for rule in alerting_rules()}
    assert sorted(rules - fired) == []
    assert sorted({name for name, _ in rules} - quiet) == []


def test_every_runbook_url_names_a_section_of_operations_md() -> None:
    headings = re.findall(r"^#{2,4} (.+)$", OPERATIONS.read_text(), re.MULTILINE)
    anchors = {github_anchor(h) for h in headings}
    missing = []
    for rule in alerting_rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        if page != "docs/operations.md" or anchor not in anchors:
            missing.append(f"{rule['alert']}: {url}")
    assert missing == []


# what the expressions name ------------------------------------------------------------------


def test_rules_name_only_series_alertpilot_exposes(client: FlaskClient, queue: Queue) -> None:
    exposed = exposed_names(client, queue) | PROMETHEUS_OWN
    used = {name for rule in alerting_rules() for name in metric_names(rule["expr"])}
    assert sorted(used - exposed) == []


def test_dashboard_is_json_with_a_query_in_every_graph() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    graphs = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert graphs
    assert [p["title"] for p in graphs if not p.get("targets")] == []
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_queries_parse_and_name_only_series_alertpilot_exposes(
    client: FlaskClient, queue: Queue
) -> None:
    exposed = exposed_names(client, queue) | PROMETHEUS_OWN
    used = set()
    for expr in dashboard_exprs():
        used |= metric_names(expr)  # parse errors fail here, naming the expression
    assert sorted(used - exposed) == []


def test_dashboard_shows_every_series_an_alert_reads() -> None:
    in_rules = {name for rule in alerting_rules() for name in metric_names(rule["expr"])}
    shown = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    assert sorted(in_rules - shown) == []


# the series read from Redis ----------------------------------------------------------------


def test_queue_jobs_and_oldest_age_follow_each_lane(
    client: FlaskClient, redis: Redis, queue: Queue
) -> None:
    post(client, fixture("firing-two-alerts.json"))
    urgent = lane_queue(queue, "urgent")
    (page_job,) = urgent.get_job_ids()
    ninety_ago = datetime.now(UTC) - timedelta(seconds=90)
    redis.hset(f"rq:job:{page_job}", "enqueued_at", ninety_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    samples = samples_of(client)
    jobs = by_lane(samples, "alertpilot_queue_jobs")
    age = by_lane(samples, "alertpilot_queue_oldest_job_age_seconds")
    assert jobs["urgent"] == 1
    assert 90 <= age["urgent"] < 120
    run_jobs(queue)
    samples = samples_of(client)
    assert by_lane(samples, "alertpilot_queue_jobs") == {"urgent": 0, "comms": 0, "bulk": 0}
    assert set(by_lane(samples, "alertpilot_queue_oldest_job_age_seconds").values()) == {0.0}


def test_workers_count_only_those_whose_heartbeat_lives(
    client: FlaskClient, redis: Redis, queue: Queue
) -> None:
    assert set(by_lane(samples_of(client), "alertpilot_workers").values()) == {0}
    alive = Worker(lanes(queue), connection=redis, serializer=JSONSerializer)
    alive.register_birth()
    dead = Worker(lanes(queue), connection=redis, serializer=JSONSerializer)
    dead.register_birth()
    redis.delete(dead.key)  # its heartbeat ran out: the registry still lists it
    assert by_lane(samples_of(client), "alertpilot_workers") == {
        "urgent": 1,
        "comms": 1,
        "bulk": 1,
    }


def test_scheduler_up_while_a_scheduler_holds_the_lanes(
    client: FlaskClient, redis: Redis, queue: Queue
) -> None:
    assert set(by_lane(samples_of(client), "alertpilot_scheduler_up").values()) == {0}
    scheduler = RQScheduler(lanes(queue), connection=redis, serializer=JSONSerializer)
    scheduler.acquire_locks()
    assert set(by_lane(samples_of(client), "alertpilot_scheduler_up").values()) == {1}
    scheduler.release_locks()
    assert set(by_lane(samples_of(client), "alertpilot_scheduler_up").values()) == {0}


def test_overdue_is_how_late_the_latest_due_scheduled_job_is(
    client: FlaskClient, redis: Redis, queue: Queue
) -> None:
    bulk = lane_queue(queue, "")
    now = time.time()
    redis.zadd(bulk.scheduled_job_registry.key, {"late": int(now) - 200, "later": int(now) + 600})
    overdue = by_lane(samples_of(client), "alertpilot_scheduled_jobs_overdue_seconds")
    assert 200 <= overdue["bulk"] < 230
    assert overdue["urgent"] == overdue["comms"] == 0


def test_failed_jobs_count_the_failed_registry_without_expired_entries(
    client: FlaskClient, redis: Redis, queue: Queue
) -> None:
    comms = lane_queue(queue, "comms")
    now = int(time.time())
    redis.zadd(comms.failed_job_registry.key, {"f1": now + 3600, "f2": -1, "gone": now - 10})
    assert by_lane(samples_of(client), "alertpilot_failed_jobs") == {
        "urgent": 0,
        "comms": 2,
        "bulk": 0,
    }


def test_mitigations_paused_follows_the_kill_switch(
    client: FlaskClient, redis: Redis, keys: Keys
) -> None:
    paused = ("alertpilot_mitigations_paused", ())
    since = ("alertpilot_mitigations_paused_since_seconds", ())
    assert samples_of(client)[paused] == 0 and since not in samples_of(client)
    before = time.time()
    kill_switch.pause(redis, keys, "change freeze", by="ada")
    first = samples_of(client)[since]
    assert samples_of(client)[paused] == 1 and before - 1 <= first <= time.time() + 1
    kill_switch.pause(redis, keys, "still frozen", by="vic")  # a second pause: same start
    assert samples_of(client)[since] == first
    kill_switch.resume(redis, keys)
    assert samples_of(client)[paused] == 0 and since not in samples_of(client)


def test_a_scrape_without_redis_answers_with_the_process_metrics(settings: Settings) -> None:
    away = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    client = create_app(settings, redis=away, registry=CollectorRegistry()).test_client()
    names = {name for name, _ in samples_of(client)}
    assert "alertpilot_notifications_received_total" in names
    assert not names & {"alertpilot_queue_jobs", "alertpilot_workers", "alertpilot_scheduler_up"}


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_test_files_load_the_shipped_rules(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert [(path.parent / f).resolve() for f in doc["rule_files"]] == [RULES.resolve()]
