"""Hostile review of issue 18 ("install and operate it"): REDIS_URL, WAIT, the Redis-read
metrics, the kill switch's start, the NetworkPolicies, the alerting rules and the docs.

Tests that fail name a defect and where it is (docstring); the others guard what the
change gets right. Everything runs on loopback: the test Redis (ALERTPILOT_TEST_REDIS_URL),
or a private redis-server (tests/support/redis_server.py) where commands are counted, and
promtool / `kubectl kustomize` as subprocesses with timeouts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import REPO, fixture, post
from tests.support.rbac import kustomize
from tests.support.redis_server import RedisServer, redis_server
from webhook.app import create_app
from workers import kill_switch
from workers.config import Settings, SettingsError
from workers.incident.keys import Keys
from workers.jobs.contract import lane_queue
from workers.redis_connection import SentinelAddress, parse

PROMTOOL = "/usr/bin/promtool"
RULES = REPO / "deploy" / "prometheus" / "alertpilot-rules.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
ALERTPILOT_CLI = Path(sys.executable).parent / "alertpilot"
SECRET = "Zq9pwXk7"
"""A password fragment that appears nowhere else (not in a path of a traceback)."""


# --- helpers ----------------------------------------------------------------------------


def samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def names(client: FlaskClient) -> set[str]:
    return {name for name, _ in samples(client)}


def by_lane(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[str, float]:
    return {dict(labels)["lane"]: value for (n, labels), value in found.items() if n == name}


class Monitor:
    """`redis-cli MONITOR` of a private server, into a file: every command it runs."""

    def __init__(self, server: RedisServer, path: Path) -> None:
        self.path = path
        self.handle = path.open("wb")
        self.process = subprocess.Popen(
            ["redis-cli", "-p", str(server.port), "monitor"],
            stdout=self.handle,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # MONITOR registered before the commands to see

    def stop(self) -> list[list[str]]:
        time.sleep(0.3)  # the last commands written out
        self.process.terminate()
        self.process.wait(timeout=10)
        self.handle.close()
        commands = []
        for line in self.path.read_text(errors="replace").splitlines():
            if "] " not in line:
                continue
            _, _, rest = line.partition("] ")
            commands.append([part.strip('"') for part in rest.split('" "')])
        return commands


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def private_app(settings: Settings, server: RedisServer, **changes: Any) -> FlaskClient:
    ours = replace(settings, redis_url=server.url, **changes)
    app = create_app(ours, redis=Redis.from_url(server.url), registry=CollectorRegistry())
    return app.test_client()


def promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "hostile-rules-test.yaml"
    doc = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run(
        [PROMTOOL, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


# --- REDIS_URL: defects -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}#rest@127.0.0.1:6379/0",
        f"redis://:{SECRET}/rest@127.0.0.1:6379/0",
        f"redis://:{SECRET}?rest@127.0.0.1:6379/0",
    ],
)
def test_a_one_server_url_that_redis_py_cannot_read_is_a_settings_error(url: str) -> None:
    """DEFECT workers/config.py `_redis_url` + workers/redis_connection.py `parse`: a
    redis:// REDIS_URL is not checked at all (parse returns None, "left to
    Redis.from_url"), so a password holding an unencoded '#', '/' or '?' passes
    Settings.from_env and blows up only at connect time, in redis-py, with
    "Port could not be cast to integer value as '<start of the password>'". Correct: a
    SettingsError naming REDIS_URL at start-up (docs/operations.md: "a bad value stops the
    process with one line naming it"), quoting nothing of the password
    (redis_connection.py: "Errors ... quote nothing of it: never its password").
    deploy/README.md allows '/' in the passwords it pastes raw into `redis://:$PASSWORD@`."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_URL": url})
    said = str(caught.value)
    assert said.startswith("REDIS_URL")
    assert SECRET not in said and "rest" not in said


