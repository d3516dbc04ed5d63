"""Policy unit tests (`alertpilot policy test`), like `promtool test rules`.

Each case in `DIR/tests/*.yaml` gives an alert's labels (or a whole captured
notification) and what the policy must do with it: the routes taken and their
severity, incident key and actions. The file format is described in
policies/tests/README.md; the report follows promtool's.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TextIO

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from webhook.payload import PayloadError, parse
from workers.jobs.contract import ACTION_NAMES
from workers.policy import loader
from workers.policy.engine import Match, Policy, evaluate
from workers.policy.loader import Marks, PathKey, PolicyError, Problem, load_policy
from workers.policy.matchers import Matcher
from workers.policy.source import read_text, read_yaml

DEFAULT_GROUP_KEY = "{}:{}"
EXPECT_KEYS = ("route", "severity", "incident_key", "dry_run", "actions")
_INDENT = " " * 10
_EXPECT_FORMS = ("one", "routes")


def _expected_action(value: Any) -> Any:
    """`page` compares the name only; `{scale_up: {by: 2}}` the parameters too."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, params),) = value.items()
        value = {"name": name, "params": {} if params is None else params}
    elif isinstance(value, str):
        value = {"name": value}
    else:
        raise ValueError("an action is a name (page) or a one-key mapping ({scale_up: {by: 2}})")
    if value["name"] not in ACTION_NAMES:
        raise ValueError(f"unknown action {value['name']!r}; known: {', '.join(ACTION_NAMES)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedAction(_Strict):
    name: str
    params: dict[str, Any] | None = None
    """None: only the name is compared."""


class Expectation(_Strict):
    """What one route taken must look like; only the keys given are compared."""

    route: str | None = None
    severity: str | None = None
    incident_key: str | None = None
    dry_run: bool | None = None
    actions: list[Annotated[ExpectedAction, BeforeValidator(_expected_action)]] | None = None


def _expect_form(value: Any) -> str | None:
    return "one" if isinstance(value, dict) else "routes" if isinstance(value, list) else None


ExpectField = Annotated[
    Annotated[Expectation, Tag("one")]
    | Annotated[list[Expectation], Field(min_length=1), Tag("routes")],
    Discriminator(
        _expect_form,
        custom_error_type="expect_form",
        custom_error_message="a mapping (one route taken) or a list of mappings (routes in order)",
    ),
]


class _CaseDoc(_Strict):
    name: str = Field(min_length=1)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    group_key: str | None = None
    notification: str | None = None
    expect: ExpectField

    @model_validator(mode="after")
    def _one_source(self) -> _CaseDoc:
        if self.labels is None and self.notification is None:
            raise ValueError("give labels or notification")
        if self.labels is not None and self.notification is not None:
            raise ValueError("give labels or notification, not both")
        if self.notification is not None and (self.annotations, self.group_key) != (None, None):
            raise ValueError("annotations and group_key come from the notification file")
        return self


class _TestFile(_Strict):
    cases: list[_CaseDoc]


@dataclass(frozen=True)
class CaseAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    group_key: str


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    line: int
    alerts: tuple[CaseAlert, ...]
    """One for a labels case; every alert of the file for a notification case."""
    expect: tuple[Expectation, ...]
    one_route: bool
    """`expect` was a mapping: exactly one route must be taken."""


@dataclass(frozen=True)
class AlertFailure:
    alert: CaseAlert
    lines: tuple[str, ...]
    """The diff, unindented."""


@dataclass(frozen=True)
class CaseResult:
    case: Case
    failures: tuple[AlertFailure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def load_cases(tests_dir: Path) -> list[Case]:
    """Every case of `tests_dir/*.yaml`; PolicyError lists all malformed ones."""
    if not tests_dir.is_dir():
        return []
    problems: list[Problem] = []
    cases: list[Case] = []
    for path in loader.policy_files(tests_dir):
        cases.extend(_load_file(path, problems))
    if problems:
        raise PolicyError(problems)
    return cases


def _load_file(path: Path, problems: list[Problem]) -> list[Case]:
    try:
        data, marks = read_yaml(str(path), read_text(path))
    except PolicyError as exc:
        problems.extend(exc.problems)
        return []
    try:
        doc = _TestFile.model_validate({} if data is None else data)
    except ValidationError as exc:
        problems.extend(_validation_problem(str(path), marks, error) for error in exc.errors())
        return []
    cases: list[Case] = []
    for index, item in enumerate(doc.cases):
        alerts = _alerts(path, item, marks, ("cases", index, "notification"), problems)
        one = isinstance(item.expect, Expectation)
        expect = tuple(item.expect) if isinstance(item.expect, list) else (item.expect,)
        line = marks.get(("cases", index), (1, 1))[0]
        if alerts:
            cases.append(Case(item.name, str(path), line, alerts, expect, one))
    return cases


def _validation_problem(path: str, marks: Marks, error: Any) -> Problem:
    loc: PathKey = tuple(error["loc"])
    # Drop the discriminator's tag that follows `expect`; it is not in the YAML.
    loc = tuple(
        p for i, p in enumerate(loc) if not (i and p in _EXPECT_FORMS and loc[i - 1] == "expect")
    )
    if error["type"] == "model_type":
        error = {**error, "msg": "expected a mapping"}
    if error["type"] == "extra_forbidden":  # the loader would suggest policy keys
        model = _TestFile if len(loc) == 1 else _CaseDoc if len(loc) == 3 else Expectation
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        error = {**error, "type": "unknown_key", "msg": f"unknown key {loc[-1]!r}{hint}"}
    return loader.validation_problem(path, marks, loc, error)


def _alerts(
    path: Path, item: _CaseDoc, marks: Marks, at: PathKey, problems: list[Problem]
) -> tuple[CaseAlert, ...]:
    if item.labels is not None:
        group_key = DEFAULT_GROUP_KEY if item.group_key is None else item.group_key
        return (CaseAlert(item.labels, item.annotations or {}, group_key),)
    name = str(item.notification)
    try:
        notification = parse(json.loads((path.parent / name).read_text(encoding="utf-8")))
    except OSError as exc:
        message = f"cannot read {name}: {exc.strerror}"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = f"{name} is not JSON: {exc}"
    except PayloadError as exc:
        message = f"{name} is not an Alertmanager v4 notification: {exc}"
    else:
        return tuple(
            CaseAlert(a.labels, a.annotations, notification.group_key) for a in notification.alerts
        )
    line, col = marks.get(at, marks.get(at[:-1], (1, 1)))
    problems.append(Problem(str(path), line, col, f"{'.'.join(map(str, at))}: {message}"))
    return ()


def run_cases(policy: Policy, cases: list[Case]) -> list[CaseResult]:
    return [_run(policy, case) for case in cases]


def _run(policy: Policy, case: Case) -> CaseResult:
    failures: list[AlertFailure] = []
    for alert in case.alerts:
        matches = evaluate(
            policy, alert.labels, annotations=alert.annotations, group_key=alert.group_key
        )
        lines = _compare(case, matches)
        if lines:
            failures.append(AlertFailure(alert, tuple(lines)))
    return CaseResult(case, tuple(failures))


def _compare(case: Case, matches: list[Match]) -> list[str]:
    if len(matches) != len(case.expect):
        taken = ", ".join(m.route for m in matches)
        return [f"routes taken: expected {len(case.expect)}, got {len(matches)} ({taken})"]
    if case.one_route:
        return _diff(case.expect[0], matches[0])
    lines: list[str] = []
    for number, (expected, match) in enumerate(zip(case.expect, matches, strict=True), 1):
        diff = _diff(expected, match)
        if diff:
            lines.append(f"route {number} of {len(matches)} ({match.route}):")
            lines.extend("  " + line for line in diff)
    return lines


def _diff(expected: Expectation, match: Match) -> list[str]:
    """Two lines (expected, got) per given key that differs, values aligned."""
    given = [key for key in EXPECT_KEYS if key in expected.model_fields_set]
    differing = [(key, *shown) for key in given if (shown := _differs(expected, match, key))]
    width = max((len(key) for key, _, _ in differing), default=0) + 3
    lines: list[str] = []
    for key, want, got in differing:
        lines.append(f"{key + ':':<{width}}expected {want}")
        lines.append(f"{'':<{width}}got      {got}")
    return lines


def _differs(expected: Expectation, match: Match, key: str) -> tuple[str, str] | None:
    """(expected, got) as shown in the report, or None when they agree."""
    if key != "actions":
        want, got = getattr(expected, key), getattr(match, key)
        return None if want == got else (_show(want), _show(got))
    wanted = expected.actions or []
    if len(wanted) == len(match.actions) and all(
        w.name == a.name and (w.params is None or w.params == a.params)
        for w, a in zip(wanted, match.actions, strict=True)
    ):
        return None
    with_params = any(w.params is not None for w in wanted)
    taken = [(a.name, a.params if with_params else None) for a in match.actions]
    return _show_actions([(w.name, w.params) for w in wanted]), _show_actions(taken)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _show_actions(actions: list[tuple[str, dict[str, Any] | None]]) -> str:
    shown = [_flow({name: params}) if params else name for name, params in actions]
    return "[" + ", ".join(shown) + "]"


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


def render(results: list[CaseResult]) -> str:
    """The report: a header per test file, PASS/FAIL per case with a diff, a summary."""
    lines: list[str] = []
    current = None
    for result in results:
        if result.case.file != current:
            current = result.case.file
            lines.append(f"Unit testing: {current}")
        lines.extend(_render_case(result))
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results)} cases: {len(results) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def _render_case(result: CaseResult) -> list[str]:
    case = result.case
    if result.passed:
        return [f"  PASS  {case.name}"]
    lines = [f"  FAIL  {case.name}  ({case.file}:{case.line})"]
    for failure in result.failures:
        lines.append(f"{_INDENT}alert {_labels(failure.alert.labels)}")
        lines.extend(_INDENT + line for line in failure.lines)
    return lines


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(str(Matcher(k, "=", v)) for k, v in sorted(labels.items())) + "}"


def run_policy_tests(directory: Path, out: TextIO) -> int:
    """Load the policy and `directory/tests`, run every case, write the report.

    0 when every case passes; 1 on a failure, on a problem in the policy or
    the tests (printed as `file:line:col: message`), or when there are no cases.
    """
    problems: list[Problem] = []
    policy: Policy | None = None
    cases: list[Case] = []
    try:
        policy = load_policy(directory)
    except PolicyError as exc:
        problems.extend(exc.problems)
    try:
        cases = load_cases(directory / "tests")
    except PolicyError as exc:
        problems.extend(exc.problems)
    if not problems and not cases:
        problems.append(Problem(str(directory / "tests"), 0, 0, "no test cases"))
    if problems or policy is None:
        out.write("".join(f"{p}\n" for p in problems))
        return 1
    results = run_cases(policy, cases)
    out.write(render(results))
    return 0 if all(r.passed for r in results) else 1
