"""Static checks on deploy/: the manifests parse, reference only what exists,
use only the environment variables and metrics that alertpilot has, and grant
alertpilot's ServiceAccount only the mitigation rights, only in target namespaces.

No cluster or Prometheus is needed; the kustomizations are rendered with the
real `kubectl kustomize` (tests/support/rbac.py finds kubectl), and the
Alertmanager configurations are checked with the `amtool` that comes with
Debian's prometheus-alertmanager.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.rbac import ALERTPILOT, granted, kustomize
from webhook import cli
from workers.runner import HEARTBEAT_FILE

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
BASE = DEPLOY / "base"
KUSTOMIZATION = BASE / "kustomization.yaml"
RULES = DEPLOY / "prometheus" / "alertpilot-rules.yaml"
TARGETS = DEPLOY / "targets"
RBAC_KINDS = frozenset({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})
AMTOOL = "/usr/bin/amtool"

# Every variable the settings read (taken from workers/config.py, the one configuration tree,
# with the `_FILE` form of each secret); anything else in a manifest is a typo or a missing
# setting.
_SETTINGS_SOURCE = (DEPLOY.parent / "workers" / "config.py").read_text()
_SECRETS = set(re.findall(r'\bsecret\(env, "([A-Z_]+)"\)', _SETTINGS_SOURCE))
APP_ENV_VARS = frozenset(
    set(re.findall(r'"((?:ALERTPILOT_[A-Z_]+)|REDIS_URL)"', _SETTINGS_SOURCE))
    | {f"{name}_FILE" for name in _SECRETS}
)
CREDENTIAL_MARKERS = (
    "TOKEN",
    "PASSWORD",
    "REDIS_URL",
    "ROUTING_KEY",
    "API_KEY",
    "SECRET",
    "WEBHOOK_URL",
)
# Keys that would hold a literal secret in Kubernetes or Alertmanager YAML.
CREDENTIAL_KEYS = frozenset(
    {"credentials", "password", "bearer_token", "client_secret", "api_key", "routing_key"}
)

# Every series alertpilot exposes, plus Prometheus' own `up`.
HISTOGRAMS = frozenset({"alertpilot_http_request_duration_seconds"})
# Read from Redis: every replica reports the same value, so never sum them.
GLOBAL_METRICS = frozenset(
    {
        "alertpilot_jobs_finished_total",
        "alertpilot_incidents_open",
        "alertpilot_queue_jobs",
        "alertpilot_queue_oldest_job_age_seconds",
        "alertpilot_scheduled_jobs_overdue_seconds",
        "alertpilot_failed_jobs",
        "alertpilot_workers",
        "alertpilot_scheduler_up",
        "alertpilot_mitigations_paused",
        "alertpilot_mitigations_paused_since_seconds",
    }
)
METRICS = (
    HISTOGRAMS
    | GLOBAL_METRICS
    | {
        "alertpilot_notifications_received_total",
        "alertpilot_alerts_received_total",
        "alertpilot_jobs_enqueued_total",
        "alertpilot_policy_reload_failures_total",
        "alertpilot_redis_up",
        "up",
    }
)
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def deploy_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def kustomization() -> dict[str, Any]:
    (doc,) = load_all(KUSTOMIZATION)
    return doc


def base_objects() -> Iterator[dict[str, Any]]:
    for resource in kustomization()["resources"]:
        yield from load_all(BASE / resource)


def deployment(name: str) -> dict[str, Any]:
    (found,) = (
        obj
        for obj in base_objects()
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == name
    )
    return found


def deployments() -> list[dict[str, Any]]:
    return [obj for obj in base_objects() if obj["kind"] == "Deployment"]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def config_literals() -> dict[str, str]:
    (generator,) = (
        g for g in kustomization()["configMapGenerator"] if g["name"] == "alertpilot-config"
    )
    return dict(literal.split("=", 1) for literal in generator["literals"])


def walk_keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from walk_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_keys(item)


def alerting_rules() -> list[dict[str, Any]]:
    (doc,) = load_all(RULES)
    rules = [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]
    assert rules, f"no alerting rules in {RULES}"
    return rules


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects.

    Strips strings, label matchers, range selectors and by/without/on/ignoring/
    group_* label lists first; an identifier followed by "(" is a function or
    an aggregation, not a metric.
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'", '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        is_call = expr[match.end() :].lstrip().startswith("(")
        if not is_call and match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def is_exposed_metric(name: str) -> bool:
    if name in METRICS:
        return True
    base, _, suffix = name.rpartition("_")
    return suffix in {"bucket", "count", "sum"} and base in HISTOGRAMS


def test_every_yaml_file_under_deploy_parses() -> None:
    files = deploy_yaml_files()
    assert files, f"no YAML under {DEPLOY}"
    broken = []
    for path in files:
        try:
            docs = load_all(path)
        except yaml.YAMLError as exc:
            broken.append(f"{path.relative_to(DEPLOY)}: {exc}")
            continue
        if not docs:
            broken.append(f"{path.relative_to(DEPLOY)}: no document")
    assert broken == []


def test_every_kustomization_resource_exists() -> None:
    missing = [r for r in kustomization()["resources"] if not (BASE / r).exists()]
    assert missing == []


def test_every_yaml_in_base_is_a_kustomization_resource() -> None:
    listed = {(BASE / r).resolve() for r in kustomization()["resources"]}
    on_disk = {p.resolve() for p in BASE.glob("*.y*ml")} - {KUSTOMIZATION.resolve()}
    assert sorted(p.name for p in on_disk - listed) == []


def test_deployments_set_only_env_vars_the_app_reads() -> None:
    names = set(config_literals())
    for obj in deployments():
        for container in containers(obj):
            names.update(var["name"] for var in container.get("env", []))
    assert names, "no environment variables found"
    assert sorted(names - APP_ENV_VARS) == []


def test_deploy_contains_no_secret_objects() -> None:
    secrets = [
        str(path.relative_to(DEPLOY))
        for path in deploy_yaml_files()
        for doc in load_all(path)
        if isinstance(doc, dict) and doc.get("kind") == "Secret"
    ]
    assert secrets == []
    assert "secretGenerator" not in kustomization()


def test_credential_env_vars_come_from_secret_key_refs() -> None:
    def is_credential(name: str) -> bool:
        return any(m in name for m in CREDENTIAL_MARKERS) and not name.endswith("_FILE")

    literal = [
        f"{obj['metadata']['name']}: {var['name']}"
        for obj in deployments()
        for container in containers(obj)
        for var in container.get("env", [])
        if is_credential(var["name"])
        and ("value" in var or "secretKeyRef" not in var.get("valueFrom", {}))
    ]
    literal += [f"alertpilot-config: {name}" for name in config_literals() if is_credential(name)]
    assert literal == []


def test_no_literal_credentials_in_deploy_files() -> None:
    found = []
    for path in deploy_yaml_files():
        keys = {key for doc in load_all(path) for key in walk_keys(doc)}
        found += [f"{path.relative_to(DEPLOY)}: {key}" for key in sorted(keys & CREDENTIAL_KEYS)]
        if re.search(r"rediss?://[^\s/@]*:[^\s/@]+@", path.read_text()):
            found.append(f"{path.relative_to(DEPLOY)}: Redis URL with a password")
    assert found == []


def test_metric_name_extraction_ignores_functions_labels_and_modifiers() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{endpoint="/x(y)"}[5m])))'
        " > 0.5 and on (job) max without (instance, pod) (b_total offset 5m) or absent(up)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


def test_rules_use_only_metrics_alertpilot_exposes() -> None:
    used = {name for rule in alerting_rules() for name in metric_names(rule["expr"])}
    assert used
    assert sorted(name for name in used if not is_exposed_metric(name)) == []


def test_rules_aggregate_global_metrics_with_max_without_instance_and_pod() -> None:
    max_without = re.compile(r"max\s+without\s*\(\s*instance\s*,\s*pod\s*\)")
    unaggregated = [
        rule["alert"]
        for rule in alerting_rules()
        if metric_names(rule["expr"]) & GLOBAL_METRICS and not max_without.search(rule["expr"])
    ]
    assert unaggregated == []


def test_every_alert_has_severity_label_and_summary_annotation() -> None:
    incomplete = [
        rule["alert"]
        for rule in alerting_rules()
        if not rule.get("labels", {}).get("severity")
        or not rule.get("annotations", {}).get("summary")
    ]
    assert incomplete == []


def test_every_alert_links_a_runbook_section() -> None:
    unlinked = [
        rule["alert"]
        for rule in alerting_rules()
        if not re.search(
            r"docs/operations\.md#\S+", rule.get("annotations", {}).get("runbook_url", "")
        )
    ]
    assert unlinked == []


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("alertpilot-webhook", ["serve"]),
        ("alertpilot-worker", ["worker", "--heartbeat-dir", "/tmp"]),
    ],
)
def test_deployment_runs_its_alertpilot_subcommand(name: str, args: list[str]) -> None:
    assert [c.get("args") for c in containers(deployment(name))] == [args]


def test_service_selects_webhook_pods_on_a_named_port() -> None:
    (service,) = (obj for obj in base_objects() if obj["kind"] == "Service")
    selector = service["spec"]["selector"].items()
    webhook = deployment("alertpilot-webhook")
    worker = deployment("alertpilot-worker")
    assert selector <= webhook["spec"]["template"]["metadata"]["labels"].items()
    assert not selector <= worker["spec"]["template"]["metadata"]["labels"].items()
    port_names = {p["name"] for c in containers(webhook) for p in c.get("ports", [])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_policies_configmap_is_mounted_at_the_configured_policies_dir() -> None:
    policies_dir = config_literals()["ALERTPILOT_POLICIES_DIR"]
    for obj in deployments():
        pod = obj["spec"]["template"]["spec"]
        (volume,) = (
            v["name"]
            for v in pod["volumes"]
            if v.get("configMap", {}).get("name") == "alertpilot-policies"
        )
        mounts = [
            m["mountPath"]
            for c in pod["containers"]
            for m in c.get("volumeMounts", [])
            if m["name"] == volume
        ]
        assert mounts == [policies_dir], obj["metadata"]["name"]


def test_policy_workflow_runs_commands_the_cli_accepts() -> None:
    """Every `alertpilot ...` line of the CI workflow parses with the real CLI parser."""
    workflow = yaml.safe_load((DEPLOY / "ci" / "policy.yml").read_text())
    steps = workflow["jobs"]["policy"]["steps"]
    commands = [
        line.strip()
        for step in steps
        for line in str(step.get("run", "")).splitlines()
        if line.strip().startswith("alertpilot ")
    ]
    assert len(commands) == 3
    parser = cli._parser()
    for command in commands:
        words = shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "main", command).replace("$replay", ""))
        parser.parse_args(words[1:])  # exits (fails the test) on an unknown command or flag


# kustomize and RBAC ---------------------------------------------------------------------------


def kustomization_dirs() -> list[Path]:
    """Every directory under deploy/ that renders on its own (a Component renders only
    through the overlays that include it)."""
    return sorted(
        path.parent
        for path in DEPLOY.rglob("kustomization.yaml")
        if load_all(path)[0].get("kind", "Kustomization") == "Kustomization"
    )


def test_every_kustomization_under_deploy_renders() -> None:
    dirs = kustomization_dirs()
    assert BASE in dirs
    for directory in dirs:
        assert kustomize(directory), directory


def test_base_grants_alertpilot_nothing_in_its_own_namespace() -> None:
    """The worker reads its policies from a mounted ConfigMap, not the API: a Role
    here would only let it change its own namespace (its own policies included)."""
    granting = [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in kustomize(BASE)
        if obj["kind"] in RBAC_KINDS
    ]
    assert granting == []


def test_every_role_binding_binds_the_service_account_of_alertpilots_namespace() -> None:
    """A ServiceAccount subject without `namespace` is the binding namespace's
    account: in a target namespace, not alertpilot's."""
    namespace, name = ALERTPILOT
    wanted = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    wrong = [
        f"{directory.relative_to(DEPLOY)}: {obj['metadata']['name']}: {obj.get('subjects')}"
        for directory in kustomization_dirs()
        for obj in kustomize(directory)
        if obj["kind"] in {"RoleBinding", "ClusterRoleBinding"} and obj.get("subjects") != wanted
    ]
    assert wrong == []


