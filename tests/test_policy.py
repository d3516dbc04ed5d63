"""Policy files: the shipped set, matcher semantics, and errors that point at the line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import write_policy
from workers.policy import Policy, PolicyError, evaluate, load_policy
from workers.policy.engine import compile_policy
from workers.policy.matchers import MatcherError, parse_matcher
from workers.policy.model import DefaultRoute, Route


def test_shipped_policies_define_four_severities_with_cadence(policies_dir: Path) -> None:
    policy = load_policy(policies_dir)
    assert list(policy.severities) == ["SEV0", "SEV1", "SEV2", "SEV3"]
    cadence = [s.update_every for s in policy.severities.values()]
    assert cadence == ["30m", "1h", "4h", None]


@pytest.mark.parametrize(
    ("service", "severity", "route"),
    [
        ("payments", "SEV1", "payments-latency"),
        ("checkout", "SEV1", "payments-latency"),
        ("api", "SEV2", "api-latency"),
        ("payments-admin", "SEV2", "api-latency"),
    ],
)
def test_high_latency_is_sev1_for_payment_services_else_sev2(
    policies_dir: Path, service: str, severity: str, route: str
) -> None:
    (match,) = evaluate(load_policy(policies_dir), {"alertname": "HighLatency", "service": service})
    assert (match.severity, match.route) == (severity, route)
    assert match.incident_key == f"latency/{service}"


def test_unmatched_alert_takes_the_default_route(policies_dir: Path) -> None:
    (match,) = evaluate(load_policy(policies_dir), {"alertname": "DiskFull"}, group_key="g")
    assert (match.route, match.severity, [a.name for a in match.actions]) == (
        "default",
        "SEV3",
        ["notify"],
    )
    assert match.incident_key == "g|default"


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('service="api"', {"service": "api"}, True),
        ('service!="api"', {"service": "api"}, False),
        ('service=~"pay.*"', {"service": "payments"}, True),
        ('service=~"pay"', {"service": "payments"}, False),  # anchored, as in Alertmanager
        ('service!~"pay|bill"', {"service": "billing"}, True),
        ('team=""', {}, True),  # a missing label matches as the empty string
        ("service=api", {"service": "api"}, True),  # unquoted value
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
    ],
)
def test_matcher_semantics_follow_alertmanager(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["service", 'service=~"("', '9x="a"', 'a="unterminated'])
def test_invalid_matcher_is_rejected(text: str) -> None:
    with pytest.raises(MatcherError):
        parse_matcher(text)


def test_continue_lets_an_alert_take_two_routes(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: first
    matchers: ['alertname="A"']
    severity: SEV2
    continue: true
  - name: second
    matchers: ['alertname=~"A|B"']
    severity: SEV1
"""
    policy = load_policy(write_policy(tmp_path, routes))
    assert [m.route for m in evaluate(policy, {"alertname": "A"})] == ["first", "second"]
    assert [m.route for m in evaluate(policy, {"alertname": "B"})] == ["second"]


def _problems(tmp_path: Path, routes: str) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        load_policy(write_policy(tmp_path, routes))
    return [str(p) for p in raised.value.problems]


def test_unknown_key_is_reported_at_its_line(tmp_path: Path) -> None:
    routes = (
        "routes:\n  - name: r\n    matchers: ['a=\"b\"']\n    severity: SEV1\n    sevrity: SEV2\n"
    )
    assert _problems(tmp_path, routes) == [
        f"{tmp_path}/10-routes.yaml:5:5: routes.0.sevrity: unknown key 'sevrity'; "
        "did you mean 'severity'?"
    ]


def test_unknown_severity_is_reported_at_its_line(tmp_path: Path) -> None:
    routes = "routes:\n  - name: r\n    matchers: ['a=\"b\"']\n    severity: SEV9\n"
    (problem,) = _problems(tmp_path, routes)
    assert problem == (
        f"{tmp_path}/10-routes.yaml:4:5: unknown severity 'SEV9' (defined: SEV0, SEV1, SEV2, SEV3)"
    )


def test_bad_regex_is_reported_at_the_matcher(tmp_path: Path) -> None:
    routes = (
        "routes:\n  - name: r\n    matchers:\n"
        "      - 'a=\"b\"'\n      - 'c=~\"(\"'\n    severity: SEV1\n"
    )
    (problem,) = _problems(tmp_path, routes)
    assert problem == (
        f"{tmp_path}/10-routes.yaml:5:9: routes.0.matchers.1: invalid regular expression '(': "
        "missing ): ("  # RE2's words
    )


