"""A template in a policy cannot make alertpilot compute forever (workers/sandbox.py):
Jinja2 folds constant expressions when it compiles, so `{{ 9**(9**9) }}` would hang the
loader, `policy validate` or a worker before anything renders."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from jinja2 import TemplateError

from workers.policy.loader import load_policy
from workers.policy.problems import PolicyError
from workers.sandbox import Sandbox
from workers.templates import render_label_template

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "expression",
    ["9**(9**9)", "2**5000", "((10**64)**64)**64", "'x' * 100000", "[1] * 10**6", "2.0**100000"],
)
def test_a_bomb_is_refused_at_once_not_computed(expression: str) -> None:
    started = time.monotonic()
    template = Sandbox().from_string("{{ " + expression + " }}")  # compiling folds nothing
    with pytest.raises(TemplateError):
        template.render()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(("expression", "value"), [("2**10", "1024"), ("'-' * 3", "---")])
def test_ordinary_arithmetic_still_works(expression: str, value: str) -> None:
    assert Sandbox().from_string("{{ " + expression + " }}").render() == value


def test_a_runbook_query_with_a_bomb_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies, ignore=shutil.ignore_patterns("tests"))
    path = policies / "runbooks" / "api-latency.yaml"
    path.write_text(path.read_text().replace("by (le))", "by (le)) * {{ 9**(9**9) }}", 1))
    started = time.monotonic()
    with pytest.raises(PolicyError) as raised:
        load_policy(policies)
    assert time.monotonic() - started < 5
    (problem,) = [str(p) for p in raised.value.problems]
    assert "steps.2.query: template does not render: SecurityError" in problem


def test_a_chat_template_with_a_bomb_is_refused_by_validate(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies, ignore=shutil.ignore_patterns("tests"))
    (policies / "templates" / "declared.md.j2").write_text("{{ 'x' * 10**9 }}\n")
    started = time.monotonic()
    with pytest.raises(PolicyError) as raised:
        load_policy(policies)
    assert time.monotonic() - started < 5
    assert any("declared.md.j2" in str(p) for p in raised.value.problems)


def test_a_label_template_with_a_bomb_renders_nothing_rather_than_hanging() -> None:
    started = time.monotonic()
    assert render_label_template("{{ labels.service * 10**9 }}", {"service": "api"}) is None
    assert time.monotonic() - started < 1