def test_target_overlays_grant_alertpilot_the_mitigation_role_in_their_namespace_only() -> None:
    overlays = sorted(path.parent for path in TARGETS.glob("*/kustomization.yaml"))
    assert overlays, f"no overlay under {TARGETS}"
    for overlay in overlays:
        (doc,) = load_all(overlay / "kustomization.yaml")
        objects = kustomize(overlay)
        assert {obj["metadata"].get("namespace") for obj in objects} == {doc["namespace"]}
        assert {obj["kind"] for obj in objects} == {"Role", "RoleBinding"}
        resources = {r for rule in granted(objects, doc["namespace"]) for r in rule["resources"]}
        assert "deployments/scale" in resources, overlay


def test_the_readme_overlay_puts_the_component_in_a_namespace_bound_to_another_one(
    tmp_path: Path,
) -> None:
    """deploy/README.md's patch for an alertpilot that does not run in `alertpilot`."""
    (patch,) = re.findall(r"```yaml\n(patches:.*?)```", (DEPLOY / "README.md").read_text(), re.S)
    component = os.path.relpath(DEPLOY / "components" / "mitigation-target", tmp_path)
    overlay = {"namespace": "payments", "components": [component], **yaml.safe_load(patch)}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    objects = kustomize(tmp_path)
    assert {obj["metadata"]["namespace"] for obj in objects} == {"payments"}
    assert granted(objects, "payments", ("sre-tools", "alertpilot"))
    assert granted(objects, "payments") == []


