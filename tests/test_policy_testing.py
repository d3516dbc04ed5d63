"""Policy unit tests (`alertpilot policy test`): the shipped suite, diffs, and malformed files."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import write_policy
from webhook.policy.testing import load_cases, run_policy_tests
from workers.policy import PolicyError

REPO = Path(__file__).resolve().parent.parent
NOTIFICATION = REPO / "tests" / "fixtures" / "alertmanager" / "firing-two-alerts.json"

LATENCY = """\
routes:
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: "latency/{{ labels.service }}"
    actions: [page, notify, {scale_up: {by: 2}}]
"""

CANARY_FIRST = """\
routes:
  - name: canary
    matchers: ['deployment="api-canary"']
    severity: SEV3
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
"""

CONTINUE = """\
routes:
  - name: first
    matchers: ['alertname="A"']
    severity: SEV2
    continue: true
  - name: second
    matchers: ['alertname=~"A|B"']
    severity: SEV1
"""


def _tests(directory: Path, text: str, name: str = "cases.yaml") -> Path:
    (directory / "tests").mkdir(parents=True, exist_ok=True)
    path = directory / "tests" / name
    path.write_text(text)
    return path


def _run(directory: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = run_policy_tests(directory, out)
    return code, out.getvalue()


def test_shipped_policy_tests_pass() -> None:
    code, output = _run(REPO / "policies")
    assert code == 0, output
    assert re.fullmatch(r"(\d+) cases: \1 passed, 0 failed", output.splitlines()[-1]), output


def test_shipped_policy_tests_catch_a_changed_payments_severity(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(REPO / "policies", directory)
    routes = directory / "10-api-latency.yaml"
    routes.write_text(routes.read_text().replace("severity: SEV1", "severity: SEV2"))
    code, output = _run(directory)
    assert code == 1
    assert "          severity:  expected SEV1\n                     got      SEV2\n" in output


def test_wrong_expectation_fails_with_a_diff_of_the_differing_keys(tmp_path: Path) -> None:
    path = _tests(
        write_policy(tmp_path, LATENCY),
        """\
cases:
  - name: api latency is SEV2
    labels: {alertname: HighLatency, service: api}
    expect: {route: api-latency, severity: SEV2, incident_key: latency/api}
  - name: api latency is SEV3
    labels: {alertname: HighLatency, service: api}
    expect:
      route: api-latency
      severity: SEV3
      actions: [page, notify]
""",
    )
    assert _run(tmp_path) == (
        1,
        f"Unit testing: {path}\n"
        "  PASS  api latency is SEV2\n"
        f"  FAIL  api latency is SEV3  ({path}:5)\n"
        '          alert {alertname="HighLatency", service="api"}\n'
        "          severity:  expected SEV3\n"
        "                     got      SEV2\n"
        "          actions:   expected [page, notify]\n"
        "                     got      [page, notify, scale_up]\n"
        "2 cases: 1 passed, 1 failed\n",
    )


def test_action_parameters_are_compared_when_given(tmp_path: Path) -> None:
    path = _tests(
        write_policy(tmp_path, LATENCY),
        """\
cases:
  - name: scale by two
    labels: {alertname: HighLatency}
    expect: {actions: [page, notify, {scale_up: {by: 2}}]}
  - name: scale by three
    labels: {alertname: HighLatency}
    expect: {actions: [page, notify, {scale_up: {by: 3}}]}
""",
    )
    code, output = _run(tmp_path)
    assert (code, output.splitlines()[2:]) == (
        1,
        [
            f"  FAIL  scale by three  ({path}:5)",
            '          alert {alertname="HighLatency"}',
            "          actions:  expected [page, notify, {scale_up: {by: 3}}]",
            "                    got      [page, notify, {scale_up: {by: 2}}]",
            "2 cases: 1 passed, 1 failed",
        ],
    )


def test_notification_case_evaluates_every_alert_in_the_file(tmp_path: Path) -> None:
    path = _tests(
        write_policy(tmp_path, CANARY_FIRST),
        "cases:\n  - name: both are api latency\n"
        "    notification: captured.json\n    expect: {route: api-latency}\n",
    )
    shutil.copy(NOTIFICATION, path.parent / "captured.json")
    code, output = _run(tmp_path)
    assert (code, output.splitlines()[1:]) == (
        1,
        [
            f"  FAIL  both are api latency  ({path}:2)",
            '          alert {alertname="HighLatency", deployment="api-canary", '
            'namespace="production", service="api", severity="page"}',
            "          route:  expected api-latency",
            "                  got      canary",
            "1 cases: 0 passed, 1 failed",
        ],
    )


def test_notification_case_uses_the_notifications_group_key(tmp_path: Path) -> None:
    routes = "routes:\n  - name: api\n    matchers: ['alertname=\"HighLatency\"']\n"
    path = _tests(
        write_policy(tmp_path, routes + "    severity: SEV2\n"),
        "cases:\n  - name: default key\n    notification: captured.json\n"
        '    expect: {incident_key: \'{}:{alertname="HighLatency", service="api"}|api\'}\n',
    )
    shutil.copy(NOTIFICATION, path.parent / "captured.json")
    assert _run(tmp_path) == (
        0,
        f"Unit testing: {path}\n  PASS  default key\n1 cases: 1 passed, 0 failed\n",
    )


def test_list_expectation_checks_the_routes_continue_takes_in_order(tmp_path: Path) -> None:
    path = _tests(
        write_policy(tmp_path, CONTINUE),
        """\