def test_the_cli_with_an_unreadable_one_server_url_says_one_line_and_no_password(
    tmp_path: Path,
) -> None:
    """DEFECT webhook/cli.py `main` / `_switch` (via workers/redis_connection.py `connect`):
    `alertpilot mitigations resume` with REDIS_URL=redis://:<pw>#...@host dies with a
    Python traceback whose last line is redis-py's ValueError quoting the start of the
    password ('Zq9pwXk7'), exit status 1. Correct (cli.py's docstring: "stops with one line
    naming the variable when one is wrong"): exit 2, one line on stderr naming REDIS_URL,
    no part of the password anywhere in the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTPILOT_")}
    env["REDIS_URL"] = f"redis://:{SECRET}#rest@127.0.0.1:1/0"
    done = subprocess.run(
        [str(ALERTPILOT_CLI), "mitigations", "resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    said = done.stdout + done.stderr
    assert SECRET not in said, said[-600:]
    assert done.returncode == 2, said[-600:]
    assert len(done.stderr.strip().splitlines()) == 1 and "REDIS_URL" in done.stderr


def test_wait_replicas_that_redis_refuses_is_a_settings_error() -> None:
    """DEFECT workers/config.py `Settings.from_env` (`_int` for ALERTPILOT_REDIS_WAIT_REPLICAS,
    no maximum): 2**63 is accepted, and Redis answers every `WAIT 9223372036854775808 ...`
    with "ERR value is out of range", so every notification is answered 503 forever
    instead of the process refusing to start with one line naming the variable."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"ALERTPILOT_REDIS_WAIT_REPLICAS": str(2**63)})
    assert "ALERTPILOT_REDIS_WAIT_REPLICAS" in str(caught.value)


# --- REDIS_URL: guards ------------------------------------------------------------------


def test_sentinel_url_edge_cases_parse() -> None:
    """Guard: a raw '@' in the password (rpartition), every reserved character encoded,
    IPv6 sentinels, ten sentinels, and the password out of the repr."""
    hosts = ",".join(f"s{n}.example:{26379 + n}" for n in range(10))
    assert parse(f"redis+sentinel://:p@ss@{hosts}/svc/15") == SentinelAddress(
        tuple((f"s{n}.example", 26379 + n) for n in range(10)), "svc", 15, None, "p@ss"
    )
    found = parse("redis+sentinel://u%3Ax:a%40b%3Ac%2Fd%25e%23f@[fd00::1]:1,[::1]/s")
    assert found == SentinelAddress((("fd00::1", 1), ("::1", 26379)), "s", 0, "u:x", "a@b:c/d%e#f")
    assert "a@b" not in repr(found)
    for bad in (
        f"redis+sentinel://:{SECRET}@h/",
        f"redis+sentinel://:{SECRET}@/svc",
        f"redis+sentinel://:{SECRET}@h/svc?x=1",
        f"redis+sentinel://:{SECRET}@h:99999/svc",
        f"redis+sentinel://:{SECRET}@[::1/svc",
    ):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"REDIS_URL": bad})
        assert SECRET not in str(caught.value)


# --- WAIT -------------------------------------------------------------------------------


def test_wait_zero_sends_no_wait_and_no_rewrite(
    settings: Settings, private_redis: RedisServer, tmp_path: Path
) -> None:
    """Guard: with ALERTPILOT_REDIS_WAIT_REPLICAS=0 a new notification and its duplicate
    (resend cache off, so the duplicate is read from Redis) send no WAIT, and the
    duplicate is not re-written (replication.py's KEEPTTL script)."""
    client = private_app(settings, private_redis, resend_cache_seconds=0.0)
    monitor = Monitor(private_redis, tmp_path / "monitor.log")
    try:
        assert post(client, fixture("firing-two-alerts.json")).json["status"] == "accepted"
        assert post(client, fixture("firing-two-alerts.json")).json["status"] == "duplicate"
    finally:
        commands = monitor.stop()
    verbs = [c[0].upper() for c in commands if c]
    assert "EXEC" in verbs
    assert "WAIT" not in verbs
    # replay.keep's script runs inside the transaction; replication's re-write must not.
    assert not [c for c in commands if c and c[0].upper() == "EVAL" and "KEEPTTL" in c[1]]


