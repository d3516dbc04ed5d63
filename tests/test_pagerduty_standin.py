"""Self-test of the PagerDuty Events API v2 stand-in, driven by the real `pagerduty` client."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pagerduty
import pytest
from pagerduty import EventsApiV2Client

from tests.support.pagerduty_standin import PagerDutyStandIn

ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"  # 32 characters, like a real one
TIMEOUT_S = 5


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn() as standin:
        yield standin


def make_client(pd: PagerDutyStandIn, **kw: Any) -> EventsApiV2Client:
    options: dict[str, Any] = {"verify": pd.client_ssl_context(), "trust_env": False} | kw
    client = EventsApiV2Client(ROUTING_KEY, base_url=pd.base_url, **options)
    client.timeout = TIMEOUT_S  # request() passes this attribute, not httpx2's timeout=
    client.sleep_timer = 0.01  # first retry sleeps sleep_timer * sleep_timer_base
    return client


@pytest.fixture
def client(pd: PagerDutyStandIn) -> Iterator[EventsApiV2Client]:
    with make_client(pd) as pd_client:
        yield pd_client


def response_of(error: pytest.ExceptionInfo[pagerduty.HttpError]) -> httpx2.Response:
    response: httpx2.Response | None = error.value.response
    assert response is not None
    return response


def raw_post(pd: PagerDutyStandIn, path: str, **kw: Any) -> httpx2.Response:
    context = pd.client_ssl_context()
    with httpx2.Client(base_url=pd.base_url, verify=context, trust_env=False) as http:
        return http.post(path, timeout=TIMEOUT_S, **kw)


def test_trigger_returns_generated_dedup_key_and_records_exact_body(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    link = {"href": "https://runbooks.example/disk", "text": "Runbook"}
    extra: dict[str, Any] = {"component": "postgres", "group": "db", "class": "disk"}
    extra["timestamp"] = "2026-03-01T12:00:00Z"
    key = client.trigger(
        "Disk full on db1",
        "db1.example",
        severity="error",
        payload=extra,
        custom_details={"free_bytes": 0},
        links=[link],
    )
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    payload: dict[str, Any] = {
        "summary": "Disk full on db1",
        "source": "db1.example",
        "severity": "error",
    }
    payload |= extra | {"custom_details": {"free_bytes": 0}}
    assert pd.events() == [
        {"routing_key": ROUTING_KEY, "event_action": "trigger", "payload": payload, "links": [link]}
    ]
    assert pd.alerts == {(ROUTING_KEY, key): "triggered"}


def test_trigger_with_dedup_key_returns_that_key(client: EventsApiV2Client) -> None:
    assert client.trigger("Disk full", "db1", dedup_key="grp-1") == "grp-1"


def test_client_sends_user_agent_and_json_content_type(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    client.trigger("Disk full", "db1")
    (received,) = pd.requests
    assert (received.method, received.path) == ("POST", "/v2/enqueue")
    assert received.headers["user-agent"].startswith("python-pagerduty/7.2.0 httpx2/")
    assert received.headers["content-type"] == "application/json"


def test_resolve_changes_alert_state(pd: PagerDutyStandIn, client: EventsApiV2Client) -> None:
    client.trigger("Disk full", "db1", dedup_key="grp-1")
    assert client.resolve("grp-1") == "grp-1"
    assert pd.alerts == {(ROUTING_KEY, "grp-1"): "resolved"}
    resolve = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "grp-1"}
    assert pd.events("resolve") == [resolve]


def test_acknowledge_changes_alert_state(pd: PagerDutyStandIn, client: EventsApiV2Client) -> None:
    client.trigger("Disk full", "db1", dedup_key="grp-1")
    client.acknowledge("grp-1")
    assert pd.alerts == {(ROUTING_KEY, "grp-1"): "acknowledged"}


def test_resolve_of_unknown_key_is_accepted_and_changes_nothing(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    assert client.resolve("never-triggered") == "never-triggered"
    assert [r.status for r in pd.requests] == [202]
    assert pd.alerts == {}


def test_repeated_trigger_joins_the_open_alert(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    client.trigger("Disk full", "db1", dedup_key="grp-1")
    client.trigger("Disk still full", "db1", dedup_key="grp-1")
    assert pd.opened == [(ROUTING_KEY, "grp-1")]


def test_trigger_after_resolve_opens_a_new_alert(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    client.trigger("Disk full", "db1", dedup_key="grp-1")
    client.resolve("grp-1")
    client.trigger("Disk full again", "db1", dedup_key="grp-1")
    assert pd.opened == [(ROUTING_KEY, "grp-1")] * 2
    assert pd.alerts == {(ROUTING_KEY, "grp-1"): "triggered"}


def test_bad_severity_surfaces_as_http_error_400(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    with pytest.raises(pagerduty.HttpError) as caught:
        client.trigger("Disk full", "db1", severity="fatal")
    assert not isinstance(caught.value, pagerduty.ServerHttpError)
    assert response_of(caught).status_code == 400
    body = response_of(caught).json()
    assert (body["status"], body["message"]) == ("invalid event", "Event object is invalid")
    assert body["errors"] == [
        "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
    ]
    assert pd.events() == [] and pd.alerts == {}


def test_invalid_event_lists_one_error_per_problem(pd: PagerDutyStandIn) -> None:
    response = raw_post(pd, "/v2/enqueue", json={"routing_key": "short", "event_action": "resolve"})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        "Length of 'routing_key' is incorrect (should be 32)",
        "'dedup_key' is required for resolve events",
    ]


def test_request_that_is_not_json_is_rejected(pd: PagerDutyStandIn) -> None:
    response = raw_post(pd, "/v2/enqueue", data={"routing_key": ROUTING_KEY})
    assert response.status_code == 400
    assert response.json()["status"] == "invalid event"
    assert pd.requests[0].headers["content-type"] == "application/x-www-form-urlencoded"


def test_throttle_then_success_after_one_retry(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    pd.fail_next(429)
    client.retry[429] = 1  # the default (no entry) retries 429 forever
    assert client.trigger("Disk full", "db1", dedup_key="grp-1") == "grp-1"
    first, second = pd.requests
    assert (first.status, second.status) == (429, 202)
    assert first.body == second.body
    assert pd.opened == [(ROUTING_KEY, "grp-1")]


def test_throttle_response_has_rate_limit_headers(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    pd.fail_next(429, 429)
    client.retry[429] = 1
    with pytest.raises(pagerduty.HttpError) as caught:
        client.trigger("Disk full", "db1")
    response = response_of(caught)
    assert response.status_code == 429
    assert response.json()["status"] == "throttle event"
    assert response.headers["ratelimit-remaining"] == "0"
    assert (
        int(response.headers["ratelimit-limit"]) > 0
        and int(response.headers["ratelimit-reset"]) > 0
    )
    assert len(pd.requests) == 2


def test_server_error_is_retried_by_the_clients_preset(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    assert client.retry == {500: 2, 502: 4, 503: 6, 504: 6}
    pd.fail_next(503, 500)
    client.trigger("Disk full", "db1", dedup_key="grp-1")
    assert [r.status for r in pd.requests] == [503, 500, 202]


def test_server_error_beyond_retries_raises_server_http_error(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    pd.fail_next(500, 500, 500)
    with pytest.raises(pagerduty.ServerHttpError) as caught:
        client.trigger("Disk full", "db1")
    assert response_of(caught).status_code == 500
    assert len(pd.requests) == 3 and pd.alerts == {}


def test_fail_next_rejects_a_success_status(pd: PagerDutyStandIn) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        pd.fail_next(202)


def test_plain_http_base_url_is_rejected_by_the_client(pd: PagerDutyStandIn) -> None:
    plain = pd.base_url.replace("https://", "http://")
    with pytest.raises(pagerduty.UrlError, match="https://"):
        EventsApiV2Client(ROUTING_KEY, base_url=plain, trust_env=False)
    assert not issubclass(pagerduty.UrlError, pagerduty.Error)  # `except Error` misses it
    assert pd.requests == []


def test_verify_with_the_ca_path_works_but_httpx2_deprecates_it(pd: PagerDutyStandIn) -> None:
    with pytest.warns(DeprecationWarning, match="verify=<str>"):
        client = make_client(pd, verify=pd.ca_path)
    with client:
        assert client.trigger("Disk full", "db1", dedup_key="grp-1") == "grp-1"


def test_client_without_the_ca_cannot_connect(pd: PagerDutyStandIn) -> None:
    with make_client(pd, verify=True) as client:
        client.max_network_attempts = 0  # TLS failures are retried like network errors
        with pytest.raises(pagerduty.Error) as caught:
            client.trigger("Disk full", "db1")
    assert isinstance(caught.value.__cause__, httpx2.ConnectError)
    assert caught.value.response is None and pd.requests == []


def test_change_event_is_accepted(pd: PagerDutyStandIn, client: EventsApiV2Client) -> None:
    payload = {"summary": "Deployed v2", "source": "ci", "timestamp": "2026-03-01T12:00:00Z"}
    client.send_change_event(payload=payload)
    assert pd.change_events() == [{"routing_key": ROUTING_KEY, "payload": payload}]
    assert pd.events() == []


def test_client_submit_without_timestamp_is_broken_in_7_2_0(client: EventsApiV2Client) -> None:
    with pytest.raises(AttributeError, match="timezone"):  # event_timestamp bug
        client.submit("Deployed v2", "ci")


def test_concurrent_events_are_all_recorded(
    pd: PagerDutyStandIn, client: EventsApiV2Client
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(
            pool.map(lambda n: client.trigger(f"alert {n}", "db1", dedup_key=f"k{n}"), range(24))
        )
    assert sorted(keys) == sorted(f"k{n}" for n in range(24))
    assert len(pd.events("trigger")) == 24 and len(pd.alerts) == 24


def test_server_is_shut_down_on_exit_even_after_an_error() -> None:
    with pytest.raises(RuntimeError), PagerDutyStandIn() as pd:
        port = int(pd.base_url.rsplit(":", 1)[1])
        raise RuntimeError("test body failed")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S).close()
