"""Policies written to hurt: matchers that backtrack, YAML that expands, files that never end.

What could hang or exhaust a process runs in a child interpreter under a
timeout, so a regression fails the test instead of stalling the suite; time
is the child's CPU time around the one call, against a bound far above what
linear work needs and far below what the attack costs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SEVERITIES, write_policy
from webhook.policy.commands import validate
from webhook.policy.testing import load_cases
from workers.incident.durations import parse_duration
from workers.policy import PolicyError, load_policy
from workers.policy.matchers import parse_matcher
from workers.policy.regex import MAX_SET_SIZE, TOO_LARGE
from workers.policy.source import MAX_DEPTH, MAX_FILE_BYTES

REDOS = "(a+)+$"
"""Python's re takes 51 s of CPU on 31 characters of `aaa…!`, doubling per character."""

EVALUATE = """
import json, sys, time
from pathlib import Path
from workers.policy import evaluate, load_policy
policy = load_policy(Path(sys.argv[1]))
value = "a" * (int(sys.argv[2]) - 1) + "!"
start = time.process_time()
(match,) = evaluate(policy, {"alertname": "Hostile", "service": value})
print(json.dumps({"seconds": time.process_time() - start, "route": match.route}))
"""

LOAD = """
import json, sys, time, tracemalloc
from pathlib import Path
from workers.incident.durations import parse_duration
from workers.policy import PolicyError, load_policy
tracemalloc.start()
start = time.process_time()
try:
    load_policy(Path(sys.argv[1]))
    problems = []
except PolicyError as exc:
    problems = [str(p) for p in exc.problems]
seconds, peak = time.process_time() - start, tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": seconds, "peak": peak, "problems": problems}))
"""

DFA = """
import json, random, resource, sys
from pathlib import Path
from workers.policy import evaluate, load_policy
policy = load_policy(Path(sys.argv[1]))
rng = random.Random(2)
value = "".join(rng.choice("ab") for _ in range(10_000))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
evaluate(policy, {"service": value})
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_mib": grown / 1024}))
"""


