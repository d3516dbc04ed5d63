"""Slack's `/incident` slash commands (issue 15): signed, fresh and new requests act,
once, as the person the Slack user is; everything else changes nothing."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import ADMIN, post, queued_ids, timeline
from tests.support.mitigation import latency
from webhook.app import create_app
from workers.config import Settings
from workers.incident import clock

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
URL = "/api/v1/slack/commands"


@pytest.fixture
def slack(settings: Settings, redis: Redis) -> FlaskClient:
    signed = replace(settings, slack_signing_secret=SECRET)
    return create_app(signed, redis=redis, registry=CollectorRegistry()).test_client()


def signed(
    text: str, user: str = "URUI", *, at: float | None = None, secret: str = SECRET
) -> dict[str, Any]:
    """A slash command as Slack sends it: form body and v0 signature headers."""
    body = urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0001",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/incident",
            "text": text,
            "response_url": "https://hooks.slack.com/commands/T0001/1/abc",
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
    )
    stamp = str(int(clock.timestamp() if at is None else at))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest.hexdigest()}"}
    return {"data": body, "headers": headers, "content_type": "application/x-www-form-urlencoded"}


def _notes(client: FlaskClient, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in timeline(client, incident_id) if e["kind"] == "note"]


def test_a_signed_note_acts_as_the_slack_users_person(slack: FlaskClient) -> None:
    (incident_id,) = post(slack, latency()).json["incidents"]
    answer = slack.post(URL, **signed(f"note {incident_id} rolled back the canary"))
    assert answer.status_code == 200
    assert answer.json["response_type"] == "ephemeral"
    assert "rolled back the canary" in answer.json["text"]
    (note,) = _notes(slack, incident_id)
    assert (note["by"], note["message"]) == ("rui", "rolled back the canary")


@pytest.mark.parametrize(
    "tamper",
    ["signature", "secret", "no-headers", "stale", "future", "body"],
)
def test_unsigned_wrongly_signed_and_stale_requests_are_refused(
    slack: FlaskClient, tamper: str
) -> None:
    (incident_id,) = post(slack, latency()).json["incidents"]
    request = signed(f"note {incident_id} x")
    if tamper == "signature":
        request["headers"]["X-Slack-Signature"] = "v0=" + "0" * 64
    elif tamper == "secret":
        request = signed(f"note {incident_id} x", secret="another-apps-secret")
    elif tamper == "no-headers":
        request["headers"] = {}
    elif tamper == "stale":
        request = signed(f"note {incident_id} x", at=clock.timestamp() - 6 * 60)
    elif tamper == "future":
        request = signed(f"note {incident_id} x", at=clock.timestamp() + 6 * 60)
    else:
        request["data"] = request["data"].replace("note", "resolve", 1)
    answer = slack.post(URL, **request)
    assert answer.status_code == 401, answer.json
    assert answer.json["error"]["code"] == "unauthorized"
    assert _notes(slack, incident_id) == []


def test_a_replayed_request_acts_once(slack: FlaskClient) -> None:
    (incident_id,) = post(slack, latency()).json["incidents"]
    request = signed(f"note {incident_id} once")
    first = slack.post(URL, **request)
    again = slack.post(URL, **request)
    assert "once" in first.json["text"]
    assert again.status_code == 200 and "already handled" in again.json["text"]
    assert len(_notes(slack, incident_id)) == 1


@pytest.mark.parametrize(
    ("user", "said"),
    [("UNOBODY", "not in alertpilot's users file"), ("UVIC", "vic is viewer")],
)
def test_an_unmapped_or_viewer_user_is_told_and_nothing_changes(
    slack: FlaskClient, user: str, said: str
) -> None:
    (incident_id,) = post(slack, latency()).json["incidents"]
    answer = slack.post(URL, **signed(f"resolve {incident_id}", user=user))
    assert answer.status_code == 200 and said in answer.json["text"]
    incident = slack.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    assert incident["status"] == "open"


def test_declare_and_escalate_queue_their_jobs(slack: FlaskClient, queue: Queue) -> None:
    answer = slack.post(URL, **signed("declare SEV2 checkout checkout 500s for everyone"))
    assert answer.status_code == 200, answer.json
    incident_id = answer.json["text"].split(" ", 1)[0]
    incident = slack.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    assert (incident["title"], incident["roles"]) == ("checkout 500s for everyone", {"ic": ["rui"]})
    up = slack.post(URL, **signed(f"escalate {incident_id} SEV1"))
    assert "escalated from SEV2 to SEV1 by rui" in up.json["text"]
    assert any(j.startswith(f"{incident_id}-r1-SEV1") for j in queued_ids(queue))


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "Usage:"),
        ("help", "Usage:"),
        ("dance", "Unknown command"),
        ("note", "Usage:"),
        ("assign {id} ic", "Usage:"),
        ("status {id} fixed", "Not done (status)"),
        ("escalate {id} SEV9", "Not done (severity)"),
        ("note 0123456789ab-zz hello", "Not done (incident_id)"),
        ("assign {id} ic mallory", "Not done (person)"),
    ],
)
def test_bad_commands_get_a_clear_refusal_and_change_nothing(
    slack: FlaskClient, text: str, said: str
) -> None:
    (incident_id,) = post(slack, latency()).json["incidents"]
    before = slack.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    answer = slack.post(URL, **signed(text.format(id=incident_id)))
    assert answer.status_code == 200 and said in answer.json["text"], answer.json
    assert slack.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json == before


def test_without_a_signing_secret_the_endpoint_is_not_there(client: FlaskClient) -> None:
    answer = client.post(URL, **signed("help"))
    assert answer.status_code == 404


def test_redis_down_is_said_in_slack_not_a_500(settings: Settings) -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    app = create_app(
        replace(settings, slack_signing_secret=SECRET), redis=dead, registry=CollectorRegistry()
    ).test_client()
    answer = app.post(URL, **signed("note 0123456789ab-zz x"))
    assert answer.status_code == 200 and "unavailable" in answer.json["text"]


def test_show_in_chat_says_what_the_api_says(slack: FlaskClient) -> None:
    """The same roles, pending actions and timeline as GET /api/v1/incidents/<id>; a
    viewer may look."""
    (incident_id,) = post(slack, latency()).json["incidents"]
    slack.post(URL, **signed(f"assign {incident_id} ic ada"))
    slack.post(URL, **signed(f"note {incident_id} cache <b>cold</b>"))
    shown = slack.post(URL, **signed(f"show {incident_id}", user="UVIC")).json["text"]
    incident = slack.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    assert "Roles: ic: ada" in shown and incident["roles"] == {"ic": ["ada"]}
    lines = shown.split("Timeline:\n", 1)[1].splitlines()
    assert len(lines) == len(incident["timeline"])
    for line, entry in zip(lines, incident["timeline"], strict=True):
        message = entry["message"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert line.startswith(entry["at"]) and line.endswith(message)
    pending = slack.get("/api/v1/actions", headers=ADMIN).json["actions"]
    assert shown.count("Pending:") == len([p for p in pending if p["incident_id"] == incident_id])