def test_wait_without_replicas_is_503_within_its_timeout_and_a_duplicate_too(
    settings: Settings, private_redis: RedisServer, tmp_path: Path
) -> None:
    """Guard: WAIT 1 on a Redis with no replica: 503 within about the timeout, and the
    retry (its digest found in Redis: EXEC went through) is 503 again, not 'duplicate'."""
    client = private_app(
        settings,
        private_redis,
        redis_wait_replicas=1,
        redis_wait_timeout_seconds=0.05,
        resend_cache_seconds=5.0,
    )
    monitor = Monitor(private_redis, tmp_path / "monitor.log")
    started = time.monotonic()
    try:
        assert post(client, fixture("firing-two-alerts.json")).status_code == 503
        assert post(client, fixture("firing-two-alerts.json")).status_code == 503
        took = time.monotonic() - started
    finally:
        commands = monitor.stop()
    assert took < 3
    verbs = [c[0].upper() for c in commands if c]
    assert verbs.count("WAIT") == 2  # after EXEC, then after the duplicate's re-write
    assert [c for c in commands if c and c[0].upper() == "EVAL" and "KEEPTTL" in c[1]]


# --- /metrics read from Redis -----------------------------------------------------------


def test_metrics_scrape_stays_bounded_with_10000_queued_and_1000_failed_jobs(
    settings: Settings, private_redis: RedisServer, tmp_path: Path
) -> None:
    """Guard: the lanes are read with LLEN, a 10-id LRANGE, ZCARD/ZCOUNT and one
    ZRANGEBYSCORE LIMIT 1: no whole-queue or whole-registry read, no KEYS/SCAN."""
    client = private_app(settings, private_redis)
    direct = Redis.from_url(private_redis.url)
    queue = Queue(settings.queue_name, connection=direct, serializer=JSONSerializer)
    urgent = lane_queue(queue, "urgent")
    with direct.pipeline(transaction=False) as pipe:
        for n in range(0, 10_000, 1000):
            pipe.rpush(urgent.key, *(f"gone-{i}" for i in range(n, n + 1000)))
        later = time.time() + 3600
        pipe.zadd(queue.failed_job_registry.key, {f"f-{i}": later for i in range(1000)})
        pipe.zadd(queue.scheduled_job_registry.key, {f"s-{i}": later + i for i in range(1000)})
        pipe.execute()
    monitor = Monitor(private_redis, tmp_path / "monitor.log")
    try:
        found = samples(client)
    finally:
        commands = monitor.stop()
    assert by_lane(found, "alertpilot_queue_jobs")["urgent"] == 10_000
    assert by_lane(found, "alertpilot_failed_jobs")["bulk"] == 1000
    verbs = [c[0].upper() for c in commands if c]
    assert not {"KEYS", "SCAN", "SSCAN"} & set(verbs)
    for command in commands:  # RQ's registries: never read whole
        if command and command[0].upper() in ("ZRANGE", "ZRANGEBYSCORE") and "rq:" in command[1]:
            assert "LIMIT" in (c.upper() for c in command), command
    assert "LRANGE" in verbs
    for command in commands:
        if command and command[0].upper() == "LRANGE":
            assert int(command[3]) - int(command[2]) < 10 and int(command[3]) >= 0, command
    assert len(commands) < 200


def test_two_installations_on_one_redis_see_only_their_own_lanes(
    settings: Settings, redis: Redis
) -> None:
    """Guard: RQ's keys are named by queue: installation B (another ALERTPILOT_QUEUE and
    prefix) does not count A's queued or failed jobs, workers or scheduler."""
    a = replace(settings, queue_name="hostile-a", key_prefix="ha:")
    b = replace(settings, queue_name="hostile-b", key_prefix="hb:")
    client_b = create_app(b, redis=redis, registry=CollectorRegistry()).test_client()
    queue_a = Queue(a.queue_name, connection=redis, serializer=JSONSerializer)
    redis.rpush(lane_queue(queue_a, "urgent").key, "x", "y")
    redis.zadd(queue_a.failed_job_registry.key, {"f": "+inf"})
    redis.set(f"rq:scheduler-lock:{a.queue_name}", "someone")
    found = samples(client_b)
    assert set(by_lane(found, "alertpilot_queue_jobs").values()) == {0}
    assert set(by_lane(found, "alertpilot_failed_jobs").values()) == {0}
    assert set(by_lane(found, "alertpilot_scheduler_up").values()) == {0}


