"""A runbook's promql query must be PromQL Prometheus accepts: `policy validate` refuses
it offline, at the query's line, with the parser's word (workers/policy/promql.py).

The cases' verdicts are Prometheus's own: Debian's promtool agrees with each of them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workers.policy import promql
from workers.policy.loader import load_policy
from workers.policy.problems import PolicyError
from workers.policy.runbooks import Promql

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "policies" / "runbooks" / "api-latency.yaml"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    shutil.copytree(REPO / "policies", directory, ignore=shutil.ignore_patterns("tests"))
    return directory


def _with_query(directory: Path, query: str) -> tuple[Path, int]:
    """The shipped runbook with its p95 step's (steps.2) query replaced, and that line."""
    path = directory / "runbooks" / "api-latency.yaml"
    lines = path.read_text().splitlines()
    start = lines.index("    name: p95_latency") + 1
    end = lines.index("    unit: s", start)
    assert lines[start].startswith("    query:")
    lines[start:end] = [f"    query: {json.dumps(query)}"]  # JSON: a YAML string too
    path.write_text("\n".join(lines) + "\n")
    return path, start + 1


def _problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        load_policy(directory)
    return [str(p) for p in raised.value.problems]


def _shipped_queries() -> list[str]:
    doc = yaml.safe_load(SHIPPED.read_text())
    return [step["query"] for step in doc["steps"] if step["type"] == "promql"]


VALID = [
    "histogram_quantile(0.99, sum by (le, service) (rate(x_bucket[5m])))",
    'up{job!~"node|cadvisor", instance=~".+:9100"}',
    "rate(http_requests_total[5m] offset 1h)",
    "max_over_time(rate(http_requests_total[5m])[1h:5m])",
    "rate(http_requests_total[5m] @ end())",
    "sum by (pod) (rate(cpu[5m])) * on(pod) group_left(node) kube_pod_info",
    "topk(5, sum by (path) (rate(http_requests_total[5m])))",
    'absent(up{job="api"})',
    'count_values("version", build_info)',
    'label_replace(up, "host", "$1", "instance", "(.*):\\\\d+")',
    'up{path="/a\\"b\\\\c\\n"}',
    "up{instance=~`.+\\.example\\.com`}",  # a raw string: its backslashes are as they are
    'up{service="{{ labels["service"] }}", job="{{ labels.job | default("api") }}"}',
]

BROKEN = {
    "sum(rate(x[5m])": "unclosed left parenthesis",
    "rate(x)": "in call to function",  # a type error, as Prometheus finds it
    "ratee(x[5m])": "unknown function with name",
    "rate(x[5 m])": "",
    "up foo": "",
    'up{job="\\q"}': "unknown escape sequence",
    "up{job=~`(`}": "",
}


def test_the_shipped_queries_are_accepted() -> None:
    queries = _shipped_queries()
    assert len(queries) == 2
    for query in queries:
        assert promql.promql_problem(query) is None, query


@pytest.mark.parametrize("query", VALID)
def test_the_usual_forms_are_accepted(query: str) -> None:
    assert promql.promql_problem(query) is None


def test_the_shipped_policies_still_load() -> None:
    runbook = load_policy(REPO / "policies").runbooks["api-latency"]
    assert sum(isinstance(step, Promql) for step in runbook.steps) == 2


@pytest.mark.parametrize(("query", "said"), BROKEN.items())
def test_a_broken_query_is_refused_at_its_line(policies: Path, query: str, said: str) -> None:
    path, line = _with_query(policies, query)
    (problem,) = _problems(policies)
    assert problem.startswith(f"{path}:{line}:5: steps.2.query: PromQL: "), problem
    assert said in problem
    assert "\n" not in problem and len(problem) < len(str(path)) + 260


def test_a_broken_query_over_labels_is_refused() -> None:
    said = promql.promql_problem('rate(x{service="{{ labels.service }}"})')
    assert said is not None and said.startswith("PromQL: ")


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ('up{service="{{ labels.service }"}', "template error: unexpected '}'"),
        ('up{service="{% if labels.x %}"}', "template error:"),
        ('up{x="{{ nothing.here }}"}', "template does not render: UndefinedError"),
    ],
)
def test_a_template_that_does_not_render_is_refused(policies: Path, query: str, said: str) -> None:
    path, line = _with_query(policies, query)
    (problem,) = _problems(policies)
    assert problem.startswith(f"{path}:{line}:5: steps.2.query: {said}"), problem


def test_a_query_that_renders_too_long_is_refused_unparsed() -> None:
    # ~10,000 nested levels crash promql-parser's thread (SIGSEGV), the whole process.
    said = promql.promql_problem('{{ "(" * 10000 }}up{{ ")" * 10000 }}')
    assert said == f"PromQL: renders to more than {promql.MAX_RENDERED} characters"
    assert promql.promql_problem("{{ '' }}") == "PromQL: renders empty"


def test_deep_nesting_within_the_limit_parses_in_its_own_stack() -> None:
    assert promql.promql_problem("-" * 1998 + "up") is None
    assert promql.promql_problem("(" * 999 + "up" + ")" * 999) is None


def test_a_long_message_is_one_bounded_line() -> None:
    query = "f" * 400 + "(\nup)"
    said = promql.promql_problem(query)
    assert said is not None and "\n" not in said and len(said) <= promql.MAX_MESSAGE


def test_policy_validate_exits_non_zero_with_the_message(policies: Path) -> None:
    path, line = _with_query(policies, 'sum(rate(http_requests_total{code=~"5.."}[5m])')
    cli = Path(sys.executable).parent / "alertpilot"
    done = subprocess.run(
        [str(cli), "policy", "validate", str(policies)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    expected = f"{path}:{line}:5: steps.2.query: PromQL: unclosed left parenthesis"
    assert expected in done.stdout + done.stderr, done.stdout + done.stderr


def promtool_says(expr: str) -> str:
    """Debian's promtool on `expr` as a recording rule: "" when it accepts it."""
    rules = {"groups": [{"name": "runbook", "rules": [{"record": "runbook", "expr": expr}]}]}
    done = subprocess.run(
        ["/usr/bin/promtool", "check", "rules", "/dev/stdin"],
        input=json.dumps(rules),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "" if done.returncode == 0 else done.stderr or "refused"


def test_prometheus_own_parser_agrees_with_every_case() -> None:
    """The expectations above are Prometheus's, not the port's opinion."""
    render = promql.TEMPLATES
    for query in VALID + _shipped_queries():
        rendered = render.from_string(query).render(labels=promql.StandInLabels())
        assert promtool_says(rendered) == "", query
    for query in BROKEN:
        assert promtool_says(query) != "", query
