"""`alertpilot deploy rbac` (webhook/rbac.py): the mitigation Role and RoleBinding per allowed
namespace, written from a policy.

That every call of every action is allowed by what it writes is checked against the
Kubernetes stand-in in tests/test_mitigation_actions.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, write_policy
from tests.support.rbac import granted, kustomize
from webhook import rbac
from workers.policy import Policy, load_policy

ROUTES = """\
routes:
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: api-rate-limit}
data: {limit-rps: "10"}
"""


def policy(
    tmp_path: Path, allow: dict[str, Any], manifests: dict[str, str] | None = None
) -> Policy:
    directory = write_policy(tmp_path / "policies", ROUTES)
    doc = {"mitigations": {"dry_run": True, "allow": allow}}
    (directory / "20-mitigations.yaml").write_text(yaml.safe_dump(doc))
    for name, text in (manifests or {}).items():
        (directory / "manifests").mkdir(exist_ok=True)
        (directory / "manifests" / f"{name}.yaml").write_text(text)
    return load_policy(directory)


def names(rules: list[dict[str, Any]]) -> dict[str, list[str] | None]:
    """resource -> its resourceNames (None: any object)."""
    return {rule["resources"][0]: rule.get("resourceNames") for rule in rules}


def test_one_role_and_binding_per_allowed_namespace_bound_to_alertpilots_account(
    tmp_path: Path,
) -> None:
    allow = {"namespaces": ["production", "staging"], "workloads": ["api"]}
    found = rbac.objects(policy(tmp_path, allow), namespace="sre-tools")
    assert [(o["kind"], o["metadata"]["namespace"]) for o in found] == [
        ("Role", "production"),
        ("RoleBinding", "production"),
        ("Role", "staging"),
        ("RoleBinding", "staging"),
    ]
    for binding in found[1::2]:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "alertpilot", "namespace": "sre-tools"}
        ]
        assert binding["roleRef"]["name"] == found[0]["metadata"]["name"]
    assert granted(found, "staging", ("sre-tools", "alertpilot"))
    assert granted(found, "sre-tools", ("sre-tools", "alertpilot")) == []


def test_named_workloads_limit_deployments_their_scale_and_ingresses_to_those_names(
    tmp_path: Path,
) -> None:
    allow = {"namespaces": ["production"], "workloads": ["checkout", "api"]}
    rules = granted(rbac.objects(policy(tmp_path, allow), namespace="alertpilot"), "production")
    assert names(rules) == {
        "deployments": ["api", "checkout"],
        "deployments/scale": ["api", "checkout"],
        "replicasets": None,
        "horizontalpodautoscalers": None,
        "ingresses": ["api", "checkout"],
        "pods": None,  # a runbook's workload_status lists them by the deployment's selector
        "events": None,
    }
    assert {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]} in rules


@pytest.mark.parametrize(
    "allow",
    [
        {"namespaces": ["production"], "workloads": ["api"], "labels": {"team": "api"}},
        {"namespaces": ["production"]},
    ],
    ids=["label-selector", "any-object"],
)
def test_a_label_selector_or_no_list_leaves_every_name_open(
    tmp_path: Path, allow: dict[str, Any]
) -> None:
    rules = granted(rbac.objects(policy(tmp_path, allow), namespace="alertpilot"), "production")
    assert set(names(rules).values()) == {None}


def test_configmaps_are_granted_only_by_the_names_of_configmap_manifests(tmp_path: Path) -> None:
    allow = {"namespaces": ["production"], "labels": {"team": "api"}}
    without = rbac.objects(policy(tmp_path / "a", allow), namespace="alertpilot")
    assert "configmaps" not in names(granted(without, "production"))
    manifests = {"rate-limit-strict": CONFIGMAP}
    found = rbac.objects(policy(tmp_path / "b", allow, manifests), namespace="alertpilot")
    assert names(granted(found, "production"))["configmaps"] == ["api-rate-limit"]


def test_a_manifest_fixed_to_another_namespace_is_not_granted_here(tmp_path: Path) -> None:
    allow = {"namespaces": ["production", "staging"]}
    pinned = CONFIGMAP.replace(
        "{name: api-rate-limit}", "{name: api-rate-limit, namespace: staging}"
    )
    found = rbac.objects(policy(tmp_path, allow, {"strict": pinned}), namespace="alertpilot")
    assert "configmaps" not in names(granted(found, "production"))
    assert names(granted(found, "staging"))["configmaps"] == ["api-rate-limit"]


def test_no_allowed_namespace_grants_nothing(tmp_path: Path) -> None:
    empty = policy(tmp_path, {"namespaces": []})
    assert rbac.objects(empty, namespace="alertpilot") == []
    text = rbac.render(empty, namespace="alertpilot")
    assert [doc for doc in yaml.safe_load_all(text) if doc] == []
    assert "nothing to grant" in text


def test_rejects_a_namespace_that_is_not_a_dns_label(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="got 'Alert_Pilot'"):
        rbac.objects(policy(tmp_path, {"namespaces": ["production"]}), namespace="Alert_Pilot")


def test_render_is_the_objects_as_a_yaml_stream_without_anchors(policies_dir: Path) -> None:
    shipped = load_policy(policies_dir)
    text = rbac.render(shipped, namespace="alertpilot")
    assert "&id" not in text and "*id" not in text
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    assert docs == rbac.objects(shipped, namespace="alertpilot")


def test_without_names_it_grants_what_the_kustomize_component_grants(tmp_path: Path) -> None:
    """One set of verbs: deploy/components/mitigation-target, rendered by kubectl, and the
    generator agree once resourceNames are set aside."""
    allow = {"namespaces": ["production"], "labels": {"team": "api"}}
    generated = granted(
        rbac.objects(policy(tmp_path, allow, {"strict": CONFIGMAP}), namespace="alertpilot"),
        "production",
    )
    overlay = granted(kustomize(REPO / "deploy" / "targets" / "production"), "production")
    assert [{k: v for k, v in r.items() if k != "resourceNames"} for r in generated] == overlay


def test_the_deploy_rbac_command_writes_what_the_generator_renders(
    capsys: pytest.CaptureFixture[str], policies_dir: Path
) -> None:
    from webhook import cli

    assert cli.main(["deploy", "rbac", str(policies_dir), "--namespace", "sre-tools"]) == 0
    expected = rbac.render(load_policy(policies_dir), namespace="sre-tools")
    assert capsys.readouterr().out == expected
    assert "namespace: sre-tools" in expected