def test_a_pause_without_a_recorded_start_still_shows_when_it_began(
    settings: Settings, redis: Redis, client: FlaskClient, keys: Keys
) -> None:
    """DEFECT workers/kill_switch.py `pause` + webhook/metrics.py RedisStateCollector: the
    switch's start (`mitigations:paused_at`) is written only by a pause made by this
    release. A pause made before the upgrade (the old `pause` set only
    `mitigations:paused`) stays on with no start: `alertpilot_mitigations_paused` is 1,
    `alertpilot_mitigations_paused_since_seconds` is absent, and AlertpilotMitigationsPaused
    (`time() - paused_since > 4h`) can never fire for it, however long it lasts. Correct:
    a pause in force always has a start on /metrics (e.g. recorded when first seen)."""
    redis.set(keys.mitigations_paused, "old release (paused by ada)")
    first = samples(client)
    assert first[("alertpilot_mitigations_paused", ())] == 1
    assert ("alertpilot_mitigations_paused_since_seconds", ()) in first


def test_a_pause_keeps_its_first_start_and_resume_clears_it(
    redis: Redis, client: FlaskClient, keys: Keys
) -> None:
    """Guard: a second pause keeps the first start; resume removes both keys."""
    kill_switch.pause(redis, keys, "one", by="ada")
    redis.set(keys.mitigations_paused_at, "1000")
    kill_switch.pause(redis, keys, "two", by="ada")
    assert samples(client)[("alertpilot_mitigations_paused_since_seconds", ())] == 1000
    kill_switch.resume(redis, keys)
    assert not redis.exists(keys.mitigations_paused, keys.mitigations_paused_at)


# --- alerting rules ---------------------------------------------------------------------


UNREACHABLE = {
    "summary": "alertpilot cannot reach Redis.",
    "description": (
        "For 2 minutes no alertpilot receiver could read its state from Redis: they answer"
        " /readyz 503 and leave their Service, and Alertmanager's notifications fail until"
        " Redis is back."
    ),
    "runbook_url": "docs/operations.md#alertpilotredisunreachable",
}


def test_a_long_redis_outage_fires_redis_unavailable(tmp_path: Path) -> None:
    """FOUND (now AlertpilotRedisUnreachable, on alertpilot_redis_up) in
    deploy/prometheus/alertpilot-rules.yaml AlertpilotRedisUnavailable (with
    deploy/base/webhook-deployment.yaml's readinessProbe on /readyz): the alert needs
    `rate(alertpilot_notifications_received_total{outcome="unavailable"}[5m]) > 0` for 5
    minutes, but with Redis down /readyz answers 503, so after 3 probes (15 s) every
    receiver leaves the Service and Alertmanager's requests never reach a receiver again:
    the 503 counter stops after a few notifications. Prometheus still scrapes the pods
    (up == 1, /metrics answers without the Redis-read series), so AlertpilotDown stays
    quiet too. docs/operations.md "Redis down" promises `AlertpilotRedisUnavailable`;
    here Redis is down from minute 10 to the end and it never fires."""
    received = 'alertpilot_notifications_received_total{job="alertpilot", instance='
    series = [
        # Two receivers, scraped and up throughout (/metrics needs no Redis).
        {"series": 'up{job="alertpilot", instance="a"}', "values": "1x60"},
        {"series": 'up{job="alertpilot", instance="b"}', "values": "1x60"},
        # Notifications accepted until Redis goes down at 10m.
        {
            "series": received + '"a", outcome="accepted"}',
            "values": "0+4x10 40x50",
        },
        # The few that reached a receiver before /readyz took them out of the Service.
        {
            "series": received + '"a", outcome="unavailable"}',
            "values": "0x10 2x50",
        },
        {
            "series": received + '"b", outcome="unavailable"}',
            "values": "0x10 1x50",
        },
        # Read from Redis at scrape: gone once Redis is, and alertpilot_redis_up says so.
        {
            "series": 'alertpilot_workers{job="alertpilot", instance="a", lane="urgent"}',
            "values": "1x10",
        },
        {"series": 'alertpilot_redis_up{job="alertpilot", instance="a"}', "values": "1x10 0x50"},
        {"series": 'alertpilot_redis_up{job="alertpilot", instance="b"}', "values": "1x10 0x50"},
    ]
    done = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "40m",
                        "alertname": "AlertpilotRedisUnreachable",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "job": "alertpilot"},
                                "exp_annotations": UNREACHABLE,
                            }
                        ],
                    }
                ],
            }
        ],
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- manifests and docs -----------------------------------------------------------------


