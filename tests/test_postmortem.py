"""The postmortem draft (issue 17): an incident driven through the real receiver, worker
code, PagerDuty, Statuspage and chat stand-ins, the Kubernetes stand-in (scale_up) and a
Prometheus stand-in (the runbook's PromQL), on a clock the test moves; then the draft
written from what Redis holds, parsed back from its Markdown.

`ALERTPILOT_WRITE_DOCS=1` rewrites the example in docs/postmortems.md from the scenario.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue

from tests.conftest import REPO, RESPONDER, VIEWER, due, post, run_jobs, write_policy
from tests.support.chat_standin import ChatStandIn
from tests.support.clock import AheadClock
from tests.support.mitigation import GUARDRAILS, MitigationBench, latency
from tests.support.pagerduty_standin import PagerDutyStandIn
from tests.support.statuspage_standin import StatuspageStandIn
from tests.test_pagerduty_webhook import SECRET, deliver, event
from webhook import postmortem_api
from webhook.app import create_app
from workers import postmortem
from workers.incident import timeline
from workers.incident.keys import Keys
from workers.incident.record import Incident, acknowledgement, load_incident
from workers.policy import Policy, load_policy

Vendors = tuple[PagerDutyStandIn, StatuspageStandIn, ChatStandIn]
DOC = REPO / "docs" / "postmortems.md"
START = datetime(2026, 11, 28, 9, 58, tzinfo=UTC)
"""When the scenario's incident is declared (the clock the test installs starts here)."""
EXAMPLE_ID = "example-incident"
SEVERITIES = """\
severities:
  SEV0: {name: Critical, response_time: 5m, update_every: 30m, public: true}
  SEV1:
    name: High
    response_time: 15m
    update_every: 1h
    public: true
    needs_commander: true
    postmortem_within: 5d
  SEV2: {name: Medium, response_time: 1h, update_every: 4h}
  SEV3: {name: Low, response_time: 1d}
default: {severity: SEV3, actions: [notify]}
"""
ROUTES = """\
routes:
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV1
    runbook: api
    actions: [page, statuspage, notify, {scale_up: {by: 4, max_replicas: 20, repeat: false}}]
"""
RUNBOOK = """\
title: API latency
steps:
  - type: promql
    name: p95_latency
    query: >-
      histogram_quantile(0.95, sum(rate(
      http_request_duration_seconds_bucket{service="{{ labels.service }}"}[5m])) by (le))
    unit: s
    threshold: 2
  - type: promql
    name: error_ratio
    query: >-
      sum(rate(http_requests_total{service="{{ labels.service }}",code=~"5.."}[5m]))
      / sum(rate(http_requests_total{service="{{ labels.service }}"}[5m]))
    unit: ratio
    threshold: 0.01
"""
NOTE = "p95 | p99 both up since the 09:40 deploy\nsee the latency dashboard"
FOLLOW_UPS = [
    {
        "text": "Alert on CPU saturation before latency | p95",
        "owner": "ada",
        "due": "2026-12-12",
        "priority": "P1",
    },
    {"text": "Page the incident commander too", "owner": "rui", "due": "2026-12-05"},
]


# --- stand-ins ---------------------------------------------------------------------------


class _Prometheus(BaseHTTPRequestHandler):
    """Instant queries: the latency or the error ratio the test set, by the metric named."""

    values: ClassVar[dict[str, float]] = {}

    def do_GET(self) -> None:
        self._answer(parse_qs(urlsplit(self.path).query).get("query", [""])[0])

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self._answer(parse_qs(self.rfile.read(length).decode()).get("query", [""])[0])

    def _answer(self, query: str) -> None:
        name = "latency" if "duration" in query else "errors"
        sample = {"metric": {}, "value": [START.timestamp(), str(self.values[name])]}
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": [sample]}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, float]]:
    """The values the Prometheus stand-in answers (set them as the incident goes)."""

    class Handler(_Prometheus):
        values: ClassVar[dict[str, float]] = {"latency": 0.1, "errors": 0.0}

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ALERTPILOT_PROMETHEUS_URL", f"http://127.0.0.1:{server.server_port}")
    yield Handler.values
    server.shutdown()
    server.server_close()


@pytest.fixture
def steady(ahead_clock: AheadClock, monkeypatch: pytest.MonkeyPatch) -> AheadClock:
    """alertpilot's clock from START, moved by `due` only, plus a millisecond per reading
    (time must move: ids and timeline order): the same draft on every run."""
    readings = itertools.count()

    def now() -> datetime:
        return START + ahead_clock.offset + timedelta(milliseconds=next(readings))

    monkeypatch.setattr(ahead_clock, "now", now)
    return ahead_clock


