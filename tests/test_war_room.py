"""The incident war room (issue 15): a Slack channel of its own for the severities that
ask for one, made exactly once through Slack's Web API (a stand-in speaking its real
methods), with the IC invited once assigned."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import (
    ADMIN,
    RESPONDER,
    SEVERITIES,
    fetch,
    post,
    run_jobs,
    timeline,
    write_policy,
)
from tests.support.chat_standin import ChatStandIn
from tests.support.mitigation import latency, route
from tests.support.pagerduty_standin import PagerDutyStandIn
from tests.support.slack_web_standin import SlackWebStandIn
from webhook.app import create_app
from workers.config import Settings
from workers.handlers import build_handlers
from workers.jobs.dispatch import execute

TOKEN = "xoxb-test-war-room"
BRIDGE = "https://meet.example.com/sev1"
WAR_ROOMS = SEVERITIES.replace(
    "SEV1: {name: High, response_time: 15m,",
    f"SEV1: {{name: High, response_time: 15m, war_room: true, bridge: '{BRIDGE}',",
)


@pytest.fixture
def slack() -> Iterator[SlackWebStandIn]:
    with SlackWebStandIn(token=TOKEN) as server:
        server.add_user("URUI", "UADA")
        yield server


@pytest.fixture
def app(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    slack: SlackWebStandIn,
) -> Iterator[FlaskClient]:
    directory = write_policy(tmp_path / "policies", route("[notify]", "SEV1"), WAR_ROOMS)
    with ChatStandIn() as chat:
        for name, value in {
            "ALERTPILOT_POLICIES_DIR": str(directory),
            "ALERTPILOT_DRY_RUN": "false",
            "ALERTPILOT_SLACK_BOT_TOKEN": TOKEN,
            "ALERTPILOT_SLACK_API_URL": slack.base_url,
            "ALERTPILOT_CHAT_WEBHOOK_URL": chat.slack_url,
            "ALERTPILOT_CA_BUNDLE": slack.ca_path,
        }.items():
            monkeypatch.setenv(name, value)
        changed = replace(settings, policies_dir=directory, dry_run=False)
        yield create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


def _room(app: FlaskClient, incident_id: str) -> str:
    return str(app.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json["war_room"])


def test_a_sev1_gets_one_channel_with_its_topic_message_and_link(
    app: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    (channel,) = slack.channels.values()
    assert channel["name"].startswith("inc-") and len(channel["name"]) <= 80
    assert channel["topic"]["value"] == f"SEV1 | investigating | IC: none yet | bridge: {BRIDGE}"
    (message,) = slack.messages[channel["id"]]
    assert "SEV1 declared" in message["text"] and f"Bridge: {BRIDGE}" in message["text"]
    assert _room(app, incident_id).endswith(f"archives/{channel['id']}")
    incident = app.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    assert incident["bridge"] == BRIDGE


def test_a_retried_job_and_a_lost_create_answer_still_make_one_channel(
    app: FlaskClient, slack: SlackWebStandIn, queue: Queue, redis: Redis
) -> None:
    slack.drop_after_create()  # made at Slack, but the worker never hears so
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    job = fetch(queue, f"{incident_id}-declared-war_room")
    assert job is not None  # the failed try waits for its retry
    queue_of = Queue(job.origin, connection=redis, serializer=queue.serializer)
    queue_of.enqueue_job(job)  # the retry, now (two workers would race the same way)
    run_jobs(queue)
    run_jobs(queue)
    assert len(slack.channels) == 1
    entries = [e for e in timeline(app, incident_id) if e.get("action") == "war_room"]
    assert any("adopted" in e["message"] for e in entries), entries


def test_the_ic_is_invited_once_assigned_and_the_topic_follows(
    app: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    answer = app.post(
        f"/api/v1/incidents/{incident_id}/assign",
        json={"role": "ic", "person": "rui"},
        headers=RESPONDER,
    )
    assert answer.status_code == 200, answer.json
    run_jobs(queue)
    (channel,) = slack.channels.values()
    assert "URUI" in channel["members"]
    assert "IC: rui" in channel["topic"]["value"]


def test_a_severity_without_a_war_room_makes_none(
    tmp_path: Path, settings: Settings, redis: Redis, queue: Queue, slack: SlackWebStandIn
) -> None:
    directory = write_policy(tmp_path / "plain", route("[notify]", "SEV2"), WAR_ROOMS)
    plain = create_app(
        replace(settings, policies_dir=directory), redis=redis, registry=CollectorRegistry()
    )
    (incident_id,) = post(plain.test_client(), latency()).json["incidents"]
    run_jobs(queue)
    assert slack.channels == {}
    assert (
        plain.test_client().get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json["war_room"]
        is None
    )


def test_two_workers_running_the_war_room_at_once_make_one_channel(
    app: FlaskClient, slack: SlackWebStandIn, queue: Queue, redis: Redis
) -> None:
    """The same job on two workers (a retry racing the first try): the action lock lets
    one act; the other finds it done."""
    (incident_id,) = post(app, latency()).json["incidents"]
    job = fetch(queue, f"{incident_id}-declared-war_room")
    assert job is not None
    handlers = build_handlers(Settings.from_env(os.environ), redis, "aptest:", queue)
    outcomes: list[str] = []

    def worker() -> None:
        outcomes.append(execute(redis, job.args[0], handlers, job_id=job.id).outcome)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["duplicate", "succeeded"]
    assert len(slack.channels) == 1
    (channel,) = slack.channels.values()
    assert len(slack.messages[channel["id"]]) == 1


def test_the_page_and_the_web_page_carry_the_war_room_and_the_bridge(
    app: FlaskClient,
    slack: SlackWebStandIn,
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    redis: Redis,
) -> None:
    with PagerDutyStandIn() as pd:
        monkeypatch.setenv("ALERTPILOT_PAGERDUTY_EVENTS_URL", pd.base_url)
        monkeypatch.setenv("ALERTPILOT_PAGERDUTY_ROUTING_KEY", "R" * 32)
        monkeypatch.setenv("ALERTPILOT_CA_BUNDLE", pd.ca_path)  # the stand-ins share a CA
        routes = route("[page, notify]", "SEV1")
        directory = Path(os.environ["ALERTPILOT_POLICIES_DIR"])
        (directory / "10-routes.yaml").write_text(routes)
        changed = replace(settings, policies_dir=directory, dry_run=False)
        app = create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()
        (incident_id,) = post(app, latency()).json["incidents"]
        run_jobs(queue)
        (trigger,) = pd.events("trigger")
    links = {link["text"]: link["href"] for link in trigger["links"]}
    (channel,) = slack.channels.values()
    assert links["Conference bridge"] == BRIDGE
    # The page goes first (its own lane) and is never held back for Slack: the room's
    # link is in it only when the room was made before; the web page always has it.
    assert "War room (Slack)" not in links
    page = app.get(f"/incidents/{incident_id}", headers=ADMIN).get_data(as_text=True)
    assert f'href="{BRIDGE}"' in page and f"archives/{channel['id']}" in page
