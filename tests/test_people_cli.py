"""`alertpilot incidents ...` and `alertpilot actions ...` (webhook/people_cli.py): a
person's commands as an HTTP client of a real `alertpilot serve`.

One `serve` for the module, on its own Redis database, key prefix and queue (this module
flushes that database around every test). The commands run in this process through
`webhook.cli.main`, with the URL and token in the environment as on a laptop; every
call checks that no token appears in what it printed.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.conftest import AUTH, VIEWER
from tests.support.mitigation import latency
from tests.test_processes import _free_port, _http, _running, _serve_env
from webhook import cli
from webhook.client import Client, ClientError, path
from webhook.people_cli import exit_code
from workers import approvals
from workers.incident.keys import Keys

REDIS_URL = "redis://127.0.0.1:6379/11"
"""This module's own database: it flushes it, and a full suite run elsewhere uses 15."""
PREFIX, QUEUE = "apcli:", "apcli"
TOKEN_MARK = "ap_test_"
"""Every person's token starts so (tests/conftest.py PEOPLE): none may be printed."""
PROXIES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
LIST_COLUMNS = ["ID", "SEVERITY", "STATUS", "PHASE", "IC", "ALERTS", "STARTED", "TITLE"]
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MISSING = "0123456789ab-zz"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Alertpilot = Callable[..., Result]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`alertpilot serve` on a free loopback port; its base URL."""
    tmp_path = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = _serve_env(
        tmp_path,
        port,
        REDIS_URL=REDIS_URL,
        ALERTPILOT_KEY_PREFIX=PREFIX,
        ALERTPILOT_QUEUE=QUEUE,
        ALERTPILOT_WEB_CONCURRENCY="1",
    )
    base = f"http://127.0.0.1:{port}"
    with _running(["serve"], env, tmp_path / "logs") as serve:
        serve.wait_for(f"{base}/readyz")
        yield base


@pytest.fixture(autouse=True)
def store() -> Iterator[Redis]:
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    yield redis
    redis.flushdb()
    redis.close()


@pytest.fixture
def alertpilot(
    api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Alertpilot:
    """`alertpilot ARGS...` as the person `as_` (None: no token), ALERTPILOT_URL the API."""
    for name in ("ALERTPILOT_TOKEN", "ALERTPILOT_TOKEN_FILE", *PROXIES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALERTPILOT_URL", api)

    def run(*args: str, as_: str | None = "rui") -> Result:
        if as_ is not None:
            monkeypatch.setenv("ALERTPILOT_TOKEN", f"{TOKEN_MARK}{as_}")
        else:
            monkeypatch.delenv("ALERTPILOT_TOKEN", raising=False)
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        assert TOKEN_MARK not in out + err
        return Result(code, out, err)

    return run


def get(api: str, path: str) -> Any:
    """What the API answers a viewer at `path`."""
    status, raw = _http("GET", f"{api}{path}", headers=VIEWER)
    assert status == 200, raw
    return json.loads(raw)


def declare(alertpilot: Alertpilot, title: str = "Checkout slow", severity: str = "SEV2") -> str:
    done = alertpilot(
        "incidents", "declare", "--title", title, "--severity", severity, "--service", "shop"
    )
    assert done.code == 0, done.err
    incident_id, _, message = done.out.strip().partition(": ")
    assert message == f"{severity} declared by rui: {title} (service shop)"
    return incident_id


def cells(line: str) -> list[str]:
    return re.split(r" {2,}", line.strip())


# --- reading -----------------------------------------------------------------------------


def test_list_is_a_table_with_a_row_per_incident_in_aligned_columns(
    alertpilot: Alertpilot,
) -> None:
    slow = declare(alertpilot, "Checkout slow", "SEV2")
    down = declare(alertpilot, "Payments down", "SEV1")
    listed = alertpilot("incidents", "list", as_="vic")
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert cells(header) == LIST_COLUMNS
    starts = [header.index(name) for name in LIST_COLUMNS]
    for row in rows:
        assert all(row[s - 1] == " " and row[s] != " " for s in starts[1:]), (header, row)
    by_id = {cells(row)[0]: cells(row) for row in rows}
    assert set(by_id) == {slow, down}
    assert by_id[down][1:6] == ["SEV1", "open", "investigating", "rui", "0/0"]
    assert TIME.fullmatch(by_id[down][6]) and by_id[down][7] == "Payments down"


def test_list_json_is_the_api_answer_as_is(alertpilot: Alertpilot, api: str) -> None:
    declare(alertpilot)
    listed = alertpilot("incidents", "list", "-o", "json")
    assert listed.code == 0, listed.err
    assert json.loads(listed.out) == get(api, "/api/v1/incidents")
    assert listed.out == json.dumps(json.loads(listed.out), indent=2, sort_keys=True) + "\n"


def test_list_passes_status_and_limit_to_the_api(alertpilot: Alertpilot) -> None:
    first, second = declare(alertpilot), declare(alertpilot)
    assert alertpilot("incidents", "resolve", first).code == 0
    resolved = alertpilot("incidents", "list", "--status", "resolved", "-o", "json")
    assert [i["id"] for i in json.loads(resolved.out)["incidents"]] == [first]
    one = alertpilot("incidents", "list", "--limit", "1", "-o", "json")
    assert [i["id"] for i in json.loads(one.out)["incidents"]] == [second]


def test_list_of_nothing_says_so_on_stderr(alertpilot: Alertpilot) -> None:
    assert alertpilot("incidents", "list") == Result(0, "", "no incidents\n")


def test_show_prints_the_summary_then_one_line_per_timeline_entry(
    alertpilot: Alertpilot, api: str
) -> None:
    incident_id = declare(alertpilot)
    assert alertpilot("incidents", "assign", incident_id, "scribe", "ada").code == 0
    shown = alertpilot("incidents", "show", incident_id, as_="vic")
    assert shown.code == 0, shown.err
    summary, entries = shown.out.split("\n\n")
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in summary.splitlines())
    assert fields["ID"] == incident_id and fields["Title"] == "Checkout slow"
    assert fields["Severity"] == "SEV2 (Medium, respond within 1h)"
    assert (fields["Status"], fields["Roles"]) == ("open, investigating", "ic: rui; scribe: ada")
    assert fields["Alerts"] == "0 firing of 0"
    header, *lines = entries.splitlines()
    assert cells(header) == ["TIME", "KIND", "BY", "MESSAGE"]
    timeline = get(api, f"/api/v1/incidents/{incident_id}")["timeline"]
    assert [cells(line)[1:] for line in lines] == [
        [e["kind"], e["by"], e["message"]] for e in timeline
    ]
    assert all(TIME.fullmatch(cells(line)[0]) for line in lines)


def test_show_json_is_the_api_answer_as_is(alertpilot: Alertpilot, api: str) -> None:
    incident_id = declare(alertpilot)
    shown = alertpilot("incidents", "show", incident_id, "-o", "json")
    assert json.loads(shown.out) == get(api, f"/api/v1/incidents/{incident_id}")


# --- commands ----------------------------------------------------------------------------


def test_declare_records_the_person_the_service_and_the_summary(
    alertpilot: Alertpilot, api: str
) -> None:
    done = alertpilot(
        "incidents", "declare", "--title", "Search down", "--severity", "SEV1",
        "--service", "search", "--summary", "no results since 14:02", "-o", "json",
    )  # fmt: skip
    assert done.code == 0, done.err
    incident = get(api, f"/api/v1/incidents/{json.loads(done.out)['incident']['id']}")
    assert (incident["severity"], incident["roles"]) == ("SEV1", {"ic": ["rui"]})
    (declared,) = incident["timeline"]
    assert (declared["by"], declared["service"]) == ("rui", "search")
    assert declared["summary"] == "no results since 14:02"


COMMANDS: list[tuple[list[str], Callable[[dict[str, Any]], bool]]] = [
    (["ack"], lambda i: i["acknowledged_by"] == "rui"),
    (["escalate", "SEV1"], lambda i: i["severity"] == "SEV1"),
    (["downgrade", "SEV3"], lambda i: i["severity"] == "SEV3"),
    (["assign", "comms_lead", "ada"], lambda i: i["roles"]["comms_lead"] == ["ada"]),
    (
        ["note", "checking", "the", "LB"],
        lambda i: i["timeline"][-1]["message"] == "checking the LB",
    ),
    (["status", "identified"], lambda i: i["phase"] == "identified"),
    (["resolve"], lambda i: i["status"] == "resolved"),
]


@pytest.mark.parametrize(("command", "changed"), COMMANDS, ids=[c[0] for c, _ in COMMANDS])
def test_each_command_changes_the_incident_and_prints_what_it_wrote(
    alertpilot: Alertpilot, api: str, command: list[str], changed: Callable[[dict[str, Any]], bool]
) -> None:
    incident_id = declare(alertpilot)
    done = alertpilot("incidents", command[0], incident_id, *command[1:])
    assert done.code == 0, done.err
    incident = get(api, f"/api/v1/incidents/{incident_id}")
    assert changed(incident), incident
    last = incident["timeline"][-1]
    assert last["by"] == "rui"
    assert done.out.splitlines()[-1] == f"{incident_id}: {last['message']}"


def test_escalate_and_downgrade_print_the_direction_the_api_took(alertpilot: Alertpilot) -> None:
    incident_id = declare(alertpilot, severity="SEV2")
    up = alertpilot("incidents", "escalate", incident_id, "SEV1")
    assert up.out == f"{incident_id}: escalated from SEV2 to SEV1 by rui\n" and up.err == ""
    down = alertpilot("incidents", "downgrade", incident_id, "SEV2")
    assert down.out == f"{incident_id}: downgraded from SEV1 to SEV2 by rui\n" and down.err == ""


def test_escalate_to_a_lower_severity_is_done_and_says_it_downgraded(
    alertpilot: Alertpilot, api: str
) -> None:
    incident_id = declare(alertpilot, severity="SEV2")
    done = alertpilot("incidents", "escalate", incident_id, "SEV3")
    assert done.code == 0
    assert done.out == f"{incident_id}: downgraded from SEV2 to SEV3 by rui\n"
    assert "warning" in done.err and "downgraded, not escalated" in done.err
    assert get(api, f"/api/v1/incidents/{incident_id}")["severity"] == "SEV3"


def test_reopen_opens_a_resolved_incident_again(alertpilot: Alertpilot, api: str) -> None:
    incident_id = declare(alertpilot)
    assert alertpilot("incidents", "resolve", incident_id).code == 0
    done = alertpilot("incidents", "reopen", incident_id)
    assert done.code == 0, done.err
    assert done.out == f"{incident_id}: reopened by rui\n"
    assert get(api, f"/api/v1/incidents/{incident_id}")["status"] == "open"


# --- actions -----------------------------------------------------------------------------


def propose(store: Redis, incident_id: str, change: str) -> str:
    """A rollout_restart proposal on the incident, as the worker writes one."""
    payload = {"incident_id": incident_id, "action": "rollout_restart", "params": {}}
    return approvals.propose(store, Keys(PREFIX), payload, change, expires=600)


def test_actions_list_is_a_table_and_json_the_api_answer(
    alertpilot: Alertpilot, api: str, store: Redis
) -> None:
    incident_id = declare(alertpilot)
    proposal = propose(store, incident_id, "rollout restart of deployment production/api")
    listed = alertpilot("actions", "list", as_="vic")
    header, row = listed.out.splitlines()
    assert cells(header) == ["ID", "INCIDENT", "ACTION", "EXPIRES", "CHANGE"]
    assert cells(row)[:3] == [proposal, incident_id, "rollout_restart"]
    assert cells(row)[4] == "rollout restart of deployment production/api"
    as_json = alertpilot("actions", "list", "-o", "json")
    assert json.loads(as_json.out) == get(api, "/api/v1/actions")


def test_actions_approve_is_recorded_with_the_person_and_works_once(
    alertpilot: Alertpilot, api: str, store: Redis
) -> None:
    incident_id = declare(alertpilot)
    proposal = propose(store, incident_id, "rollout restart of deployment production/api")
    done = alertpilot("actions", "approve", proposal)
    assert done.code == 0, done.err
    assert done.out.startswith(f"{proposal}: approved by rui, queued ")
    timeline = get(api, f"/api/v1/incidents/{incident_id}")["timeline"]
    assert [(e["kind"], e["by"]) for e in timeline][-1] == ("approved", "rui")
    again = alertpilot("actions", "approve", proposal)
    assert again.code == 1
    assert again.err.startswith(f"alertpilot: 404 not found: no pending proposal '{proposal}'")
    assert alertpilot("actions", "list") == Result(0, "", "no actions waiting\n")


def test_actions_reject_records_the_reason(alertpilot: Alertpilot, api: str, store: Redis) -> None:
    incident_id = declare(alertpilot)
    proposal = propose(store, incident_id, "rollout restart of deployment production/api")
    done = alertpilot("actions", "reject", proposal, "--reason", "the deploy is being rolled back")
    assert done == Result(0, f"{proposal}: rejected by rui\n", "")
    last = get(api, f"/api/v1/incidents/{incident_id}")["timeline"][-1]
    assert last["kind"] == "rejected" and last["message"].endswith(
        "rejected by rui: the deploy is being rolled back"
    )


# --- refusals ----------------------------------------------------------------------------


def test_a_viewer_is_refused_with_403_and_nothing_changes(alertpilot: Alertpilot, api: str) -> None:
    incident_id = declare(alertpilot)
    before = get(api, f"/api/v1/incidents/{incident_id}")
    refused = alertpilot("incidents", "note", incident_id, "hello", as_="vic")
    assert (refused.code, refused.out) == (1, "")
    assert refused.err == "alertpilot: 403 forbidden: vic is viewer; this needs responder\n"
    assert get(api, f"/api/v1/incidents/{incident_id}") == before


@pytest.mark.parametrize("command", ["show", "ack", "resolve"])
def test_an_unknown_incident_is_404_naming_it(alertpilot: Alertpilot, command: str) -> None:
    missing = alertpilot("incidents", command, MISSING)
    assert (missing.code, missing.out) == (1, "")
    assert missing.err == f"alertpilot: 404 not found: no incident '{MISSING}'\n"


def test_a_bad_value_is_400_naming_the_field(alertpilot: Alertpilot) -> None:
    incident_id = declare(alertpilot)
    refused = alertpilot("incidents", "escalate", incident_id, "SEV9")
    assert refused.code == 1
    assert refused.err.startswith("alertpilot: 400 bad request: severity: expected one of SEV0")


def test_a_command_the_state_refuses_is_409(alertpilot: Alertpilot) -> None:
    incident_id = declare(alertpilot)
    assert alertpilot("incidents", "resolve", incident_id).code == 0
    again = alertpilot("incidents", "resolve", incident_id)
    refused = f"alertpilot: 409 conflict: {incident_id} is resolved; reopen it first\n"
    assert again == Result(1, "", refused)


def test_an_unknown_token_is_401_and_not_printed(alertpilot: Alertpilot) -> None:
    refused = alertpilot("incidents", "list", as_="mallory")
    assert refused == Result(
        1, "", "alertpilot: 401 unauthorized: missing or unknown credentials\n"
    )


# --- connection --------------------------------------------------------------------------


def test_no_token_is_a_configuration_error(alertpilot: Alertpilot) -> None:
    missing = alertpilot("incidents", "list", as_=None)
    assert (missing.code, missing.out) == (2, "")
    assert "no token: set ALERTPILOT_TOKEN or ALERTPILOT_TOKEN_FILE" in missing.err


def test_no_url_is_a_configuration_error(
    alertpilot: Alertpilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERTPILOT_URL")
    assert alertpilot("incidents", "list").code == 2
    bad = alertpilot("incidents", "list", "--url", "ftp://127.0.0.1:21")
    assert bad.code == 2 and bad.err.startswith("alertpilot: --url: expected http://")


def test_a_url_nothing_listens_on_is_exit_3(alertpilot: Alertpilot) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    refused = alertpilot("incidents", "ack", MISSING, "--url", url)
    assert (refused.code, refused.out) == (3, "")
    assert refused.err == f"alertpilot: cannot reach {url}: connection refused\n"


def test_the_token_file_is_read_and_stripped(
    alertpilot: Alertpilot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN_MARK}rui\n")
    monkeypatch.setenv("ALERTPILOT_TOKEN_FILE", str(token_file))
    incident_id = declare(alertpilot)
    done = alertpilot("incidents", "ack", incident_id, as_=None)
    assert done.code == 0, done.err
    assert done.out.startswith(f"{incident_id}: acknowledged by rui after ")
    token_file.unlink()
    gone = alertpilot("incidents", "list", as_=None)
    assert gone.code == 2 and gone.err.startswith("alertpilot: ALERTPILOT_TOKEN_FILE: cannot read")


def test_client_commands_ignore_broken_settings_and_proxies(
    alertpilot: Alertpilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    for name, value in {
        "REDIS_URL": "not-a-url",
        "ALERTPILOT_LOG_LEVEL": "LOUD",
        "ALERTPILOT_QUEUE": "no spaces allowed",
        "HTTP_PROXY": dead,
        "http_proxy": dead,
    }.items():
        monkeypatch.setenv(name, value)
    broken = alertpilot("jobs", "failed")
    assert broken.code == 2  # the service's commands refuse these settings
    listed = alertpilot("incidents", "list")
    assert listed == Result(0, "", "no incidents\n")


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["incidents", "ack", "--help"])
    assert exited.value.code == 0
    assert "exit codes:\n  0  done\n  1  the API refused" in capsys.readouterr().out


# --- answers a real serve does not give ---------------------------------------------------


class _Canned(http.server.ThreadingHTTPServer):
    """Answers every GET with `answer` (status, headers, body); `seen` is the
    Authorization header of each request it got."""

    def __init__(self, answer: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.answer = answer
        self.seen: list[str | None] = []


class _CannedHandler(http.server.BaseHTTPRequestHandler):
    server: _Canned

    def do_GET(self) -> None:
        self.server.seen.append(self.headers.get("Authorization"))
        status, headers, body = self.server.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def canned(status: int, body: bytes, **headers: str) -> Iterator[tuple[str, list[str | None]]]:
    """A loopback server answering every GET so, while inside; its URL and what it saw."""
    server = _Canned((status, headers, body))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_5xx_is_exit_3_with_the_apis_message(alertpilot: Alertpilot) -> None:
    envelope = {"error": {"code": "unavailable", "message": "incident store unavailable"}}
    json_type = {"Content-Type": "application/json"}
    with canned(503, json.dumps(envelope).encode(), **json_type) as (url, _):
        failed = alertpilot("incidents", "list", "--url", url)
    assert failed == Result(3, "", "alertpilot: 503 unavailable: incident store unavailable\n")


def test_a_proxy_error_page_is_exit_3(alertpilot: Alertpilot) -> None:
    with canned(502, b"<html>Bad Gateway</html>", **{"Content-Type": "text/html"}) as (url, _):
        failed = alertpilot("incidents", "list", "--url", url)
    assert failed.code == 3 and failed.err.startswith("alertpilot: 502 bad gateway: ")


def test_a_redirect_is_not_followed_and_the_token_not_sent_on(alertpilot: Alertpilot) -> None:
    with canned(200, b'{"incidents": []}') as (elsewhere, seen_elsewhere):
        with canned(302, b"", Location=f"{elsewhere}/api/v1/incidents") as (url, seen):
            moved = alertpilot("incidents", "list", "--url", url)
        assert seen == [f"Bearer {TOKEN_MARK}rui"] and seen_elsewhere == []
    assert moved.code == 2 and moved.err.startswith("alertpilot: 302 redirect: to ")


def test_a_post_that_timed_out_says_it_may_have_been_done() -> None:
    with socket.socket() as silent:  # accepts connections (its backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ClientError) as failed:
            Client(url, f"{TOKEN_MARK}rui", timeout=0.5).request("POST", path("incidents"), {})
    assert (failed.value.status, exit_code(failed.value.status)) == (0, 3)
    assert str(failed.value) == (
        f"cannot reach {url}: timed out (it may have been done: look before sending it again)"
    )


# --- runbooks ------------------------------------------------------------------------------


def test_runbook_show_prints_the_routes_runbook_and_its_steps(alertpilot: Alertpilot) -> None:
    done = alertpilot("runbook", "show", "api-latency", as_="vic")  # a viewer may read it
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert cells(lines[1]) == ["Runbook:", "api-latency: API latency above its objective"]
    steps = {
        cells(line)[0]: cells(line)[1] for line in lines if line.startswith(("workload", "p95"))
    }
    assert steps == {"workload": "workload_status", "p95_latency": "promql"}
    as_json = alertpilot("runbook", "show", "api-latency", "-o", "json")
    assert json.loads(as_json.out)["name"] == "api-latency"
    missing = alertpilot("runbook", "show", "default")
    assert missing.code == 1 and "names no runbook" in missing.err


def test_runbook_run_asks_for_a_run_of_an_alerts_incident(alertpilot: Alertpilot, api: str) -> None:
    status, raw = _http("POST", f"{api}/api/v1/alertmanager", latency(), headers=AUTH)
    assert status == 200, raw
    (incident_id,) = json.loads(raw)["incidents"]
    done = alertpilot("runbook", "run", incident_id)
    assert done.code == 0, done.err
    assert done.out == f"{incident_id}: runbook api-latency asked for by rui\n"
    viewer = alertpilot("runbook", "run", incident_id, as_="vic")
    assert viewer.code == 1 and "403" not in viewer.out
    by_hand = declare(alertpilot)  # a person's incident has no route, so no runbook
    refused = alertpilot("runbook", "run", by_hand)
    assert refused.code == 1 and "names no runbook" in refused.err