# --- the scenario ------------------------------------------------------------------------


@dataclass(frozen=True)
class Drill:
    """An incident run from alert to resolve, and what the draft is written from."""

    app: FlaskClient
    incident: Incident
    entries: list[dict[str, Any]]
    ack: dict[str, Any]
    policy: Policy
    now: datetime
    policies: Path
    statuspage_ids: list[str]

    def context(self) -> dict[str, Any]:
        return postmortem.postmortem_context(
            self.incident, self.entries, self.ack, self.policy, self.now
        )

    def markdown(self) -> str:
        return postmortem.render(self.policies / "templates", self.context())


def _policies(directory: Path) -> Path:
    """The scenario's policy set in `directory`: severities, the route, guardrails, runbook."""
    write_policy(directory, ROUTES, SEVERITIES)
    (directory / "20-mitigations.yaml").write_text(yaml.safe_dump(GUARDRAILS))
    (directory / "runbooks").mkdir(exist_ok=True)
    (directory / "runbooks" / "api.yaml").write_text(RUNBOOK)
    return directory


def _command(app: FlaskClient, incident_id: str, name: str, **body: str) -> None:
    answer = app.post(f"/api/v1/incidents/{incident_id}/{name}", json=body, headers=RESPONDER)
    assert answer.status_code == 200, answer.json


def _resolved(doc: dict[str, Any], ends_at: datetime) -> dict[str, Any]:
    done = copy.deepcopy(doc)
    for alert in done["alerts"]:
        alert["status"], alert["endsAt"] = "resolved", _iso(ends_at)
    done["status"] = "resolved"
    return done


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def drill(
    mitigation: MitigationBench,
    vendors: Vendors,
    queue: Queue,
    redis: Redis,
    keys: Keys,
    prometheus: dict[str, float],
    steady: AheadClock,
) -> Drill:
    """HighLatency on production/api 40 s before alertpilot declares SEV1: paged, the
    status page opened, scale_up 4 -> 8, the runbook reads 3.2 s; acknowledged in PagerDuty
    (a signed webhook) at 3m; no
    commander at 15m (the warning), rui takes the role at 17m, scribe ada, SME vic, a
    note, identified; the 1h status update (1.4 s); resolved at 1h20m (0.21 s); scale_up
    put back after the 15m stabilisation window; two follow-ups, one done two days on."""
    policies = _policies(mitigation.tmp_path / "policies")
    mitigation.monkeypatch.setenv("ALERTPILOT_POLICIES_DIR", str(policies))
    changed = replace(
        mitigation.settings, policies_dir=policies, dry_run=False, pagerduty_webhook_secret=SECRET
    )
    app = _with_api(create_app(changed, redis=redis, registry=CollectorRegistry()))
    alert = latency()
    alert["alerts"][0]["startsAt"] = _iso(START - timedelta(seconds=40))
    prometheus.update(latency=3.2, errors=0.042)
    (incident_id,) = post(app, alert).json["incidents"]
    run_jobs(queue)
    due(queue, 180)
    # PagerDuty's own acknowledgement: a signed webhook v3 event, as PagerDuty posts it.
    acked = deliver(app, event(incident_id, START + timedelta(minutes=3), agent="rui"))
    assert acked.status_code == 200, acked.get_data(as_text=True)
    due(queue, 720)  # 15m: the commander check finds nobody
    due(queue, 120)
    _command(app, incident_id, "assign", role="ic", person="rui")
    _command(app, incident_id, "assign", role="scribe", person="ada")
    _command(app, incident_id, "assign", role="sme", person="vic")
    _command(app, incident_id, "notes", text=NOTE)
    due(queue, 180)
    _command(app, incident_id, "status", status="identified")
    prometheus.update(latency=1.4, errors=0.004)
    due(queue, 2400)  # 1h: the status update, the runbook again
    prometheus.update(latency=0.21, errors=0.0008)
    due(queue, 1200)
    post(app, _resolved(alert, START + timedelta(minutes=79, seconds=40)))
    run_jobs(queue)
    due(queue, 905)  # the stabilisation window: scale_up is put back
    for body in FOLLOW_UPS:
        _command(app, incident_id, "follow-ups", **body)
    due(queue, 2 * 86400)
    _command(app, incident_id, "follow-up-done", id="F2")
    found = load_incident(redis, keys, incident_id)
    assert found is not None and found.status == "resolved"
    _, statuspage, _ = vendors
    return Drill(
        app=app,
        incident=found,
        entries=timeline.read(redis, keys, incident_id),
        ack=acknowledgement(redis, keys, incident_id),
        policy=load_policy(policies),
        now=steady.now(),
        policies=policies,
        statuspage_ids=list(statuspage.incidents),
    )