def test_bad_matcher_syntax_is_reported_at_the_matcher(tmp_path: Path) -> None:
    routes = "routes:\n  - name: r\n    matchers: ['service']\n    severity: SEV1\n"
    assert _problems(tmp_path, routes) == [
        f'{tmp_path}/10-routes.yaml:3:16: routes.0.matchers.0: expected name="value" '
        "(or !=, =~, !~), got 'service'"
    ]


def test_unknown_action_is_reported_at_its_item(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: r
    matchers: ['a="c"']
    severity: SEV1
    actions: [page, teleport]
"""
    (problem,) = _problems(tmp_path, routes)
    assert problem.startswith(f"{tmp_path}/10-routes.yaml:5:21: routes.0.actions.1")
    assert "unknown action 'teleport'" in problem


def test_duplicate_route_name_is_reported_at_the_second(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: r
    matchers: ['a="b"']
    severity: SEV1
  - name: r
    matchers: ['a="c"']
    severity: SEV1
"""
    assert _problems(tmp_path, routes) == [f"{tmp_path}/10-routes.yaml:5:5: duplicate route 'r'"]


def test_invalid_yaml_is_reported_with_position(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, "routes: [\n  - name: r\n")
    assert problem.startswith(f"{tmp_path}/10-routes.yaml:") and "invalid YAML" in problem


def test_policy_hash_changes_with_content(tmp_path: Path, policies_dir: Path) -> None:
    routes = "routes: []\n"
    first = load_policy(write_policy(tmp_path, routes)).content_hash
    (tmp_path / "10-routes.yaml").write_text("routes: []\n# reviewed\n")
    assert load_policy(tmp_path).content_hash != first


def _full_scan(policy: Policy, labels: dict[str, str]) -> list[str]:
    """The reference semantics: every route in order, first match wins unless continue."""
    taken: list[str] = []
    for route in policy.routes:
        if route.matches(labels):
            taken.append(route.name)
            if not route.continue_:
                return taken
    return taken or ["default"]


def test_route_index_gives_the_same_routes_as_a_full_scan(tmp_path: Path) -> None:
    rng = random.Random(7)
    names, values = ["alertname", "service", "team"], ["a", "b", "c", ""]
    routes: list[Route] = []
    for i in range(150):
        count = rng.randint(1, 3)
        ops = ["=", "=", "!=", "=~", "!~"]
        matchers = [
            f'{rng.choice(names)}{rng.choice(ops)}"{rng.choice(values)}"' for _ in range(count)
        ]
        doc = {"name": f"r{i}", "matchers": matchers, "severity": "SEV2"}
        routes.append(Route.model_validate({**doc, "continue": rng.random() < 0.3}))
    # Compiled directly: random routes shadow each other, which validation rejects.
    default = DefaultRoute(severity="SEV2")
    policy = compile_policy(load_policy(write_policy(tmp_path, "")).severities, routes, default, "")
    assert policy.index.label is not None
    for _ in range(3000):
        labels = {n: rng.choice(values) for n in names if rng.random() < 0.8}
        labels = {k: v for k, v in labels.items() if v}
        assert [m.route for m in evaluate(policy, labels)] == _full_scan(policy, labels), labels


def test_route_after_a_catch_all_is_reported_unreachable(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: everything
    matchers: ['alertname=~"(?s).*"']
    severity: SEV2
  - name: payments
    matchers: ['service="payments"']
    severity: SEV1
"""
    assert _problems(tmp_path, routes) == [
        f"{tmp_path}/10-routes.yaml:5:5: route 'payments' is never reached: route 'everything' "
        f"({tmp_path}/10-routes.yaml:2) matches every alert and does not continue"
    ]


def test_route_after_a_dot_star_catch_all_is_a_warning(tmp_path: Path) -> None:
    """'.' stops at a line break, so a label value with one still gets past `=~".*"`."""
    routes = """\
routes:
  - name: any-summary
    matchers: ['alertname="Disk"', 'summary=~".*"']
    severity: SEV2
  - name: disk
    matchers: ['alertname="Disk"']
    severity: SEV1
"""
    policy = load_policy(write_policy(tmp_path, routes))
    assert [str(w) for w in policy.warnings] == [
        f"{tmp_path}/10-routes.yaml:5:5: warning: route 'disk' is never reached: route "
        f"'any-summary' ({tmp_path}/10-routes.yaml:2) matches every alert it would and does "
        "not continue (except alerts whose label values contain a line break: '.' stops there)"
    ]
    labels = {"alertname": "Disk", "summary": "line one\nline two"}
    assert [m.route for m in evaluate(policy, labels)] == ["disk"]


def test_route_narrower_than_an_earlier_one_is_reported_unreachable(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
  - name: payments-latency
    matchers: ['alertname="HighLatency"', 'service="payments"']
    severity: SEV1
"""
    (problem,) = _problems(tmp_path, routes)
    assert problem == (
        f"{tmp_path}/10-routes.yaml:5:5: route 'payments-latency' is never reached: route "
        f"'latency' ({tmp_path}/10-routes.yaml:2) matches every alert it would and does not "
        "continue"
    )


def test_route_after_one_that_continues_is_reachable(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: audit
    matchers: ['alertname=~".*"']
    severity: SEV3
    continue: true
  - name: payments
    matchers: ['service="payments"']
    severity: SEV1
"""
    assert [r.name for r in load_policy(write_policy(tmp_path, routes)).routes] == [
        "audit",
        "payments",
    ]


def test_template_that_fails_for_a_sample_alert_is_reported(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: r
    matchers: ['service=~"payments|checkout"']
    severity: SEV1
    incident_key: "{{ labels.service + 1 }}"
"""
    (problem,) = _problems(tmp_path, routes)
    assert problem.startswith(
        f"{tmp_path}/10-routes.yaml:5:5: incident_key: fails to render for a sample alert "
        "{'service': 'payments'}: "
    )


def test_template_syntax_error_is_reported(tmp_path: Path) -> None:
    routes = "routes:\n  - name: r\n    matchers: ['a=\"b\"']\n    severity: SEV1\n"
    routes += "    incident_key: '{{ labels.a '\n"
    (problem,) = _problems(tmp_path, routes)
    assert problem.startswith(f"{tmp_path}/10-routes.yaml:5:5: incident_key: template error: ")


def test_template_empty_for_a_sample_alert_is_a_warning(tmp_path: Path) -> None:
    routes = """\
routes:
  - name: r
    matchers: ['alertname="X"']
    severity: SEV1
    incident_key: "{{ labels.service }}"
"""
    policy = load_policy(write_policy(tmp_path, routes))
    assert [str(w) for w in policy.warnings] == [
        f"{tmp_path}/10-routes.yaml:5:5: warning: incident_key renders empty for a sample "
        "alert {'alertname': 'X'}: such alerts fall back to the default key (groupKey and route)"
    ]


def test_action_listed_twice_is_reported(tmp_path: Path) -> None:
    routes = "routes:\n  - name: r\n    matchers: ['a=\"b\"']\n    severity: SEV1\n"
    routes += "    actions: [page, {scale_up: {by: 1}}, {scale_up: {by: 2}}]\n"
    assert _problems(tmp_path, routes) == [
        f"{tmp_path}/10-routes.yaml:5:42: action 'scale_up' is listed twice; merge its parameters"
    ]


def test_unknown_severity_field_suggests_the_known_one(tmp_path: Path) -> None:
    directory = write_policy(tmp_path, "routes: []\n")
    text = (directory / "00-severities.yaml").read_text()
    (directory / "00-severities.yaml").write_text(text.replace("update_every: 1h", "updates: 1h"))
    with pytest.raises(PolicyError) as raised:
        load_policy(directory)
    assert [str(p) for p in raised.value.problems] == [
        f"{directory}/00-severities.yaml:3:42: severities.SEV1.updates: unknown key 'updates'; "
        "did you mean 'update_every'?"
    ]


def test_unset_routing_key_reference_is_a_warning_at_its_action(tmp_path: Path) -> None:
    routes = "routes:\n  - name: r\n    matchers: ['a=\"b\"']\n    severity: SEV1\n"
    routes += "    actions: [notify, {page: {routing_key_env: PD_KEY_PAYMENTS}}]\n"
    directory = write_policy(tmp_path, routes)
    unset = load_policy(directory, env={})
    assert [str(w) for w in unset.warnings] == [
        f"{tmp_path}/10-routes.yaml:5:23: warning: page: routing key PD_KEY_PAYMENTS "
        "(or PD_KEY_PAYMENTS_FILE) is not set"
    ]
    assert load_policy(directory, env={"PD_KEY_PAYMENTS_FILE": "/run/secrets/pd"}).warnings == ()


def test_chat_template_errors_are_reported_at_their_line(tmp_path: Path) -> None:
    directory = write_policy(tmp_path, "routes: []\n")
    (directory / "templates").mkdir()
    (directory / "templates" / "declared.md.j2").write_text("ok\n{% if severity %}\n")
    (directory / "templates" / "resolved.md.j2").write_text("{{ titel }}\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(directory)
    assert [str(p) for p in raised.value.problems] == [
        f"{tmp_path}/templates/declared.md.j2:2:1: template error: Unexpected end of template. "
        "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost "
        "block that needs to be closed is 'if'.",
        f"{tmp_path}/templates/resolved.md.j2:1:1: fails to render for a sample: "
        "'titel' is undefined",
    ]