cases:
  - name: two routes
    labels: {alertname: A}
    expect: [{route: first, severity: SEV2}, {route: second, severity: SEV1}]
  - name: wrong second severity
    labels: {alertname: A}
    expect: [{route: first}, {route: second, severity: SEV2}]
""",
    )
    code, output = _run(tmp_path)
    assert (code, output.splitlines()[2:]) == (
        1,
        [
            f"  FAIL  wrong second severity  ({path}:5)",
            '          alert {alertname="A"}',
            "          route 2 of 2 (second):",
            "            severity:  expected SEV2",
            "                       got      SEV1",
            "2 cases: 1 passed, 1 failed",
        ],
    )


def test_mapping_expectation_fails_when_continue_takes_two_routes(tmp_path: Path) -> None:
    _tests(
        write_policy(tmp_path, CONTINUE),
        "cases:\n  - name: one route\n    labels: {alertname: A}\n    expect: {route: first}\n",
    )
    code, output = _run(tmp_path)
    assert code == 1
    assert "          routes taken: expected 1, got 2 (first, second)\n" in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cases:\n  - name: a\n    labels: {}\n    expect: {sevrity: SEV1}\n",
            "4:14: cases.0.expect.sevrity: unknown key 'sevrity'; did you mean 'severity'?",
        ),
        (
            "cases:\n  - name: a\n    labels: {}\n    expect: [{route: x}, {rout: y}]\n",
            "4:27: cases.0.expect.1.rout: unknown key 'rout'; did you mean 'route'?",
        ),
        ("cases:\n  - name: a\n    labels: {}\n", "2:5: cases.0.expect: Field required"),
        ("cases:\n  - labels: {}\n    expect: {}\n", "2:5: cases.0.name: Field required"),
        (
            "cases:\n  - name: a\n    expect: {}\n",
            "2:5: cases.0: give labels or notification",
        ),
        (
            "cases:\n  - name: a\n    labels: {}\n    notification: n.json\n    expect: {}\n",
            "2:5: cases.0: give labels or notification, not both",
        ),
        (
            "cases:\n  - name: a\n    labels: {}\n    expect: SEV1\n",
            "4:5: cases.0.expect: a mapping (one route taken) or a list of mappings "
            "(routes in order)",
        ),
        (
            "cases:\n  - name: a\n    labels: {code: 500}\n    expect: {}\n",
            "3:14: cases.0.labels.code: Input should be a valid string",
        ),
        (
            "cases:\n  - name: a\n    labels: {}\n    expect: {actions: [page, teleport]}\n",
            "4:30: cases.0.expect.actions.1: unknown action 'teleport'; known: page, statuspage, "
            "notify, war_room, scale_up, rate_limit, rollout_restart, rollback",
        ),
        (
            "cases: [\n  - name: a\n",
            "2:3: invalid YAML: expected the node content, but found '-'",
        ),
        ("", "1:1: cases: Field required"),
        (
            "cases:\n  - name: a\n    notification: missing.json\n    expect: {}\n",
            "3:5: cases.0.notification: cannot read missing.json: No such file or directory",
        ),
        (
            "cases:\n  - name: a\n    notification: cases.yaml\n    expect: {}\n",
            "3:5: cases.0.notification: cases.yaml is not JSON: Expecting value: "
            "line 1 column 1 (char 0)",
        ),
    ],
)
def test_malformed_test_file_is_reported_at_its_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _tests(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_cases(path.parent)
    assert [str(p) for p in raised.value.problems] == [f"{path}:{expected}"]


def test_notification_that_is_not_alertmanager_v4_is_reported(tmp_path: Path) -> None:
    path = _tests(tmp_path, "cases:\n  - name: a\n    notification: v3.json\n    expect: {}\n")
    (path.parent / "v3.json").write_text('{"version": "3", "alerts": []}')
    with pytest.raises(PolicyError) as raised:
        load_cases(path.parent)
    assert [str(p) for p in raised.value.problems] == [
        f"{path}:3:5: cases.0.notification: v3.json is not an Alertmanager v4 notification: "
        "version: expected \"4\", got '3'"
    ]


def test_malformed_test_file_exits_1_with_the_problem(tmp_path: Path) -> None:
    path = _tests(write_policy(tmp_path, LATENCY), "cases:\n  - name: a\n    expect: {}\n")
    assert _run(tmp_path) == (1, f"{path}:2:5: cases.0: give labels or notification\n")


@pytest.mark.parametrize("text", [None, "cases: []\n"])
def test_no_cases_at_all_exits_1(tmp_path: Path, text: str | None) -> None:
    write_policy(tmp_path, LATENCY)
    if text is not None:
        _tests(tmp_path, text)
    assert _run(tmp_path) == (1, f"{tmp_path}/tests:0:0: no test cases\n")


def test_invalid_policy_exits_1_with_the_policy_problem(tmp_path: Path) -> None:
    routes = "routes:\n  - name: r\n    matchers: ['a=\"b\"']\n    severity: SEV9\n"
    _tests(
        write_policy(tmp_path, routes),
        "cases:\n  - name: a\n    labels: {a: b}\n    expect: {route: r}\n",
    )
    code, output = _run(tmp_path)
    assert code == 1
    assert output.startswith(f"{tmp_path}/10-routes.yaml:4:5: unknown severity 'SEV9'"), output
    assert "Unit testing" not in output