# Alertmanager ---------------------------------------------------------------------------------


def alertmanager_configs() -> list[Path]:
    """Every Alertmanager configuration in the repository: YAML with `receivers:`."""
    skip = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    found = []
    for root, dirs, files in os.walk(DEPLOY.parent):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for path in sorted(Path(root) / f for f in files if f.endswith((".yaml", ".yml"))):
            try:
                docs = load_all(path)
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            if len(docs) == 1 and isinstance(docs[0], dict) and "receivers" in docs[0]:
                found.append(path)
    return found


def test_every_alertmanager_config_passes_amtool_check_config() -> None:
    """With Debian's amtool (0.25 on bookworm): a field only newer versions know is
    left commented out, with the version that needs it."""
    configs = alertmanager_configs()
    assert DEPLOY / "alertmanager" / "receiver-example.yaml" in configs
    failed = []
    for path in configs:
        done = subprocess.run(
            [AMTOOL, "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            failed.append(f"{path.relative_to(DEPLOY.parent)}: {done.stdout}{done.stderr}")
    assert failed == []


RECEIVER_EXAMPLE = DEPLOY / "alertmanager" / "receiver-example.yaml"


def routed_to(*labels: str) -> list[str]:
    """The receivers the example configuration sends an alert of `labels` to, by amtool."""
    done = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={RECEIVER_EXAMPLE}", *labels],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def alertpilot_webhook() -> dict[str, Any]:
    (config,) = load_all(RECEIVER_EXAMPLE)
    (receiver,) = (r for r in config["receivers"] if r["name"] == "alertpilot")
    (webhook,) = receiver["webhook_configs"]
    found: dict[str, Any] = webhook
    return found


def test_example_sends_every_alert_and_its_resolve_to_alertpilot() -> None:
    webhook = alertpilot_webhook()
    assert (webhook["max_alerts"], webhook["send_resolved"]) == (0, True)


def test_example_reads_the_bearer_token_from_a_file() -> None:
    authorization = alertpilot_webhook()["http_config"]["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    assert authorization["credentials_file"].startswith("/")
    assert "credentials" not in authorization


def test_example_routes_alerts_to_alertpilot_and_its_own_alerts_around_it() -> None:
    assert routed_to("alertname=HighLatency", "severity=critical") == ["alertpilot"]
    assert routed_to("alertname=AlertpilotNoWorker", "severity=critical") == ["default"]
    assert routed_to("alertname=DiskFilling", "severity=info") == ["default"]


def test_example_explains_each_group_timing_of_the_alertpilot_route() -> None:
    (config,) = load_all(RECEIVER_EXAMPLE)
    (route,) = (r for r in config["route"]["routes"] if r["receiver"] == "alertpilot")
    assert {"group_wait", "group_interval", "repeat_interval"} <= route.keys()
    text = RECEIVER_EXAMPLE.read_text()
    for timing in ("group_wait", "group_interval", "repeat_interval"):
        assert re.search(rf"^\s*# {timing}: ", text, re.MULTILINE), timing


def test_the_worker_liveness_probe_reads_the_file_the_worker_touches() -> None:
    """`alertpilot worker --heartbeat-dir DIR` touches DIR/HEARTBEAT_FILE while it is well;
    the probe must read that very file, in the directory the args give."""
    (container,) = containers(deployment("alertpilot-worker"))
    directory = container["args"][container["args"].index("--heartbeat-dir") + 1]
    command = " ".join(container["livenessProbe"]["exec"]["command"])
    assert f"{directory}/{HEARTBEAT_FILE} " in command
    assert any(m["mountPath"] == directory for m in container["volumeMounts"])
