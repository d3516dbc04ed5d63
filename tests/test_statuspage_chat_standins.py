"""Self-test for tests/support/statuspage_standin.py and chat_standin.py, with real `requests`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.chat_standin import ChatMessage, ChatStandIn
from tests.support.statuspage_standin import StatuspageStandIn

OAUTH = {"Authorization": "OAuth k"}
TIMEOUT_S = 5.0
COMPONENTS = {"cmp1": "API", "cmp2": "Checkout"}


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # loopback only: ignore proxy settings from the environment
    yield session
    session.close()


@pytest.fixture
def sp() -> Iterator[StatuspageStandIn]:
    with StatuspageStandIn(page_id="pg1", api_key="k", components=COMPONENTS, min_interval=0) as s:
        yield s


@pytest.fixture
def chat() -> Iterator[ChatStandIn]:
    with ChatStandIn() as c:
        yield c


def call(
    http: requests.Session, sp: StatuspageStandIn, method: str, path: str, **kwargs: Any
) -> requests.Response:
    kwargs.setdefault("headers", OAUTH)
    return http.request(method, sp.base_url + path, verify=sp.ca_path, timeout=TIMEOUT_S, **kwargs)


def create(http: requests.Session, sp: StatuspageStandIn, **fields: Any) -> dict[str, Any]:
    response = call(http, sp, "POST", "/pages/pg1/incidents", json={"incident": fields})
    assert response.status_code == 201, response.text
    incident: dict[str, Any] = response.json()
    return incident


def test_create_answers_201_with_the_incident_and_records_the_request(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    sent = {
        "incident": {
            "name": "API latency",
            "status": "identified",
            "body": "Requests are slow.",
            "component_ids": ["cmp2"],
            "components": {"cmp1": "partial_outage"},
            "deliver_notifications": False,
            "metadata": {"alertpilot": {"fingerprint": "abc123"}},
        }
    }
    response = call(http, sp, "POST", "/pages/pg1/incidents", json=sent)

    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    incident = response.json()
    assert incident["name"] == "API latency"
    assert incident["status"] == "identified"
    assert incident["impact"] == "major"  # derived from partial_outage
    assert incident["page_id"] == "pg1"
    assert incident["resolved_at"] is None
    assert incident["shortlink"].startswith("https://stspg.io/")
    assert incident["metadata"] == {"alertpilot": {"fingerprint": "abc123"}}
    assert [(c["id"], c["name"], c["status"]) for c in incident["components"]] == [
        ("cmp2", "Checkout", "operational"),
        ("cmp1", "API", "partial_outage"),
    ]
    [update] = incident["incident_updates"]
    assert (update["status"], update["body"]) == ("identified", "Requests are slow.")
    assert update["affected_components"] == [
        {"code": "cmp1", "name": "API", "old_status": "operational", "new_status": "partial_outage"}
    ]
    assert sp.incidents == {incident["id"]: incident}
    assert sp.components["cmp1"] == {"name": "API", "status": "partial_outage"}
    [received] = sp.requests
    assert (received.method, received.path, received.status) == (
        "POST",
        "/v1/pages/pg1/incidents",
        201,
    )
    assert received.headers["authorization"] == "OAuth k"
    assert received.headers["content-type"] == "application/json"
    assert received.body == sent


def test_patch_with_body_adds_an_update_newest_first(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    incident = create(http, sp, name="Checkout errors", body="Looking.")
    patch = {
        "incident": {"status": "monitoring", "body": "Fix deployed.", "impact_override": "minor"}
    }

    response = call(http, sp, "PATCH", f"/pages/pg1/incidents/{incident['id']}", json=patch)

    assert response.status_code == 200
    updated = response.json()
    assert (updated["status"], updated["impact"]) == ("monitoring", "minor")
    assert updated["monitoring_at"] is not None
    assert [u["body"] for u in updated["incident_updates"]] == ["Fix deployed.", "Looking."]
    assert [u["status"] for u in updated["incident_updates"]] == ["monitoring", "investigating"]
    assert sp.requests[-1].body == patch


def test_resolve_sets_resolved_at_and_component_status(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    incident = create(http, sp, name="API down", components={"cmp1": "major_outage"})
    resolve = {"status": "resolved", "body": "Recovered.", "components": {"cmp1": "operational"}}

    response = call(
        http, sp, "PUT", f"/pages/pg1/incidents/{incident['id']}", json={"incident": resolve}
    )

    assert response.status_code == 200
    resolved = response.json()
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] is not None
    assert resolved["components"][0]["status"] == "operational"
    assert sp.components["cmp1"]["status"] == "operational"


def test_unresolved_lists_open_incidents_newest_first(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    first = create(http, sp, name="first")
    second = create(http, sp, name="second")
    third = create(http, sp, name="third")
    second_path = f"/pages/pg1/incidents/{second['id']}"
    assert call(http, sp, "PATCH", second_path, json={"incident": {"status": "resolved"}}).ok

    response = call(http, sp, "GET", "/pages/pg1/incidents/unresolved")

    assert response.status_code == 200
    assert [i["id"] for i in response.json()] == [third["id"], first["id"]]
    everything = call(http, sp, "GET", "/pages/pg1/incidents").json()
    assert [i["id"] for i in everything] == [third["id"], second["id"], first["id"]]


def test_get_one_incident_and_unknown_incident(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    incident = create(http, sp, name="one")

    assert call(http, sp, "GET", f"/pages/pg1/incidents/{incident['id']}").json() == incident
    missing = call(http, sp, "PATCH", "/pages/pg1/incidents/nope", json={"incident": {}})
    assert (missing.status_code, missing.json()) == (404, {"error": "Not found"})


def test_component_patch_and_list(http: requests.Session, sp: StatuspageStandIn) -> None:
    body = {"component": {"status": "degraded_performance"}}

    response = call(http, sp, "PATCH", "/pages/pg1/components/cmp2", json=body)

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == ("cmp2", "degraded_performance")
    listed = call(http, sp, "GET", "/pages/pg1/components").json()
    assert [(c["id"], c["status"]) for c in listed] == [
        ("cmp1", "operational"),
        ("cmp2", "degraded_performance"),
    ]


def test_missing_oauth_header_is_401(http: requests.Session, sp: StatuspageStandIn) -> None:
    response = call(http, sp, "POST", "/pages/pg1/incidents", headers={}, json={"incident": {}})

    assert (response.status_code, response.json()) == (401, {"error": "Could not authenticate"})
    assert sp.incidents == {}


def test_api_key_query_parameter_authenticates(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    response = call(http, sp, "GET", "/pages/pg1/incidents", headers={}, params={"api_key": "k"})

    assert (response.status_code, response.json()) == (200, [])


def test_unknown_page_is_404(http: requests.Session, sp: StatuspageStandIn) -> None:
    response = call(http, sp, "GET", "/pages/other/incidents")

    assert (response.status_code, response.json()) == (404, {"error": "Not found"})


def test_missing_name_is_422(http: requests.Session, sp: StatuspageStandIn) -> None:
    body = {"incident": {"status": "investigating"}}

    response = call(http, sp, "POST", "/pages/pg1/incidents", json=body)

    assert (response.status_code, response.json()) == (422, {"error": ["Name can't be blank"]})
    assert sp.incidents == {}


def test_unknown_component_is_422(http: requests.Session, sp: StatuspageStandIn) -> None:
    body = {"incident": {"name": "x", "components": {"cmp9": "major_outage"}}}

    response = call(http, sp, "POST", "/pages/pg1/incidents", json=body)

    assert response.status_code == 422
    assert sp.incidents == {}


def test_form_encoded_body_is_415(http: requests.Session, sp: StatuspageStandIn) -> None:
    response = call(http, sp, "POST", "/pages/pg1/incidents", data={"incident[name]": "x"})

    assert response.status_code == 415


@pytest.mark.parametrize("limit_status", [420, 429])
def test_second_request_inside_min_interval_is_rate_limited(
    http: requests.Session, limit_status: int
) -> None:
    with StatuspageStandIn(
        components=COMPONENTS, min_interval=60, rate_limit_status=limit_status
    ) as sp:
        first = call(http, sp, "GET", "/pages/pg1/incidents")
        second = call(http, sp, "GET", "/pages/pg1/incidents")

        assert first.status_code == 200
        assert (second.status_code, second.json()) == (
            limit_status,
            {"error": "Rate limit exceeded"},
        )
        assert sp.rate_limited == 1


def test_request_after_min_interval_is_accepted(http: requests.Session) -> None:
    with StatuspageStandIn(components=COMPONENTS, min_interval=0.2) as sp:
        assert call(http, sp, "GET", "/pages/pg1/components").status_code == 200
        time.sleep(0.3)

        assert call(http, sp, "GET", "/pages/pg1/components").status_code == 200
        assert sp.rate_limited == 0


def test_fail_after_create_stores_the_incident_but_drops_the_connection(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    sp.fail_after_create()

    with pytest.raises(requests.ConnectionError):
        call(http, sp, "POST", "/pages/pg1/incidents", json={"incident": {"name": "lost"}})

    unresolved = call(http, sp, "GET", "/pages/pg1/incidents/unresolved").json()
    assert [i["name"] for i in unresolved] == ["lost"]
    assert [r.status for r in sp.requests] == [None, 200]
    assert create(http, sp, name="answered")["name"] == "answered"  # only the next create


def test_fail_next_answers_faults_in_order_then_normally(
    http: requests.Session, sp: StatuspageStandIn
) -> None:
    sp.fail_next(500, 503)

    statuses = [call(http, sp, "GET", "/pages/pg1/incidents").status_code for _ in range(3)]

    assert statuses == [500, 503, 200]


def test_slack_accepts_text_with_ok(http: requests.Session, chat: ChatStandIn) -> None:
    response = http.post(
        chat.slack_url, json={"text": "API down"}, verify=chat.ca_path, timeout=TIMEOUT_S
    )

    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["Content-Type"] == "text/plain"
    assert chat.messages == [ChatMessage(chat.slack_url, {"text": "API down"})]


def test_slack_accepts_blocks_without_text(http: requests.Session, chat: ChatStandIn) -> None:
    blocks: list[Any] = [{"type": "section", "text": {"type": "mrkdwn", "text": "*down*"}}]

    response = http.post(
        chat.slack_url, json={"blocks": blocks}, verify=chat.ca_path, timeout=TIMEOUT_S
    )

    assert (response.status_code, response.text) == (200, "ok")


def test_slack_without_text_or_blocks_is_no_text(http: requests.Session, chat: ChatStandIn) -> None:
    response = http.post(
        chat.slack_url, json={"username": "bot"}, verify=chat.ca_path, timeout=TIMEOUT_S
    )

    assert (response.status_code, response.text) == (400, "no_text")
    assert chat.messages == []


def test_slack_invalid_json_is_invalid_payload(http: requests.Session, chat: ChatStandIn) -> None:
    response = http.post(
        chat.slack_url,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        verify=chat.ca_path,
        timeout=TIMEOUT_S,
    )

    assert (response.status_code, response.text) == (400, "invalid_payload")
    assert chat.requests[0].raw == b"{not json"


def test_slack_unknown_path_is_no_service(http: requests.Session, chat: ChatStandIn) -> None:
    url = chat.slack_url.replace("XXXX", "YYYY")

    response = http.post(url, json={"text": "x"}, verify=chat.ca_path, timeout=TIMEOUT_S)

    assert (response.status_code, response.text) == (404, "no_service")


def test_generic_hook_accepts_any_object_with_204(
    http: requests.Session, chat: ChatStandIn
) -> None:
    body: dict[str, Any] = {"event": "incident", "id": 7}

    response = http.post(chat.generic_url, json=body, verify=chat.ca_path, timeout=TIMEOUT_S)

    assert (response.status_code, response.content) == (204, b"")
    assert chat.messages == [ChatMessage(chat.generic_url, body)]


def test_chat_fail_next_429_carries_retry_after_then_recovers(
    http: requests.Session, chat: ChatStandIn
) -> None:
    chat.fail_next(429, 500)

    limited, failed, ok = (
        http.post(chat.slack_url, json={"text": "x"}, verify=chat.ca_path, timeout=TIMEOUT_S)
        for _ in range(3)
    )

    assert (limited.status_code, limited.headers.get("Retry-After")) == (429, "1")
    assert failed.status_code == 500
    assert ok.status_code == 200
    assert len(chat.messages) == 1


def test_stand_in_stops_listening_on_exit(http: requests.Session) -> None:
    with ChatStandIn() as chat:
        url, ca_path = chat.generic_url, chat.ca_path

    with pytest.raises(requests.ConnectionError):
        http.post(url, json={}, verify=ca_path, timeout=TIMEOUT_S)
