"""A hostile review of issue 15 (the web page, Slack's slash commands, war rooms): each
test states what the docs promise and fails where the code does not keep it."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis import Redis
from rq import Queue

from tests.conftest import (
    ADMIN,
    RESPONDER,
    SEVERITIES,
    post,
    queued_ids,
    run_jobs,
    run_retries,
    timeline,
    write_policy,
)
from tests.support.chat_standin import ChatStandIn, Received, Reply
from tests.support.mitigation import latency, route
from tests.support.slack_web_standin import SlackWebStandIn
from webhook.app import create_app
from webhook.web_session import COOKIE
from workers.config import Settings
from workers.incident import clock
from workers.policy.model import Severity

SESSION_SECRET = "hostile-review-secret-9a1b"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_URL = "/api/v1/slack/commands"
BOT_TOKEN = "xoxb-hostile-review"
BRIDGE = "https://meet.example.com/sev1"
WAR_ROOMS = SEVERITIES.replace(
    "SEV1: {name: High, response_time: 15m,",
    f"SEV1: {{name: High, response_time: 15m, war_room: true, bridge: '{BRIDGE}',",
)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


# --- the web page --------------------------------------------------------------------


@pytest.fixture
def web(settings: Settings, redis: Redis) -> Flask:
    signed = replace(settings, session_secret=SESSION_SECRET)
    return create_app(signed, redis=redis, registry=CollectorRegistry())


def _csrf(html: bytes) -> str:
    found = CSRF.search(html.decode())
    assert found is not None, html[:500]
    return found.group(1)


def _sign_in(client: FlaskClient, token: str, next_: str = "") -> Any:
    form = client.get("/login")
    assert form.status_code == 200
    data = {"csrf": _csrf(form.data), "token": token, "next": next_}
    return client.post("/login", data=data)


def test_a_session_cookie_is_dead_after_its_person_signs_out(web: Flask) -> None:
    """Signing out must end the session, not only ask this browser to forget the cookie:
    a copied cookie (shared machine, a proxy's log, malware) must stop working."""
    browser = web.test_client()
    assert _sign_in(browser, "ap_test_rui").status_code == 303
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None
    stolen = cookie.value
    page = browser.get("/incidents")
    assert page.status_code == 200 and b"rui" in page.data
    assert browser.post("/logout", data={"csrf": _csrf(page.data)}).status_code == 303

    replayed = web.test_client()
    replayed.set_cookie(COOKIE, stolen)
    answer = replayed.get("/incidents")
    assert answer.status_code == 303, "the signed-out session still reads the page"
    assert answer.headers["Location"].startswith("/login")


def test_login_never_redirects_off_site_and_marks_its_cookie(web: Flask) -> None:
    for target in ("//evil.example/incidents", "https://evil.example", "/incidents/../x"):
        client = web.test_client()
        answer = _sign_in(client, "ap_test_rui", target)
        assert answer.status_code == 303
        assert answer.headers["Location"] == "/incidents", target
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_html_in_a_note_is_shown_as_text(web: Flask, queue: Queue) -> None:
    client = web.test_client()
    (incident_id,) = post(client, latency()).json["incidents"]
    script = "<script>alert(1)</script>"
    client.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": script}, headers=RESPONDER)
    page = client.get(f"/incidents/{incident_id}", headers=RESPONDER)
    assert page.status_code == 200
    assert script.encode() not in page.data
    assert page.headers["Cache-Control"] == "no-store"


def test_the_page_is_a_clean_503_when_redis_is_down(settings: Settings) -> None:
    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    app = create_app(
        replace(settings, session_secret=SESSION_SECRET), redis=down, registry=CollectorRegistry()
    )
    client = app.test_client()
    for path in ("/incidents", "/incidents/abc-123"):
        answer = client.get(path, headers=RESPONDER)
        assert answer.status_code == 503, (path, answer.status_code)
        assert answer.mimetype == "text/html"


# --- Slack's slash commands ----------------------------------------------------------


@pytest.fixture
def slash(settings: Settings, redis: Redis) -> FlaskClient:
    signed = replace(settings, slack_signing_secret=SIGNING_SECRET)
    return create_app(signed, redis=redis, registry=CollectorRegistry()).test_client()


def _signed(text: str, user: str = "URUI") -> dict[str, Any]:
    body = urlencode({"team_id": "T0001", "user_id": user, "command": "/incident", "text": text})
    stamp = str(int(clock.timestamp()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest.hexdigest()}"}
    return {"data": body, "headers": headers, "content_type": "application/x-www-form-urlencoded"}


def test_slack_escaped_characters_in_a_note_are_stored_as_typed(slash: FlaskClient) -> None:
    """Slack sends &, < and > of a slash command's text as &amp;, &lt; and &gt;: the
    person typed `p99 < 200ms & falling`, the timeline must say so."""
    (incident_id,) = post(slash, latency()).json["incidents"]
    answer = slash.post(SLACK_URL, **_signed(f"note {incident_id} p99 &lt; 200ms &amp; falling"))
    assert answer.status_code == 200, answer.data
    (note,) = [e for e in timeline(slash, incident_id) if e["kind"] == "note"]
    assert note["message"] == "p99 < 200ms & falling"


def test_a_slack_mention_names_the_person_to_assign(slash: FlaskClient) -> None:
    """With "escape users" on (Slack's advice), `/incident assign ID ic @ada` arrives as
    `<@UADA|ada>`: the person whose slack_id is UADA."""
    (incident_id,) = post(slash, latency()).json["incidents"]
    answer = slash.post(SLACK_URL, **_signed(f"assign {incident_id} ic <@UADA|ada>"))
    assert answer.status_code == 200
    roles = slash.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json["roles"]
    assert roles.get("ic") == ["ada"], answer.json["text"]


def test_a_replayed_slash_command_acts_once(slash: FlaskClient) -> None:
    (incident_id,) = post(slash, latency()).json["incidents"]
    request = _signed(f"note {incident_id} once")
    assert slash.post(SLACK_URL, **request).status_code == 200
    again = slash.post(SLACK_URL, **request)
    assert "already handled" in again.json["text"]
    assert len([e for e in timeline(slash, incident_id) if e["kind"] == "note"]) == 1


# --- war rooms -------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[SlackWebStandIn]:
    with SlackWebStandIn(token=BOT_TOKEN) as server:
        server.add_user("URUI", "UADA")
        yield server


def _rooms(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    slack: SlackWebStandIn,
    chat: ChatStandIn,
    severity: str,
) -> FlaskClient:
    directory = write_policy(tmp_path / "policies", route("[notify]", severity), WAR_ROOMS)
    for name, value in {
        "ALERTPILOT_POLICIES_DIR": str(directory),
        "ALERTPILOT_DRY_RUN": "false",
        "ALERTPILOT_SLACK_BOT_TOKEN": BOT_TOKEN,
        "ALERTPILOT_SLACK_API_URL": slack.base_url,
        "ALERTPILOT_CHAT_WEBHOOK_URL": chat.slack_url,
        "ALERTPILOT_CA_BUNDLE": slack.ca_path,
    }.items():
        monkeypatch.setenv(name, value)
    changed = replace(settings, policies_dir=directory, dry_run=False)
    return create_app(changed, redis=redis, registry=CollectorRegistry()).test_client()


@pytest.fixture
def chat() -> Iterator[ChatStandIn]:
    with ChatStandIn() as server:
        yield server


@pytest.fixture
def sev1(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    slack: SlackWebStandIn,
    chat: ChatStandIn,
) -> FlaskClient:
    return _rooms(tmp_path, settings, redis, monkeypatch, slack, chat, "SEV1")


@pytest.fixture
def sev2(
    tmp_path: Path,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    slack: SlackWebStandIn,
    chat: ChatStandIn,
) -> FlaskClient:
    return _rooms(tmp_path, settings, redis, monkeypatch, slack, chat, "SEV2")


def _act(client: FlaskClient, incident_id: str, name: str, **body: str) -> None:
    answer = client.post(f"/api/v1/incidents/{incident_id}/{name}", json=body, headers=RESPONDER)
    assert answer.status_code == 200, answer.json


def _channel(slack: SlackWebStandIn) -> dict[str, Any]:
    (channel,) = slack.channels.values()
    return channel


def test_an_ic_assigned_before_the_escalation_is_invited_to_the_room_it_makes(
    sev2: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    (incident_id,) = post(sev2, latency()).json["incidents"]
    run_jobs(queue)
    _act(sev2, incident_id, "assign", role="ic", person="rui")
    _act(sev2, incident_id, "severity", severity="SEV1")
    run_jobs(queue)
    channel = _channel(slack)
    assert "IC: rui" in channel["topic"]["value"]
    assert "URUI" in channel["members"], "the IC named in the topic is not in the room"


def test_the_person_who_declares_a_sev1_is_its_ic_and_is_in_its_room(
    sev1: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    answer = sev1.post(
        "/api/v1/incidents",
        json={"title": "checkout down", "severity": "SEV1", "service": "checkout"},
        headers=RESPONDER,
    )
    assert answer.status_code == 201, answer.json
    run_jobs(queue)
    channel = _channel(slack)
    assert "IC: rui" in channel["topic"]["value"]
    assert "URUI" in channel["members"]


def test_the_war_room_topic_follows_the_status(
    sev1: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    """docs: its topic is the severity, status, IC and bridge."""
    (incident_id,) = post(sev1, latency()).json["incidents"]
    run_jobs(queue)
    _act(sev1, incident_id, "status", status="identified")
    run_jobs(queue)
    assert _channel(slack)["topic"]["value"].startswith("SEV1 | identified |")


def test_a_reopened_incidents_war_room_says_it_is_open_again(
    sev1: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    (incident_id,) = post(sev1, latency()).json["incidents"]
    run_jobs(queue)
    _act(sev1, incident_id, "resolve")
    run_jobs(queue)
    assert "| resolved |" in _channel(slack)["topic"]["value"]
    _act(sev1, incident_id, "reopen")
    run_jobs(queue)
    channel = _channel(slack)
    assert "| resolved |" not in channel["topic"]["value"], channel["topic"]
    assert len(slack.messages[channel["id"]]) == 3  # declared, resolved, reopened


def test_a_rate_limited_invite_does_not_post_the_message_twice(
    sev1: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    (incident_id,) = post(sev1, latency()).json["incidents"]
    run_jobs(queue)
    before = len(slack.messages[_channel(slack)["id"]])
    _act(sev1, incident_id, "assign", role="ic", person="rui")
    (job_id,) = [j for j in queued_ids(queue) if j.endswith("war_room")]
    limited = {"left": 1}
    handle = slack.handle

    def rate_limit_the_invite(request: Received, fault: int | None) -> Reply | None:
        if request.path.endswith("/conversations.invite") and limited["left"]:
            limited["left"] -= 1
            body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
            return Reply(429, body, (("Content-Type", "application/json"), ("Retry-After", "1")))
        return handle(request, fault)

    slack.handle = rate_limit_the_invite  # type: ignore[method-assign]
    run_retries(queue, job_id)
    channel = _channel(slack)
    assert "URUI" in channel["members"]
    texts = [m["text"] for m in slack.messages[channel["id"]]]
    assert len(texts) == before + 1, texts


def test_a_bridge_that_is_not_a_url_is_refused_by_the_policy() -> None:
    """`bridge` goes verbatim into chat and the topic: `<!channel>` would ping everyone."""
    with pytest.raises(ValidationError):
        Severity(name="High", response_time="15m", bridge="https://x.example/> <!channel>")


def test_a_war_room_token_never_reaches_the_timeline(
    sev1: FlaskClient, slack: SlackWebStandIn, queue: Queue
) -> None:
    slack.fail_next(500, 500, 500, 500, 500, 500, 500, 500, 500, 500)
    (incident_id,) = post(sev1, latency()).json["incidents"]
    run_jobs(queue)
    assert BOT_TOKEN not in json.dumps(timeline(sev1, incident_id))
    assert all("[valid]" in r.headers.get("authorization", "[valid]") for r in slack.requests)