# --- reading Markdown back ---------------------------------------------------------------


def section(markdown: str, title: str) -> str:
    """The text under `## title`, up to the next section."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    assert found is not None, f"no section {title!r} in:\n{markdown}"
    return found.group(1)


def cells(line: str) -> list[str]:
    """A table row's cells, split at the pipes no backslash escapes, unescaped."""
    found, current, escaped = [], "", False
    for char in line.strip()[1:]:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            current, escaped = current + char, True
        elif char == "|":
            found.append(current.strip())
            current = ""
        else:
            current += char
    assert current.strip() == "", f"a row that does not end with a pipe: {line!r}"
    return [re.sub(r"\\(.)", r"\1", c) for c in found]


def table(text: str) -> list[list[str]]:
    """The rows of the first table in `text`, without its header and delimiter rows."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines and set(lines[1].replace(" ", "")) <= set("|-"), text
    width = len(cells(lines[0]))
    rows = [cells(line) for line in lines[2:]]
    assert all(len(row) == width for row in rows), rows
    return rows


def items(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def field(markdown: str, name: str) -> str:
    found = re.search(rf"^- \*\*{re.escape(name)}:\*\* (.*)$", section(markdown, "Metadata"), re.M)
    assert found is not None, name
    return found.group(1)


# --- the draft of a real incident ---------------------------------------------------------

SECTIONS = [
    "Metadata",
    "Executive summary",
    "Impact",
    "Timeline",
    "Root cause",
    "What went well",
    "What went wrong",
    "Action items",
    "Roles and thanks",
]


def test_the_draft_has_every_section_of_the_blameless_template_in_order(drill: Drill) -> None:
    markdown = drill.markdown()
    found = re.findall(r"^## (.+)$", markdown, re.M)
    assert found == SECTIONS
    assert markdown.startswith("# Postmortem: p95 latency above 2s for 5m\n")
    whys = re.findall(r"^\d\. Why", section(markdown, "Root cause"), re.M)
    assert len(whys) == 5


def test_the_timeline_table_has_one_row_per_entry_in_order(drill: Drill) -> None:
    rows = table(section(drill.markdown(), "Timeline"))
    assert len(rows) == len(drill.entries) > 20
    day = None
    for (time, kind, by, message), entry in zip(rows, drill.entries, strict=True):
        at = datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))
        shown = "%H:%M:%S" if at.date() == day else "%Y-%m-%d %H:%M:%S"  # the date when new
        day = at.date()
        assert time == at.strftime(shown)
        assert kind.split(" ")[0] == entry["kind"]
        assert by == entry.get("by", "alertpilot")
        assert message.startswith(entry["message"].replace("\n", "<br>"))
    assert [r[0] for r in rows if " " in r[0]] == ["2026-11-28 09:58:00", "2026-11-30 11:33:05"]


def test_a_pipe_and_a_newline_in_a_note_stay_in_their_cell(drill: Drill) -> None:
    rows = table(section(drill.markdown(), "Timeline"))
    (note,) = [row for row in rows if row[1] == "note"]
    assert note[2:] == ["rui", NOTE.replace("\n", "<br>")]
    action_items = table(section(drill.markdown(), "Action items"))
    assert action_items[0][1] == FOLLOW_UPS[0]["text"]


def test_the_metadata_says_date_severity_duration_and_authors(drill: Drill) -> None:
    markdown = drill.markdown()
    assert field(markdown, "Date") == "2026-11-28"
    assert field(markdown, "Severity") == "SEV1 (High)"
    assert field(markdown, "Severity changes") == "none"
    assert field(markdown, "Duration") == "1h20m"
    assert field(markdown, "Start") == "2026-11-28 09:58:00 UTC"
    assert field(markdown, "End") == "2026-11-28 11:18:00 UTC"
    assert field(markdown, "Authors") == "rui (incident commander), ada (scribe)"
    assert field(markdown, "Status") == "Draft, due 2026-12-03 11:18:00 UTC"


def test_summary_and_impact_come_from_the_alerts_the_mitigation_and_the_runbook(
    drill: Drill,
) -> None:
    markdown = drill.markdown()
    summary = items(section(markdown, "Executive summary"))
    assert "**What happened:** p95 latency above 2s for 5m" in summary
    assert "**Services:** api" in summary
    assert "**What mitigated it:** scale_up at 09:58:00 UTC: scaled production/api from 4 to 8" in (
        summary
    )
    impact = section(markdown, "Impact")
    assert "fired from 2026-11-28 09:57:20 UTC to 2026-11-28 11:17:40 UTC (1h20m)" in impact
    assert "- **Error budget:** **to fill**" in impact  # no alert carries an slo
    assert "- **Users affected:** **to fill**" in impact
    assert table(impact) == [
        [
            "p95_latency",
            "**to fill**",
            "3.2 s (over 2), at 09:58:00 UTC",
            "0.21 s, at 11:18:00 UTC",
        ],
        [
            "error_ratio",
            "**to fill**",
            "0.042 ratio (over 0.01), at 09:58:00 UTC",
            "0.0008 ratio, at 11:18:00 UTC",
        ],
    ]


def test_what_went_well_and_wrong_are_the_measured_facts(drill: Drill) -> None:
    markdown = drill.markdown()
    assert items(section(markdown, "What went well")) == [
        "Paged 40s after the first alert started, inside SEV1's 15m response time",
        "Acknowledged by rui 3m after the incident was declared, inside SEV1's 15m response time",
        "scale_up applied at declaration: scaled production/api from 4 to 8",
        "scale_up put back at 11:33:05 UTC: reverted production/api from 8 to 4",
        "Status page updated at least every 1h as SEV1 asks (3 messages, longest gap 1h)",
        "Chat updated at least every 1h as SEV1 asks (3 messages, longest gap 1h)",
        "**to fill**",
    ]
    assert items(section(markdown, "What went wrong")) == [
        "No incident commander 15m after the incident was declared (alertpilot's warning at "
        "10:13:00 UTC)",
        "rui took the incident commander role 17m after the incident was declared, outside "
        "SEV1's 15m response time",
        "Alerts kept firing 1h20m after scale_up was applied, outside SEV1's 15m response time",
        "**to fill**",
    ]


def test_action_items_roles_and_thanks(drill: Drill) -> None:
    markdown = drill.markdown()
    assert table(section(markdown, "Action items")) == [
        ["F1", FOLLOW_UPS[0]["text"], "ada", "2026-12-12", "P1", "open"],
        ["F2", FOLLOW_UPS[1]["text"], "rui", "2026-12-05", "P2", "done 2026-11-30"],
    ]
    roles = section(markdown, "Roles and thanks")
    assert table(roles) == [
        ["Incident commander", "rui"],
        ["Scribe", "ada"],
        ["Subject-matter experts", "vic"],
    ]
    assert "Thanks to ada, rui, vic." in roles


def test_the_documented_example_is_what_the_scenario_renders(drill: Drill) -> None:
    example = _normalised(drill.markdown(), drill)
    start, end = "<!-- example: start -->\n````markdown\n", "````\n<!-- example: end -->"
    before, rest = DOC.read_text().split(start, 1)
    committed, after = rest.split(end, 1)
    if os.environ.get("ALERTPILOT_WRITE_DOCS") == "1":
        DOC.write_text(before + start + example + end + after)
        return
    assert committed == example, "docs/postmortems.md is stale: ALERTPILOT_WRITE_DOCS=1 rewrites it"


def _normalised(markdown: str, drill: Drill) -> str:
    """Ids that vary between runs (the incident's, Statuspage's) made fixed."""
    markdown = markdown.replace(drill.incident.id, EXAMPLE_ID)
    for n, found in enumerate(drill.statuspage_ids, start=1):
        markdown = markdown.replace(found, f"sp-incident-{n}")
    return markdown


# --- the HTTP API --------------------------------------------------------------------------


def _with_api(flask: Flask) -> FlaskClient:
    """The app with the postmortem view (registered here until webhook/app.py does); before
    its first request: Flask takes no blueprint after it."""
    if "postmortem" not in flask.blueprints:
        flask.register_blueprint(postmortem_api.blueprint)
    return flask.test_client()


def test_the_api_answers_the_draft_as_markdown_to_any_person(drill: Drill) -> None:
    answer = drill.app.get(f"/api/v1/incidents/{drill.incident.id}/postmortem", headers=VIEWER)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/markdown; charset=utf-8"
    text = answer.get_data(as_text=True)
    assert text.startswith("# Postmortem: p95 latency above 2s for 5m\n")
    assert len(table(section(text, "Timeline"))) == len(drill.entries)
    assert drill.app.get(f"/api/v1/incidents/{drill.incident.id}/postmortem").status_code == 401


def test_the_api_answers_404_for_an_unknown_incident_and_400_for_a_bad_id(
    app: Flask,
) -> None:
    client = _with_api(app)
    unknown = client.get("/api/v1/incidents/abc123-zz/postmortem", headers=VIEWER)
    assert (unknown.status_code, unknown.json["error"]["code"]) == (404, "not_found")
    assert unknown.json["error"]["details"] == {"field": "incident_id"}
    bad = client.get("/api/v1/incidents/a.b/postmortem", headers=VIEWER)
    assert (bad.status_code, bad.json["error"]["details"]) == (400, {"field": "incident_id"})
    extra = client.get("/api/v1/incidents/abc123-zz/postmortem?x=1", headers=VIEWER)
    assert extra.status_code == 400


def test_the_api_names_a_broken_team_template(drill: Drill) -> None:
    (drill.policies / "templates").mkdir(exist_ok=True)
    (drill.policies / "templates" / "postmortem.md.j2").write_text("# {{ title }}\n{{ owner }}\n")
    answer = drill.app.get(f"/api/v1/incidents/{drill.incident.id}/postmortem", headers=VIEWER)
    assert answer.status_code == 500
    assert answer.json["error"] == {
        "code": "template_error",
        "message": "postmortem template: templates/postmortem.md.j2:2: fails to render: "
        "'owner' is undefined",
        "details": {},
    }


# --- the template --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("# {{ title }\n", "templates/postmortem.md.j2:1: template error: unexpected '}'"),
        ("# {{ title }}\n\n{{ nope }}\n", "templates/postmortem.md.j2:3: fails to render: "),
        ("{% for x in timeline %}{{ x.when }}{% endfor %}", "'dict object' has no attribute"),
        ("{{ 9**(9**9) }}", "a power too large for a template"),
    ],
    ids=["syntax", "undefined", "missing-field", "bomb"],
)
def test_a_broken_team_template_is_a_clear_error(tmp_path: Path, body: str, error: str) -> None:
    (tmp_path / "postmortem.md.j2").write_text(body)
    with pytest.raises(postmortem.PostmortemTemplateError, match=re.escape(error)):
        postmortem.render(tmp_path, postmortem.SAMPLE_POSTMORTEM)


def test_the_shipped_template_is_the_built_in_one() -> None:
    shipped = REPO / "policies" / "templates" / postmortem.TEMPLATE
    assert shipped.read_text() == postmortem.BUILT_IN


def test_without_a_team_template_the_built_in_one_renders(tmp_path: Path) -> None:
    assert postmortem.render(tmp_path, postmortem.SAMPLE_POSTMORTEM) == postmortem.render(
        REPO / "policies" / "templates", postmortem.SAMPLE_POSTMORTEM
    )


def _fits(sample: Any, real: Any, where: str = "context") -> None:
    """`sample` has `real`'s shape: the same keys, lists of the same shape (where `real`'s
    holds items), text where it has text (or None)."""
    if isinstance(real, dict):
        assert isinstance(sample, dict) and sample.keys() == real.keys(), where
        for key, value in real.items():
            _fits(sample[key], value, f"{where}.{key}")
    elif isinstance(real, list):
        assert isinstance(sample, list) and sample, f"{where}: the sample shows no item"
        for item in real:
            _fits(sample[0], item, f"{where}[]")
    else:
        assert isinstance(sample, str) and isinstance(real, str | None), where


def test_the_sample_context_has_the_shape_of_a_real_one(drill: Drill) -> None:
    """policy validate renders a team's template against SAMPLE_POSTMORTEM: it must hold
    every variable, in the shape a real incident gives, with an item in every list."""
    _fits(postmortem.SAMPLE_POSTMORTEM, drill.context())


# --- facts the scenario does not reach, on a written timeline ------------------------------


def _entry(minute: float, kind: str, message: str = "", **details: Any) -> dict[str, Any]:
    at = START + timedelta(minutes=minute)
    return {"at": _iso(at), "kind": kind, "message": message or kind, **details}


INCIDENT = Incident(
    id="abc-1",
    key="k",
    route="api-latency",
    severity="SEV1",
    status="resolved",
    started_at=_iso(START),
    resolved_at=_iso(START + timedelta(hours=3)),
    updated_at=_iso(START + timedelta(hours=3)),
    title="t",
    group_key="",
    receiver="",
    external_url="",
    roles={"ic": ["rui"]},
)
"""An incident a person declared (so no alert), as the written timelines below go with."""


def _context(
    entries: list[dict[str, Any]], policies: Path, incident: Incident = INCIDENT
) -> dict[str, Any]:
    policy = load_policy(_policies(policies))
    now = START + timedelta(hours=3, minutes=5)
    return postmortem.postmortem_context(incident, entries, {}, policy, now)


def _written(entries: list[dict[str, Any]], policies: Path) -> postmortem.Facts:
    context = _context(entries, policies)
    return context["went_well"], context["went_wrong"]


def test_an_open_incident_is_measured_so_far(tmp_path: Path) -> None:
    incident = replace(INCIDENT, status="open", resolved_at=None)
    entries = [_update(0, "declared"), _update(60, "update")]
    markdown = postmortem.render(None, _context(entries, tmp_path, incident))
    assert field(markdown, "Duration") == "3h5m so far"
    assert field(markdown, "End") == "still open"
    assert (
        items(section(markdown, "What went well"))[0] == "rui was incident commander from the start"
    )
    assert items(section(markdown, "What went wrong"))[0] == (
        "A status page update was 1h5m late: 2h5m after the one at 10:58:00 UTC, where SEV1 "
        "asks every 1h"
    )


def _update(minute: float, transition: str, severity: str = "SEV1") -> dict[str, Any]:
    return _entry(
        minute, "succeeded", action="statuspage", transition=transition, severity=severity
    )


def test_a_late_status_update_went_wrong(tmp_path: Path) -> None:
    entries = [_update(0, "declared"), _update(60, "update"), _update(145, "update")]
    entries.append(_update(180, "resolved"))
    well, wrong = _written(entries, tmp_path)
    assert wrong == [
        "A status page update was 25m late: 1h25m after the one at 10:58:00 UTC, where SEV1 "
        "asks every 1h"
    ]
    assert not [f for f in well if f.startswith("Status page")]


def test_the_cadence_is_the_severity_in_force_before_each_update(tmp_path: Path) -> None:
    """SEV2 asks every 4h: 3h without an update before the escalation is not late."""
    entries = [
        _update(0, "declared", "SEV2"),
        _entry(180, "escalated", "escalated from SEV2 to SEV1"),
    ]
    entries += [_update(180, "escalated"), _update(180.5, "resolved")]
    well, wrong = _written(entries, tmp_path)
    assert wrong == []
    assert well[-1] == (
        "Status page updated at least every 4h as SEV2 asks; at least every 1h as SEV1 asks "
        "(3 messages, longest gap 3h)"
    )


def test_an_approval_is_measured_from_its_proposal(tmp_path: Path) -> None:
    entries = [
        _entry(2, "proposed", "rollback of production/api", action="rollback", proposal="p1"),
        _entry(
            14, "approved", "rollback approved by ada", action="rollback", proposal="p1", by="ada"
        ),
        _entry(20, "proposed", "rollout restart", action="rollout_restart", proposal="p2"),
        _entry(
            50,
            "approved",
            "restart approved by ada",
            action="rollout_restart",
            proposal="p2",
            by="ada",
        ),
        _entry(60, "proposed", "rollback again", action="rollback", proposal="p3"),
    ]
    well, wrong = _written(entries, tmp_path)
    assert (
        "rollback proposed at 10:00:00 UTC, approved by ada after 12m, inside SEV1's 15m "
        "response time" in well
    )
    assert wrong[:2] == [
        "rollout_restart proposed at 10:18:00 UTC, approved by ada after 30m, outside SEV1's 15m "
        "response time",
        "rollback proposed at 10:58:00 UTC, not approved or rejected",
    ]


def test_a_blocked_mitigation_and_a_failed_page_went_wrong(tmp_path: Path) -> None:
    entries = [
        _entry(0, "failed", "PagerDuty answered 400", action="page", transition="declared"),
        _entry(1, "blocked", "cooldown until 10:09", action="scale_up", transition="declared"),
        _entry(2, "retried", "x", action="statuspage", transition="declared"),
        _entry(3, "retried", "x", action="statuspage", transition="declared"),
    ]
    _, wrong = _written(entries, tmp_path)
    assert wrong == [
        "scale_up blocked at 09:59:00 UTC: cooldown until 10:09",
        "page (declared) failed at 09:58:00 UTC: PagerDuty answered 400",
        "statuspage was retried 2 times",
    ]