def _child(code: str, *args: object, timeout: float = 60) -> dict[str, Any]:
    """Run `code` in a fresh interpreter and read the JSON line it prints."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _route(*matchers: str) -> str:
    quoted = ", ".join(json.dumps(m) for m in matchers)  # a JSON string is YAML too
    return f"routes:\n  - name: hostile\n    matchers: [{quoted}]\n    severity: SEV1\n"


def _problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy(directory)
    return [str(p) for p in caught.value.problems]


# Linear-time matchers


@pytest.mark.parametrize("length", [31, 100_000])
def test_backtracking_pattern_matches_a_hostile_value_in_linear_time(
    tmp_path: Path, length: int
) -> None:
    routes = _route('alertname="Hostile"', f'service=~"{REDOS}"')
    result = _child(EVALUATE, write_policy(tmp_path, routes), length)
    assert result["route"] == "default"  # `!` at the end: no match, as in Alertmanager
    assert result["seconds"] < 2


def test_matcher_syntax_parses_long_text_in_linear_time() -> None:
    value = "x" + " " * 2000 + "y"
    start = time.process_time()
    matcher = parse_matcher("a=" + " " * 2000 + value)  # 12 s under Python's re
    assert time.process_time() - start < 2
    assert matcher.value == value


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "invalid escape sequence: \\1"),
        ("(?=a)a", "invalid perl operator: (?="),
        ("(?!b)a", "invalid perl operator: (?!"),
        ("(?<=a)b", "invalid perl operator: (?<"),
        ("(?P<x>a)(?P=x)", "invalid perl operator: (?P"),
        ("\\C", "invalid escape sequence: \\C"),  # RE2 has it, Go does not
        ("a)|(b", "unexpected )"),  # compiles in Alertmanager only as ^(?:a)|(b)$
        ("(?i)[\\pL\\pN_-]{1,64}", "pattern too large"),
    ],
)
def test_pattern_re2_refuses_is_reported_by_validate_at_its_matcher(
    tmp_path: Path, pattern: str, reason: str
) -> None:
    text = 'service=~"' + pattern.replace("\\", "\\\\") + '"'
    directory = write_policy(tmp_path, _route('alertname="A"', text))
    out, err = io.StringIO(), io.StringIO()
    assert validate(directory, out, err) == 1
    first = err.getvalue().splitlines()[0]
    where = f"{directory}/10-routes.yaml:3:35: routes.0.matchers.1: invalid regular expression "
    assert first.startswith(where)
    assert reason in first


def test_lookahead_fails_loading_so_it_never_reaches_evaluation(tmp_path: Path) -> None:
    directory = write_policy(tmp_path, _route('service=~"(?=pay)payments"'))
    (problem,) = _problems(directory)
    assert problem.startswith(f"{directory}/10-routes.yaml:3:16: routes.0.matchers.0: ")


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        # "Regex matches are fully anchored": env=~"foo" is env=~"^foo$".
        ('service=~"pay"', {"service": "payments"}, False),
        ('service=~"ments"', {"service": "payments"}, False),
        ('service=~"pay.*"', {"service": "payments"}, True),
        ('service=~"a|ab"', {"service": "ab"}, True),  # ^(?:a|ab)$, not ^a|ab$
        ('service=~"API"', {"service": "api"}, False),
        ('service=~"(?i)API"', {"service": "api"}, True),
        ('service!~"pay.*"', {"service": "payments"}, False),
        ('service!~"pay.*"', {"service": "api"}, True),
        # A label the alert lacks matches as the empty string.
        ('team=~""', {}, True),
        ('team=~""', {"team": "x"}, False),
        ('team!~""', {}, False),
        ('team=~".*"', {}, True),
        ('team=~".+"', {}, False),
        ('team!~".+"', {}, True),
        # Go: `.` stops at a line break unless (?s); `$` is the end of the text.
        ('msg=~".*"', {"msg": "a\nb"}, False),
        ('msg=~"(?s).*"', {"msg": "a\nb"}, True),
        ('msg=~"a"', {"msg": "a\n"}, False),
        # Go: `.` is one code point; \d, \w and \s are ASCII; \pL is Unicode.
        ('city=~"Z.rich"', {"city": "Zürich"}, True),
        ('city=~"\\\\pL+"', {"city": "Zürich"}, True),
        ('n=~"\\\\d"', {"n": "٣"}, False),
        ('n=~"\\\\w"', {"n": "é"}, False),
        ('n=~"\\\\s"', {"n": "\u00a0"}, False),
        ('n=~"(?i)é"', {"n": "É"}, True),
    ],
)
def test_matchers_keep_alertmanager_semantics(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_lone_surrogate_in_a_label_value_is_matched_not_raised() -> None:
    # Only policy test cases can carry one (the receiver refuses them).
    assert parse_matcher('a=~"x.*"').matches({"a": "x\ud800"}) is True


def test_set_whose_regexes_are_too_large_together_is_reported_at_the_crossing_matcher(
    tmp_path: Path,
) -> None:
    pattern = parse_matcher('a=~".{1000}"').pattern
    assert pattern is not None
    count = MAX_SET_SIZE // pattern.size + 1
    matchers = "".join(f"      - 'l{i}=~\".{{1000}}\"'\n" for i in range(count))
    routes = f"routes:\n  - name: big\n    severity: SEV1\n    matchers:\n{matchers}"
    (problem,) = _problems(write_policy(tmp_path, routes))
    where = f"{tmp_path}/10-routes.yaml:{5 + count - 1}:9: routes.0.matchers.{count - 1}: "
    assert problem.startswith(where + "the set's regexes take over 500,000 RE2 instructions")


def test_flood_of_too_large_patterns_stops_compiling_once_the_budget_is_spent(
    tmp_path: Path,
) -> None:
    # Each costs 10-20 ms to refuse: 2,000 would take half a minute.
    matchers = "".join(f"      - 'l{i}=~\"\\\\pL{{1000}}\"'\n" for i in range(2000))
    routes = f"routes:\n  - name: big\n    severity: SEV1\n    matchers:\n{matchers}"
    directory = write_policy(tmp_path, routes)
    start = time.process_time()
    problems = _problems(directory)
    assert time.process_time() - start < 5
    assert len(problems) == MAX_SET_SIZE // TOO_LARGE + 1
    assert all("pattern too large" in p for p in problems)


def test_matchers_that_would_grow_large_dfas_stay_small_against_a_hostile_value(
    tmp_path: Path,
) -> None:
    # With RE2's flat 8 MiB per pattern these 50 grew by about 90 MiB.
    routes = "routes:\n" + "".join(
        f"  - name: r{i}\n    matchers: ['service=~\".*a.{{20}}(?:x{i})?\"']\n"
        "    severity: SEV1\n    continue: true\n"
        for i in range(50)
    )
    assert _child(DFA, write_policy(tmp_path, routes))["grown_mib"] < 30


# YAML and files


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nroutes: *a{levels}\n"


def test_alias_bomb_is_refused_at_its_first_alias_quickly_and_in_little_memory(
    tmp_path: Path,
) -> None:
    directory = write_policy(tmp_path, _bomb(9))  # 9^9 paths; 6 levels took 2.5 s, 512 MiB
    result = _child(LOAD, directory)
    assert result["problems"] == [
        f"{directory}/10-routes.yaml:2:10: YAML aliases (*a0) are not allowed in policy files"
    ]
    assert result["seconds"] < 2
    assert result["peak"] < 50 * 2**20


def test_merge_key_bomb_is_refused_at_its_first_alias(tmp_path: Path) -> None:
    lines = ["x0: &x0 {k: v}"]
    lines += [f"x{i}: &x{i} {{<<: [{', '.join([f'*x{i - 1}'] * 9)}]}}" for i in range(1, 10)]
    directory = write_policy(tmp_path, "\n".join(lines) + "\nroutes: []\n")
    assert _child(LOAD, directory)["problems"] == [
        f"{directory}/10-routes.yaml:2:15: YAML aliases (*x0) are not allowed in policy files"
    ]


def test_anchor_without_alias_is_allowed(tmp_path: Path) -> None:
    routes = _route('alertname="A"').replace("routes:", "routes: &all", 1)
    assert [r.name for r in load_policy(write_policy(tmp_path, routes)).routes] == ["hostile"]


def test_deep_nesting_is_refused_at_the_level_too_deep(tmp_path: Path) -> None:
    routes = "routes: " + "[" * 100_000 + "]" * 100_000 + "\n"
    (problem,) = _problems(write_policy(tmp_path, routes))
    col = len("routes: ") + MAX_DEPTH
    assert problem == (
        f"{tmp_path}/10-routes.yaml:1:{col}: nested more than {MAX_DEPTH} levels deep"
    )


def test_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    directory = write_policy(tmp_path, "routes: []\n")
    (directory / "20-huge.yaml").write_text("#" * MAX_FILE_BYTES + "\n")
    (problem,) = _problems(directory)
    message = "larger than 4 MiB, the most a policy file may be"
    assert problem == f"{directory}/20-huge.yaml:1:1: {message}"


def test_base_60_integer_of_a_megabyte_is_refused_at_its_line(tmp_path: Path) -> None:
    routes = "routes: []\nmitigations:\n  max_replicas: " + "1:" * 500_000 + "1\n"
    (problem,) = _problems(write_policy(tmp_path, routes))
    assert problem == (
        f"{tmp_path}/10-routes.yaml:3:17: an integer of 1,000,001 characters (at most 100)"
    )


def test_scalar_that_does_not_construct_is_reported_at_its_line(tmp_path: Path) -> None:
    routes = _route('alertname="A"') + "    dry_run: 2001-02-30\n"
    (problem,) = _problems(write_policy(tmp_path, routes))
    assert problem == (
        f"{tmp_path}/10-routes.yaml:5:14: invalid value: day is out of range for month"
    )


def test_policy_test_cases_refuse_aliases_too(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "cases.yaml").write_text(
        "labels: &l {alertname: A}\ncases:\n  - name: one\n    labels: *l\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_cases(tests)
    assert [str(p) for p in caught.value.problems] == [
        f"{tests}/cases.yaml:4:13: YAML aliases (*l) are not allowed in policy files"
    ]


# What ships


def test_shipped_policies_manifests_and_cases_still_load(policies_dir: Path) -> None:
    policy = load_policy(policies_dir)
    assert policy.routes and "rate-limit-strict" in policy.manifests
    assert load_cases(policies_dir / "tests")


def test_a_duration_past_any_sense_is_a_located_error_not_a_traceback(tmp_path: Path) -> None:
    """timedelta raised OverflowError, which pydantic does not turn into a problem."""
    huge = SEVERITIES.replace("response_time: 1d", "response_time: 99999999999999999999999s")
    directory = write_policy(tmp_path, _route('alertname="A"'), huge)
    out, err = io.StringIO(), io.StringIO()
    assert validate(directory, out, err) == 1
    first = err.getvalue().splitlines()[0]
    assert first.startswith(f"{directory}/00-severities.yaml:5:")
    assert "at most 10 years" in first
    assert parse_duration("520w").days == 3640


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 'a' * 10**8 }}", "mul is not allowed"),
        ("{{ 2 ** 999999 }}", "pow is not allowed"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "for",
        ),
        ("{{ labels.service.ljust(10**9) }}", "call is not allowed"),
        ("{{ '%999999999s' % labels.service }}", "mod is not allowed"),
        ("{{ labels.service | center(999999999) }}", "filter 'center' is not allowed"),
        ("{{ labels.service | replace('', 'xxxxxxxx') }}", "filter 'replace' is not allowed"),
        ("{{ cycler }}", "'cycler': an incident key reads labels and annotations only"),
    ],
)
def test_an_incident_key_that_can_loop_or_grow_is_refused_before_it_renders(
    tmp_path: Path, template: str, reason: str
) -> None:
    """It renders for every alert the receiver takes: `{{ 'a' * 10**8 }}` took 1.6 s and
    431 MiB a render, at validate too."""
    routes = (
        "routes:\n  - name: r\n    matchers: ['service=\"api\"']\n    severity: SEV1\n"
        f"    incident_key: {json.dumps(template)}\n"
    )
    directory = write_policy(tmp_path, routes)
    started = time.monotonic()
    (problem,) = _problems(directory)
    assert time.monotonic() - started < 5
    assert problem.startswith(f"{directory}/10-routes.yaml:5:5: incident_key: ")
    assert reason in problem


def test_the_incident_keys_people_write_are_still_allowed(tmp_path: Path) -> None:
    routes = "routes:\n" + "".join(
        f"  - name: r{n}\n    matchers: ['service=\"api{n}\"']\n    severity: SEV1\n"
        f"    incident_key: {json.dumps(key)}\n"
        for n, key in enumerate(
            [
                "latency/{{ labels.service }}",
                "{{ 'latency/' ~ labels.service | lower }}",
                "{{ labels['app.kubernetes.io/name'] | default('unknown') }}/{{ labels.env }}",
                "{% if labels.env == 'prod' %}prod{% else %}other{% endif %}-{{ labels.service }}",
                "{{ labels.service[:20] | trim }}",
            ]
        )
    )
    policy = load_policy(write_policy(tmp_path, routes))
    assert [p for p in policy.warnings if "not allowed" in str(p)] == []
    assert len(policy.routes) == 5
