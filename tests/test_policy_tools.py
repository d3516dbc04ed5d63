"""policy explain, diff, schema and replay export, on fixed policy sets and a fixed corpus."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import REPO, fixture, post, write_policy
from webhook import cli
from webhook.payload import parse
from webhook.policy.commands import explain_alerts, parse_labels, policy_diff, schema, validate
from webhook.replay import export, record
from workers.incident.keys import Keys
from workers.policy.loader import policy_files

ROUTES = """\
routes:
  - name: payments
    matchers: ['alertname="HighLatency"', 'service=~"payments|checkout"']
    severity: SEV1
    incident_key: "latency/{{ labels.service }}"
    actions: [page, statuspage, {scale_up: {by: 2, max_replicas: 20}}]
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    actions: [page]
"""
TESTS = """\
cases:
  - name: payments
    labels: {alertname: HighLatency, service: payments}
    expect: {route: payments}
  - name: api
    labels: {alertname: HighLatency, service: api}
    expect: {route: latency}
  - name: disk
    labels: {alertname: DiskFull}
    expect: {route: default}
"""


def policy_with_tests(directory: Path, routes: str = ROUTES) -> Path:
    write_policy(directory, routes)
    (directory / "tests").mkdir()
    (directory / "tests" / "cases.yaml").write_text(TESTS)
    return directory


def test_explain_shows_each_route_verdict_and_the_plan(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    labels = parse_labels("alertname=HighLatency,service=api,namespace=prod,deployment=api")
    assert explain_alerts(write_policy(tmp_path, ROUTES), out, err, labels=labels) == 0
    assert out.getvalue().splitlines() == [
        'alert {alertname="HighLatency", deployment="api", namespace="prod", service="api"}',
        '  route payments: no match: service=~"payments|checkout" (service="api")',
        "  route latency: matched",
        "  plan via latency:",
        "    severity      SEV2 (Medium; respond within 1h; no page; update every 4h)",
        "    incident key  |latency",
        "    actions       page",
        "    dry run       yes (global setting)",
    ]


def test_explain_names_mitigation_targets_and_skipped_routes(tmp_path: Path) -> None:
    out = io.StringIO()
    labels = {"alertname": "HighLatency", "service": "checkout", "namespace": "shop"}
    labels["deployment"] = "checkout-api"
    explain_alerts(write_policy(tmp_path, ROUTES), out, io.StringIO(), labels=labels)
    lines = out.getvalue().splitlines()
    assert lines[2] == "  route latency: not tried (payments matched, no continue)"
    assert lines[6] == (
        "    actions       page, statuspage, scale_up {by: 2, max_replicas: 20} "
        "-> shop/checkout-api"
    )


def test_explain_a_notification_explains_every_alert(policies_dir: Path) -> None:
    out = io.StringIO()
    path = REPO / "tests" / "fixtures" / "alertmanager" / "firing-two-alerts.json"
    assert explain_alerts(policies_dir, out, io.StringIO(), notification=path) == 0
    assert out.getvalue().count("plan via api-latency:") == 2


def test_bad_labels_argument_names_the_option() -> None:
    try:
        parse_labels("alertname")
    except ValueError as exc:
        assert str(exc) == "--labels: expected name=value[,name=value...], got 'alertname'"
    else:
        raise AssertionError("accepted a label without a value")


def test_diff_lists_each_changed_alert_and_a_summary(tmp_path: Path) -> None:
    base = policy_with_tests(tmp_path / "base")
    head = policy_with_tests(tmp_path / "head", ROUTES.replace("checkout", "checkout|api"))
    out = io.StringIO()
    assert policy_diff(str(base), head, out, io.StringIO()) == 0
    assert out.getvalue().splitlines() == [
        f'~ {{alertname="HighLatency", service="api"}}  ({head}/tests/cases.yaml:5)',
        "    route     latency -> payments",
        "    severity  SEV2 -> SEV1",
        "    actions   page -> page, statuspage, scale_up",
        "1 of 3 alerts change: route 1, severity 1, actions 1",
    ]


def test_diff_fails_on_change_only_when_asked(tmp_path: Path) -> None:
    base = policy_with_tests(tmp_path / "base")
    head = policy_with_tests(tmp_path / "head", ROUTES.replace("SEV2", "SEV3"))
    assert policy_diff(str(base), head, io.StringIO(), io.StringIO(), fail_on_change=True) == 1
    same = policy_with_tests(tmp_path / "same")
    assert policy_diff(str(base), same, io.StringIO(), io.StringIO(), fail_on_change=True) == 0


def test_diff_against_a_git_ref_reads_the_committed_policy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    policies = policy_with_tests(repo / "policies")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    (policies / "10-routes.yaml").write_text(ROUTES.replace("SEV2", "SEV3"))
    out = io.StringIO()
    assert policy_diff("HEAD", policies, out, io.StringIO()) == 0
    assert out.getvalue().splitlines()[-1] == "1 of 3 alerts change: severity 1"


def test_diff_replays_recorded_notifications(tmp_path: Path) -> None:
    base = policy_with_tests(tmp_path / "base")
    head = policy_with_tests(tmp_path / "head", ROUTES.replace("SEV2", "SEV3"))
    recorded = tmp_path / "notifications.jsonl"
    recorded.write_text(json.dumps(fixture("firing-two-alerts.json")) + "\n")
    out = io.StringIO()
    policy_diff(str(base), head, out, io.StringIO(), replay=recorded)
    assert out.getvalue().splitlines()[-1] == "3 of 5 alerts change: severity 3"
    assert f"({recorded}:1)" in out.getvalue()


def test_diff_with_an_unknown_base_says_so(tmp_path: Path) -> None:
    err = io.StringIO()
    head = policy_with_tests(tmp_path / "head")
    assert policy_diff(str(tmp_path / "nope"), head, io.StringIO(), err) == 2
    assert err.getvalue().startswith(f"{tmp_path / 'nope'}: not a policy directory, nor a git ref")


def test_validate_prints_warnings_and_passes(tmp_path: Path) -> None:
    routes = ROUTES.replace('"latency/{{ labels.service }}"', '"{{ labels.team }}"')
    out, err = io.StringIO(), io.StringIO()
    assert validate(write_policy(tmp_path, routes), out, err) == 0
    assert ": warning: incident_key renders empty" in err.getvalue()
    assert "1 warnings" in out.getvalue()


def test_shipped_schema_is_the_one_the_loader_uses() -> None:
    assert (REPO / "policies" / "schema.json").read_text() == schema()
    runbook = json.loads((REPO / "policies" / "runbook.schema.json").read_text())
    assert runbook == json.loads(schema("runbook"))
    steps = runbook["properties"]["steps"]["items"]["discriminator"]["mapping"]
    assert set(steps) == {"workload_status", "rollout_history", "promql", "http_check", "tcp_check"}
    doc = json.loads(schema())
    assert "continue" in doc["$defs"]["Route"]["properties"]
    assert doc["additionalProperties"] is False


def test_accepted_notifications_are_recorded_and_exported_without_credentials(
    client: FlaskClient, redis: Redis, policies_dir: Path, tmp_path: Path
) -> None:
    doc = fixture("firing-two-alerts.json")
    doc["externalURL"] = "https://admin:hunter2@alertmanager.example"
    post(client, doc)
    post(client, doc)  # duplicate: not recorded again
    out = io.StringIO()
    assert export(redis, Keys("aptest:"), out) == 1
    (line,) = out.getvalue().splitlines()
    assert "hunter2" not in line
    assert json.loads(line)["externalURL"] == "https://alertmanager.example"
    replayed = tmp_path / "replay.jsonl"
    replayed.write_text(out.getvalue())
    no_tests = write_policy(tmp_path / "p", ROUTES)  # the corpus is the replay alone
    diff_out = io.StringIO()
    assert policy_diff(str(no_tests), no_tests, diff_out, io.StringIO(), replay=replayed) == 0
    assert diff_out.getvalue() == "0 of 2 alerts change\n"


def test_schema_accepts_the_shipped_files_and_rejects_an_unknown_key() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema()))
    for path in policy_files(REPO / "policies"):  # not kustomization.yaml
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert errors == [], (path, [e.message for e in errors])
    wrong = {"routes": [{"name": "r", "matchers": ['a="b"'], "severity": "SEV1", "sevrity": 1}]}
    assert [e.validator for e in validator.iter_errors(wrong)] == ["additionalProperties"]
    bad_action = {"default": {"severity": "SEV3", "actions": ["teleport"]}}
    assert list(validator.iter_errors(bad_action))


def test_diff_against_a_git_ref_with_the_policies_at_the_repository_root(
    tmp_path: Path,
) -> None:
    repo = policy_with_tests(tmp_path / "repo")
    (repo / "20 extra routes.yaml").write_text("routes: []\n")  # a name with spaces
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    (repo / "10-routes.yaml").write_text(ROUTES.replace("SEV2", "SEV3"))
    out = io.StringIO()
    assert policy_diff("HEAD", repo, out, io.StringIO()) == 0
    assert out.getvalue().splitlines()[-1] == "1 of 3 alerts change: severity 1"


def _committed(repo: Path, policies: Path) -> Path:
    """`policies` (inside `repo`) committed to a new git repository; returns `policies`."""
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    return policies


def _changed_copy_elsewhere(policies: Path, elsewhere: Path) -> Path:
    """A copy of `policies` outside any repository, with the latency route moved to SEV3."""
    shutil.copytree(policies, elsewhere, ignore=shutil.ignore_patterns(".git"))
    (elsewhere / "10-routes.yaml").write_text(ROUTES.replace("SEV2", "SEV3"))
    return elsewhere


def test_diff_of_a_directory_outside_the_repository_reads_the_ref_where_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    policies = _committed(repo, policy_with_tests(repo / "policies"))
    copy = _changed_copy_elsewhere(policies, tmp_path / "elsewhere" / "policies")
    monkeypatch.chdir(repo)  # where the configured directory, `policies`, is
    monkeypatch.delenv("ALERTPILOT_POLICIES_DIR", raising=False)

    assert cli.main(["policy", "diff", "HEAD", str(copy)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert f'~ {{alertname="HighLatency", service="api"}}  ({copy}/tests/cases.yaml:5)' in out
    assert "    severity  SEV2 -> SEV3" in out
    assert out[-1] == "1 of 3 alerts change: severity 1"


def test_diff_of_a_directory_outside_a_repository_of_policies_at_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _committed(tmp_path / "repo", policy_with_tests(tmp_path / "repo"))
    copy = _changed_copy_elsewhere(repo, tmp_path / "elsewhere")
    monkeypatch.chdir(repo)  # no `policies` here: the ref is read at the current directory
    monkeypatch.delenv("ALERTPILOT_POLICIES_DIR", raising=False)

    assert cli.main(["policy", "diff", "HEAD", str(copy)]) == 0

    assert capsys.readouterr().out.splitlines()[-1] == "1 of 3 alerts change: severity 1"


def test_recorded_notification_reads_back_as_the_same_alerts() -> None:
    notification = parse(fixture("firing-two-alerts.json"))
    assert parse(json.loads(record(notification))).alerts == notification.alerts


def test_credentials_in_urls_are_not_recorded() -> None:
    doc = fixture("firing-two-alerts.json")
    doc["alerts"][0]["generatorURL"] = "https://user:p@ss@prom.example/graph?g0.expr=up&token=abc"
    doc["alerts"][0]["annotations"]["dashboard"] = "https://grafana.example/d/x?X-Amz-Signature=zz"
    kept = json.loads(record(parse(doc)))["alerts"][0]
    assert kept["generatorURL"] == "https://prom.example/graph?g0.expr=up"
    assert kept["annotations"]["dashboard"] == "https://grafana.example/d/x"
