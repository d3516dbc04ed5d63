"""Runbooks in policy (issue 16, first part): typed read-only steps, validated with
file:line:col, referenced by routes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workers.policy.loader import load_policy, read_policy_files
from workers.policy.problems import PolicyError
from workers.policy.runbooks import HttpCheck, Promql, RolloutHistory, TcpCheck, WorkloadStatus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    shutil.copytree(REPO / "policies", directory, ignore=shutil.ignore_patterns("tests"))
    return directory


def _runbook(directory: Path, text: str, name: str = "api-latency") -> Path:
    path = directory / "runbooks" / f"{name}.yaml"
    path.write_text(text)
    return path


def _problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        load_policy(directory)
    return [str(p) for p in raised.value.problems]


def test_the_shipped_runbook_loads_with_the_shipped_policies() -> None:
    policy = load_policy(REPO / "policies")
    runbook = policy.runbooks["api-latency"]
    kinds = [type(step) for step in runbook.steps]
    assert kinds == [WorkloadStatus, RolloutHistory, Promql, Promql]
    p95 = runbook.steps[2]
    assert isinstance(p95, Promql) and (p95.name, p95.unit, p95.threshold) == (
        "p95_latency",
        "s",
        2,
    )


@pytest.mark.parametrize(
    ("step", "line", "said"),
    [
        (
            "  - {type: shell, name: x, command: 'rm -rf /'}",
            3,
            "does not match any of the expected tags",
        ),
        ("  - {type: kubectl_delete, name: x}", 3, "does not match any of the expected tags"),
        ("  - {type: http_check, name: x, url: 'https://a', timeout: 1 day}", 3, "timeout"),
        ("  - {type: http_check, name: x, url: 'https://a', timeout: 5m}", 3, "at most 30s"),
        ("  - {type: tcp_check, name: x, host: db, port: 70000}", 3, "port"),
        ("  - {type: promql, name: x, query: up, verb: delete}", 3, "unknown key 'verb'"),
        ("  - {type: http_check, name: x, url: 'file:///etc/passwd'}", 3, "url"),
    ],
)
def test_a_step_that_is_not_a_known_read_only_type_is_refused_at_its_line(
    policies: Path, step: str, line: int, said: str
) -> None:
    path = _runbook(policies, f"title: t\nsteps:\n{step}\n")
    (problem,) = _problems(policies)
    assert problem.startswith(f"{path}:{line}:"), problem
    assert said in problem


def test_duplicate_step_names_are_refused(policies: Path) -> None:
    path = _runbook(
        policies,
        "title: t\nsteps:\n"
        "  - {type: promql, name: a, query: up}\n"
        "  - {type: promql, name: a, query: up}\n",
    )
    (problem,) = _problems(policies)
    assert problem.startswith(f"{path}:4:") and "'a' is taken" in problem


def test_a_route_naming_a_missing_runbook_is_refused_at_its_key(policies: Path) -> None:
    (policies / "runbooks" / "api-latency.yaml").unlink()
    lines = (policies / "10-api-latency.yaml").read_text().splitlines()
    where = [n + 1 for n, line in enumerate(lines) if line.strip().startswith("runbook:")]
    problems = _problems(policies)
    assert len(problems) == 2  # both HighLatency routes name it
    for problem, line in zip(problems, where, strict=True):
        assert problem.startswith(f"{policies / '10-api-latency.yaml'}:{line}:5:"), problem
        assert "no runbook 'api-latency' in runbooks/" in problem


def test_a_runbook_alias_bomb_is_refused(policies: Path) -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\ntitle: t\n"
    path = _runbook(policies, bomb)
    (problem,) = _problems(policies)
    assert problem.startswith(f"{path}:2:8:") and "aliases" in problem


def test_a_route_naming_a_runbook_loads(policies: Path) -> None:
    routes = policies / "10-api-latency.yaml"
    routes.write_text(routes.read_text().replace("# runbook: api-latency", "runbook: api-latency"))
    policy = load_policy(policies)
    assert "api-latency" in policy.runbooks


def test_a_changed_runbook_is_a_changed_policy_set(policies: Path) -> None:
    _, before = read_policy_files(policies)
    path = policies / "runbooks" / "api-latency.yaml"
    path.write_text(path.read_text().replace("threshold: 2", "threshold: 3"))
    _, after = read_policy_files(policies)
    assert before != after
    step = load_policy(policies).runbooks["api-latency"].steps[2]
    assert isinstance(step, Promql) and step.threshold == 3


def test_steps_hold_no_write_verb_by_construction() -> None:
    """Every step type's fields: a read (query, URL, host:port, window), never a verb."""
    for model in (WorkloadStatus, RolloutHistory, Promql, HttpCheck):
        fields = set(model.model_fields)
        assert not fields & {"command", "verb", "method", "body", "patch", "script"}


# Where a step connects: alert labels fill in templates, and whoever writes an alerting
# rule chooses its labels. They may choose where alertpilot connects only within `hosts`.


@pytest.mark.parametrize(
    "step",
    [
        "{type: http_check, name: x, url: 'http://{{ labels.service }}.svc/healthz'}",
        "{type: http_check, name: x, url: 'http://api{{ labels.x }}/healthz'}",
        "{type: tcp_check, name: x, host: '{{ labels.instance }}', port: 6379}",
    ],
)
def test_a_host_from_labels_without_hosts_is_refused_at_its_step(policies: Path, step: str) -> None:
    path = _runbook(policies, f"title: t\nsteps:\n  - {step}\n")
    (problem,) = _problems(policies)
    assert problem.startswith(f"{path}:3:5: steps.0"), problem
    assert "needs `hosts`" in problem


@pytest.mark.parametrize(
    ("hosts", "said"),
    [("['*.example.com/x']", "hosts.0"), ("['a..b']", "hosts.0"), ("['API.example']", "hosts.0")],
)
def test_a_host_pattern_is_whole_dns_labels(policies: Path, hosts: str, said: str) -> None:
    step = f"{{type: tcp_check, name: x, host: '{{{{ labels.h }}}}', port: 1, hosts: {hosts}}}"
    _runbook(policies, f"title: t\nsteps:\n  - {step}\n")
    (problem,) = _problems(policies)
    assert said in problem


def test_a_rendered_host_must_match_the_literal_host_or_a_pattern() -> None:
    literal = HttpCheck(type="http_check", name="x", url="https://api.example.com/{{ labels.p }}")
    assert literal.allows("api.example.com") and literal.allows("API.example.com.")
    assert not literal.allows("evil.example.com")
    templated = HttpCheck(
        type="http_check",
        name="x",
        url="http://{{ labels.service }}.production.svc:8080/healthz",
        hosts=["*.production.svc"],
    )
    assert templated.allows("api.production.svc")
    for host in ("production.svc", "a.b.production.svc", "evil.com", "api.production.svc.evil"):
        assert not templated.allows(host), host
    tcp = TcpCheck(
        type="tcp_check", name="x", host="redis-{{ labels.s }}", port=1, hosts=["redis-*"]
    )
    assert tcp.allows("redis-api") and not tcp.allows("redis-api.evil.com")