def network_policy(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name
    )


def _allows(policy: dict[str, Any], port: int) -> bool:
    """`policy`'s egress lets TCP `port` out to an address outside the cluster."""
    for rule in policy["spec"].get("egress", []):
        peers = rule.get("to")
        if peers and not any("ipBlock" in p for p in peers):
            continue
        ports = rule.get("ports")
        if not ports or any(p.get("port") in (port, None) for p in ports):
            return True
    return False


@pytest.mark.parametrize("overlay", ["production", "staging"])
def test_the_worker_network_policy_lets_runbook_checks_out(overlay: str) -> None:
    """DEFECT deploy/components/network-policy/worker-networkpolicy.yaml: the worker's
    egress is Redis, DNS, TCP 443/6443 and Prometheus:9090 only, but the worker runs the
    runbooks' `tcp_check` ("a dependency's host:port accepts a connection (Redis,
    PostgreSQL...)", workers/policy/runbooks.py) and `http_check` (http:// on 80 by
    default), policies/README.md. With either overlay every such check of PostgreSQL
    (5432) or a plain-HTTP health endpoint (80) times out as if the dependency were down,
    and neither the component's comments nor deploy/README.md say so. Correct: the
    worker may reach them (or the overlay documents the patch that lets it)."""
    objects = kustomize(REPO / "deploy" / "overlays" / overlay)
    worker = network_policy(objects, "alertpilot-worker")
    documented = (
        "tcp_check"
        in (REPO / "deploy" / "components" / "network-policy" / "kustomization.yaml").read_text()
        or "tcp_check" in (REPO / "deploy" / "README.md").read_text()
    )
    assert documented or (_allows(worker, 5432) and _allows(worker, 80))


def test_operations_md_install_creates_the_secret_keys_deploy_redis_sentinel_needs() -> None:
    """DEFECT docs/operations.md "Install" step 1: it creates `alertpilot-redis` with
    `password` and `url` only, then step 2 offers `deploy/redis/sentinel`, whose servers'
    and sentinels' pods read the key `sentinel-password` of that Secret without
    `optional: true`: following the page, the Sentinel pods never start
    (CreateContainerConfigError). deploy/README.md has the key; operations.md never says it."""
    required = set()
    for obj in kustomize(REPO / "deploy" / "redis" / "sentinel"):
        if obj["kind"] != "StatefulSet":
            continue
        spec = obj["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == "alertpilot-redis" and not ref.get("optional"):
                    required.add(ref["key"])
    assert "sentinel-password" in required
    text = OPERATIONS.read_text()
    missing = sorted(key for key in required if key not in text)
    assert not missing, f"docs/operations.md never creates {missing}"


def test_receiver_network_policy_admits_prometheus_and_alertmanager_on_the_service_port() -> None:
    """Guard: the production overlay's receiver policy: ingress from the two peers on the
    named port `http` (9095, the probes' and the Service's), DNS to kube-dns in
    kube-system, Redis egress to the pods deploy/redis/* labels, 6379 and 26379."""
    objects = kustomize(REPO / "deploy" / "overlays" / "production")
    webhook = network_policy(objects, "alertpilot-webhook")
    ingress = webhook["spec"]["ingress"]
    assert [p["port"] for p in ingress[0]["ports"]] == ["http"]
    peers = ingress[0]["from"]
    assert {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in peers} == {
        "alertmanager",
        "prometheus",
    }
    redis_rule, dns_rule = webhook["spec"]["egress"]
    assert {p["port"] for p in redis_rule["ports"]} == {6379, 26379}
    selector = redis_rule["to"][0]["podSelector"]["matchLabels"]
    for variant in ("single", "sentinel"):
        for obj in kustomize(REPO / "deploy" / "redis" / variant):
            if obj["kind"] == "StatefulSet":
                labels = obj["spec"]["template"]["metadata"]["labels"]
                assert selector.items() <= labels.items(), (variant, labels)
    assert dns_rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
