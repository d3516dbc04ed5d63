"""deploy/overlays and deploy/redis as the API server would take them, without a cluster.

Each kustomization is rendered with the real `kubectl kustomize` and every object it renders
is validated against the OpenAPI schemas of Kubernetes 1.37 (the `kubernetes-validate`
package, strict: an unknown field is an error, as a typo in a security setting would be).
Then what no schema says: hardened containers, probes on the paths the app serves,
resources sized from docs/benchmarks.md, grace periods from the job timeout and gunicorn's,
budgets and NetworkPolicies that select the right pods, no stored secret, and the dry run
of each overlay. Redis runs for real: Debian's redis-server takes deploy/redis/single's
redis.conf, and deploy/redis/sentinel's configure.sh sets up two servers and three
sentinels on loopback, through a failover and restarts.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from flask import Flask
from redis import Redis
from redis.exceptions import RedisError

from tests.support.rbac import kustomize
from tests.support.redis_server import free_port
from webhook import gunicorn_conf, health
from workers.jobs.contract import JOB_TIMEOUT
from workers.runner import HEARTBEAT_FILE

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
OVERLAYS = {
    "staging": DEPLOY / "overlays" / "staging",
    "production": DEPLOY / "overlays" / "production",
}
SINGLE = DEPLOY / "redis" / "single"
SENTINEL = DEPLOY / "redis" / "sentinel"
REDIS_DIRS = [SINGLE, SENTINEL]
RENDERED = [*OVERLAYS.values(), *REDIS_DIRS]
KUBERNETES = "1.37"
"""The newest minor whose schemas kubernetes-validate (1.37.0) ships."""
WORKLOADS = frozenset({"Deployment", "StatefulSet"})
RECEIVER = "alertpilot-webhook"
WORKER = "alertpilot-worker"
REDIS_PORTS = {6379, 26379}


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(DEPLOY)) for p in paths]


@functools.cache
def _rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(directory))


def rendered(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize directory` renders (a copy: tests may change it)."""
    return copy.deepcopy(list(_rendered(directory)))


def kustomization(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return doc


def of_kind(objects: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] in kinds]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    return found


def pod(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of its pods, init containers included."""
    spec = pod(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def all_containers(directory: Path) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for workload in of_kind(rendered(directory), *WORKLOADS):
        for container in containers(workload):
            yield f"{workload['metadata']['name']}/{container['name']}", workload, container


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects `labels`."""
    if selector.get("matchLabels", {}).items() - labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        held = {
            "In": key in labels and labels[key] in (values or []),
            "NotIn": key not in labels or labels[key] not in (values or []),
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


def peers(overlay: Path) -> dict[str, Any]:
    """The overlay's NetworkPeers (network-peers.yaml): the NetworkPolicies' parameters."""
    (doc,) = (
        d
        for d in yaml.safe_load_all((overlay / "network-peers.yaml").read_text())
        if d["kind"] == "NetworkPeers"
    )
    spec: dict[str, Any] = doc["spec"]
    return spec


def policies_selecting(objects: list[dict[str, Any]], labels: dict[str, str]) -> list[Any]:
    return [
        p for p in of_kind(objects, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
    ]


def ports(rule: dict[str, Any]) -> set[tuple[Any, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}


# The schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("directory", RENDERED, ids=ids(RENDERED))
def test_every_rendered_object_is_valid_kubernetes(directory: Path) -> None:
    objects = rendered(directory)
    assert objects
    invalid = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            invalid.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            invalid.append(exc.message)
    assert invalid == []


def test_the_schema_check_rejects_a_misspelt_field_and_a_wrong_type() -> None:
    """The check above would pass anything if the schemas were not strict."""
    deployment = named(rendered(OVERLAYS["staging"]), "Deployment", RECEIVER)
    kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = (
        True
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES, strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES, strict=True)


# Overlays: namespace, image, dry run ---------------------------------------------------------


def test_the_base_names_no_namespace() -> None:
    assert [o["metadata"]["name"] for o in rendered(BASE) if "namespace" in o["metadata"]] == []


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_an_overlay_puts_every_object_in_its_namespace(overlay: Path) -> None:
    namespace = kustomization(overlay)["namespace"]
    assert {o["metadata"].get("namespace") for o in rendered(overlay)} == {namespace}


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_an_overlay_runs_its_registrys_image(overlay: Path) -> None:
    (image,) = (i for i in kustomization(overlay)["images"] if i["name"] == "alertpilot")
    wanted = f"{image['newName']}:{image['newTag']}"
    used = {c["image"] for _, _, c in all_containers(overlay)}
    assert used == {wanted}


def dry_run(objects: list[dict[str, Any]], container: dict[str, Any]) -> str | None:
    """ALERTPILOT_DRY_RUN as the container sees it: its env over its envFrom ConfigMaps."""
    value = None
    for source in container.get("envFrom", []):
        config = named(objects, "ConfigMap", source["configMapRef"]["name"])
        value = config.get("data", {}).get("ALERTPILOT_DRY_RUN", value)
    for var in container.get("env", []):
        if var["name"] == "ALERTPILOT_DRY_RUN":
            value = var.get("value")
    return value


@pytest.mark.parametrize(("overlay", "wanted"), [("staging", "true"), ("production", "false")])
def test_staging_runs_dry_and_production_does_not(overlay: str, wanted: str) -> None:
    objects = rendered(OVERLAYS[overlay])
    seen = {
        f"{d['metadata']['name']}/{c['name']}": dry_run(objects, c)
        for d in of_kind(objects, "Deployment")
        for c in containers(d)
    }
    assert sorted(seen) == [f"{RECEIVER}/webhook", f"{WORKER}/worker"]
    assert set(seen.values()) == {wanted}


# Pods: hardening, resources, probes, shutdown, spread, budgets -------------------------------


@pytest.mark.parametrize("directory", RENDERED, ids=ids(RENDERED))
def test_every_container_runs_unprivileged_on_a_read_only_root(directory: Path) -> None:
    """Pod Security Standards' `restricted` profile, and a read-only root filesystem."""
    wrong = []
    for name, workload, container in all_containers(directory):
        pod_context = pod(workload).get("securityContext", {})
        context = {**pod_context, **container.get("securityContext", {})}
        found = {
            "runAsNonRoot": context.get("runAsNonRoot"),
            "runAsUser is not 0": context.get("runAsUser", 1) != 0,
            "allowPrivilegeEscalation": context.get("allowPrivilegeEscalation"),
            "privileged": context.get("privileged", False),
            "readOnlyRootFilesystem": context.get("readOnlyRootFilesystem"),
            "capabilities.drop": context.get("capabilities", {}).get("drop"),
            "capabilities.add": context.get("capabilities", {}).get("add", []),
            "seccompProfile": context.get("seccompProfile", {}).get("type"),
        }
        wanted = {
            "runAsNonRoot": True,
            "runAsUser is not 0": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities.drop": ["ALL"],
            "capabilities.add": [],
            "seccompProfile": "RuntimeDefault",
        }
        wrong += [f"{name}: {k}={v!r}" for k, v in found.items() if v != wanted[k]]
    assert wrong == []


@pytest.mark.parametrize("directory", RENDERED, ids=ids(RENDERED))
def test_no_pod_shares_the_nodes_namespaces_or_files(directory: Path) -> None:
    shared = [
        f"{w['metadata']['name']}: {key}"
        for w in of_kind(rendered(directory), *WORKLOADS)
        for key in ("hostNetwork", "hostPID", "hostIPC")
        if pod(w).get(key)
    ]
    shared += [
        f"{w['metadata']['name']}: hostPath {v['name']}"
        for w in of_kind(rendered(directory), *WORKLOADS)
        for v in pod(w).get("volumes", [])
        if "hostPath" in v
    ]
    assert shared == []


@pytest.mark.parametrize("directory", RENDERED, ids=ids(RENDERED))
def test_only_the_worker_mounts_an_api_token(directory: Path) -> None:
    mounting = [
        w["metadata"]["name"]
        for w in of_kind(rendered(directory), *WORKLOADS)
        if pod(w).get("automountServiceAccountToken", True)
    ]
    assert mounting == ([WORKER] if directory in OVERLAYS.values() else [])


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi)", quantity)
    assert match, f"a memory quantity in Ki, Mi or Gi, got {quantity!r}"
    return float(match[1]) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[match[2]]


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("directory", RENDERED, ids=ids(RENDERED))
def test_every_container_requests_and_limits_cpu_and_memory(directory: Path) -> None:
    wrong = []
    for name, _, container in all_containers(directory):
        resources = container.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        if set(requests) != {"cpu", "memory"} or set(limits) != {"cpu", "memory"}:
            wrong.append(f"{name}: requests {sorted(requests)}, limits {sorted(limits)}")
            continue
        if mebibytes(limits["memory"]) < mebibytes(requests["memory"]):
            wrong.append(f"{name}: a memory limit under its request")
        if cores(limits["cpu"]) < cores(requests["cpu"]):
            wrong.append(f"{name}: a CPU limit under its request")
    assert wrong == []


def benchmarked_rss(case: str) -> float:
    """MiB in docs/benchmarks.md's storm table, row `case` (the figure after the storm)."""
    text = (REPO / "docs" / "benchmarks.md").read_text()
    match = re.search(rf"^\| {re.escape(case)}[^|]* \| ([\d.]+) MiB \|", text, re.M)
    assert match, f"no {case!r} row in docs/benchmarks.md"
    return float(match.group(1))


def test_memory_requests_hold_the_benchmarked_processes() -> None:
    """The receiver: gunicorn's master and ALERTPILOT_WEB_CONCURRENCY workers; the worker:
    RQ's worker, its scheduler and a work horse. Each at the RSS the storm bench measured."""
    objects = rendered(OVERLAYS["production"])
    (config,) = (
        o
        for o in of_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("alertpilot-config")
    )
    processes = {
        RECEIVER: 1 + int(config["data"]["ALERTPILOT_WEB_CONCURRENCY"]),
        WORKER: 3,
    }
    rss = {
        RECEIVER: benchmarked_rss("RSS of a gunicorn worker"),
        WORKER: benchmarked_rss("RSS of an RQ worker"),
    }
    for name in (RECEIVER, WORKER):
        (container,) = containers(named(objects, "Deployment", name))
        requested = mebibytes(container["resources"]["requests"]["memory"])
        assert requested >= processes[name] * rss[name], name
        assert mebibytes(container["resources"]["limits"]["memory"]) >= 2 * requested, name


@pytest.mark.parametrize("directory", RENDERED, ids=ids(RENDERED))
def test_every_container_has_a_liveness_probe_and_every_server_a_readiness_probe(
    directory: Path,
) -> None:
    missing = []
    for workload in of_kind(rendered(directory), *WORKLOADS):
        for container in pod(workload)["containers"]:
            name = f"{workload['metadata']['name']}/{container['name']}"
            if "livenessProbe" not in container:
                missing.append(f"{name}: livenessProbe")
            if container.get("ports") and "readinessProbe" not in container:
                missing.append(f"{name}: readinessProbe")
    assert missing == []


def served_paths() -> set[str]:
    app = Flask(__name__)
    app.register_blueprint(health.blueprint)
    return {rule.rule for rule in app.url_map.iter_rules()}


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_the_receiver_is_ready_on_readyz_and_alive_on_healthz(overlay: Path) -> None:
    (container,) = containers(named(rendered(overlay), "Deployment", RECEIVER))
    probes = {
        kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
        for kind in ("readinessProbe", "livenessProbe")
    }
    assert probes == {"readinessProbe": ("/readyz", "http"), "livenessProbe": ("/healthz", "http")}
    assert {"/readyz", "/healthz"} <= served_paths()
    assert "http" in {p["name"] for p in container["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_the_worker_is_alive_while_its_heartbeat_file_is_fresh(overlay: Path) -> None:
    """workers/runner.py touches --heartbeat-dir/HEARTBEAT_FILE every second while the
    worker's scheduler is well; the probe fails once the file is a minute old."""
    (container,) = containers(named(rendered(overlay), "Deployment", WORKER))
    directory = container["args"][container["args"].index("--heartbeat-dir") + 1]
    command = container["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    assert f"find {directory}/{HEARTBEAT_FILE} -mmin -1" in command[2]
    assert directory in {m["mountPath"] for m in container["volumeMounts"]}
    assert "readinessProbe" not in container  # no Service: readiness would only block drains


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_a_stopping_worker_has_the_time_to_finish_its_job(overlay: Path) -> None:
    grace = pod(named(rendered(overlay), "Deployment", WORKER))["terminationGracePeriodSeconds"]
    assert JOB_TIMEOUT < grace <= JOB_TIMEOUT + 60


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_a_stopping_receiver_leaves_the_endpoints_then_finishes_its_requests(
    overlay: Path,
) -> None:
    deployment = named(rendered(overlay), "Deployment", RECEIVER)
    (container,) = containers(deployment)
    drain = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert drain >= 5
    grace = pod(deployment)["terminationGracePeriodSeconds"]
    assert grace >= drain + gunicorn_conf.graceful_timeout


@pytest.mark.parametrize("directory", RENDERED, ids=ids(RENDERED))
def test_replicas_spread_across_nodes(directory: Path) -> None:
    unspread = []
    for workload in of_kind(rendered(directory), *WORKLOADS):
        if workload["spec"].get("replicas", 1) < 2:
            continue
        spreads = [
            c
            for c in pod(workload).get("topologySpreadConstraints", [])
            if c["topologyKey"] == "kubernetes.io/hostname"
            and c["whenUnsatisfiable"] == "ScheduleAnyway"
            and selects(c["labelSelector"], pod_labels(workload))
        ]
        if not spreads:
            unspread.append(workload["metadata"]["name"])
    assert unspread == []


@pytest.mark.parametrize(
    "directory", [*OVERLAYS.values(), SENTINEL], ids=ids([*OVERLAYS.values(), SENTINEL])
)
def test_every_replicated_workload_has_a_budget_of_its_own(directory: Path) -> None:
    """One PodDisruptionBudget per workload, selecting its pods and no other's."""
    objects = rendered(directory)
    workloads = of_kind(objects, *WORKLOADS)
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in workloads:
        mine = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(workload))]
        assert len(mine) == 1, workload["metadata"]["name"]
        others = [w for w in workloads if w is not workload]
        assert not any(selects(mine[0]["spec"]["selector"], pod_labels(w)) for w in others)
    names = {w["metadata"]["name"] for w in workloads}
    assert names >= ({RECEIVER, WORKER} if directory in OVERLAYS.values() else {"alertpilot-redis"})


# Secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", [BASE, *RENDERED], ids=ids([BASE, *RENDERED]))
def test_no_secret_is_stored_and_every_credential_is_a_secret_reference(directory: Path) -> None:
    objects = rendered(directory)
    stored = [
        o["metadata"]["name"]
        for o in of_kind(objects, "Secret")
        if o.get("data") or o.get("stringData")
    ]
    assert stored == []
    literal = [
        f"{w['metadata']['name']}/{c['name']}: {var['name']}"
        for w in of_kind(objects, *WORKLOADS)
        for c in containers(w)
        for var in c.get("env", [])
        if re.search(r"PASSWORD|TOKEN|SECRET|AUTH|KEY|REDIS_URL", var["name"])
        and "secretKeyRef" not in var.get("valueFrom", {})
    ]
    assert literal == []


# NetworkPolicies -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_only_alertmanager_and_prometheus_reach_the_receiver(overlay: Path) -> None:
    objects = rendered(overlay)
    receiver = named(objects, "Deployment", RECEIVER)
    worker = named(objects, "Deployment", WORKER)
    admitting = [p for p in of_kind(objects, "NetworkPolicy") if p["spec"].get("ingress")]
    (policy,) = admitting
    assert selects(policy["spec"]["podSelector"], pod_labels(receiver))
    assert not selects(policy["spec"]["podSelector"], pod_labels(worker))
    assert "Ingress" in policy["spec"]["policyTypes"]
    (rule,) = policy["spec"]["ingress"]
    given = peers(overlay)
    assert rule["from"] == [given["alertmanager"], given["prometheus"]]
    assert ports(rule) == {("http", "TCP")}
    (port,) = (p for c in containers(receiver) for p in c["ports"] if p["name"] == "http")
    assert port["containerPort"] == 9095


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_nothing_reaches_the_worker(overlay: Path) -> None:
    objects = rendered(overlay)
    policies = policies_selecting(objects, pod_labels(named(objects, "Deployment", WORKER)))
    assert policies
    assert any("Ingress" in p["spec"]["policyTypes"] for p in policies)
    assert [p["spec"]["ingress"] for p in policies if p["spec"].get("ingress")] == []


DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


def allowed_egress(
    given: dict[str, Any], *, worker: bool
) -> list[tuple[list[Any] | None, set[Any]]]:
    """(peers, ports) of each egress rule a pod may have; peers None: any address."""
    rules: list[tuple[list[Any] | None, set[Any]]] = [
        ([given["redis"]], {(p, "TCP") for p in REDIS_PORTS}),
        ([DNS], {(53, "UDP"), (53, "TCP")}),
    ]
    if worker:  # the API server and the vendors' HTTPS; Prometheus for runbooks
        rules += [(None, {(443, "TCP"), (6443, "TCP")}), ([given["prometheus"]], {(9090, "TCP")})]
    return rules


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
@pytest.mark.parametrize("name", [RECEIVER, WORKER])
def test_pods_reach_only_redis_dns_and_for_the_worker_the_api_server_and_https(
    overlay: Path, name: str
) -> None:
    objects = rendered(overlay)
    policies = policies_selecting(objects, pod_labels(named(objects, "Deployment", name)))
    assert [p for p in policies if "Egress" in p["spec"]["policyTypes"]]
    found = [
        (rule.get("to"), ports(rule)) for p in policies for rule in p["spec"].get("egress", [])
    ]
    assert found == allowed_egress(peers(overlay), worker=name == WORKER)


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
def test_no_policy_keeps_an_empty_peer(overlay: Path) -> None:
    """An unreplaced `{}` placeholder: the API server would reject it, kustomize does not."""
    empty = [
        p["metadata"]["name"]
        for p in of_kind(rendered(overlay), "NetworkPolicy")
        for rule in [*p["spec"].get("ingress", []), *p["spec"].get("egress", [])]
        for peer in rule.get("from", rule.get("to", []))
        if not peer
    ]
    assert empty == []


def test_an_overlay_without_its_peers_does_not_render(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    shutil.copytree(OVERLAYS["staging"], overlay)
    doc = kustomization(overlay)
    doc["resources"] = [os.path.relpath(BASE, overlay)]
    doc["components"] = [os.path.relpath(DEPLOY / "components" / "network-policy", overlay)]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    (overlay / "network-peers.yaml").unlink()
    with pytest.raises(AssertionError, match="nothing selected by NetworkPeers"):
        kustomize(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS.keys())
@pytest.mark.parametrize("redis", REDIS_DIRS, ids=ids(REDIS_DIRS))
def test_the_redis_peer_selects_every_redis_pod_in_the_namespace(
    overlay: Path, redis: Path
) -> None:
    peer = peers(overlay)["redis"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector: deploy/redis goes in alertpilot's
    for workload in of_kind(rendered(redis), "StatefulSet"):
        assert selects(peer["podSelector"], pod_labels(workload)), workload["metadata"]["name"]


@pytest.mark.parametrize("redis", REDIS_DIRS, ids=ids(REDIS_DIRS))
def test_redis_admits_alertpilots_pods_and_its_own(redis: Path) -> None:
    objects = rendered(redis)
    (policy,) = of_kind(objects, "NetworkPolicy")
    for workload in of_kind(objects, "StatefulSet"):
        assert selects(policy["spec"]["podSelector"], pod_labels(workload))
    sources = [peer["podSelector"] for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    app = named(rendered(OVERLAYS["production"]), "Deployment", WORKER)
    receiver = named(rendered(OVERLAYS["production"]), "Deployment", RECEIVER)
    for labels in (pod_labels(app), pod_labels(receiver)):
        assert any(selects(s, labels) for s in sources)
    listening = {
        p["containerPort"] for _, _, c in all_containers(redis) for p in c.get("ports", [])
    }
    assert listening <= {port for rule in policy["spec"]["ingress"] for port, _ in ports(rule)}


# Redis ---------------------------------------------------------------------------------------


def config_file(objects: list[dict[str, Any]], key: str) -> str:
    (config,) = (o for o in of_kind(objects, "ConfigMap") if key in o.get("data", {}))
    text: str = config["data"][key]
    return text


def directives(conf: str) -> dict[str, str]:
    lines = (line.strip() for line in conf.splitlines())
    pairs = (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


@pytest.mark.parametrize("redis", REDIS_DIRS, ids=ids(REDIS_DIRS))
def test_redis_appends_every_write_and_never_evicts(redis: Path) -> None:
    conf = directives(config_file(rendered(redis), "redis.conf"))
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"


@pytest.mark.parametrize("redis", REDIS_DIRS, ids=ids(REDIS_DIRS))
def test_every_redis_server_keeps_its_data_on_its_own_volume(redis: Path) -> None:
    server = named(rendered(redis), "StatefulSet", "alertpilot-redis")
    (claim,) = server["spec"]["volumeClaimTemplates"]
    (container,) = pod(server)["containers"]
    (mount,) = (m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert mount["mountPath"] == "/data"
    assert server["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }


@pytest.mark.parametrize("redis", REDIS_DIRS, ids=ids(REDIS_DIRS))
def test_each_statefulset_is_governed_by_a_headless_service_selecting_it(redis: Path) -> None:
    objects = rendered(redis)
    for workload in of_kind(objects, "StatefulSet"):
        service = named(objects, "Service", workload["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(workload))


def test_the_sentinel_set_is_a_primary_a_replica_and_three_sentinels_of_quorum_two() -> None:
    objects = rendered(SENTINEL)
    servers = named(objects, "StatefulSet", "alertpilot-redis")
    sentinels = named(objects, "StatefulSet", "alertpilot-redis-sentinel")
    assert servers["spec"]["replicas"] == 2
    assert sentinels["spec"]["replicas"] == 3
    (configure,) = pod(sentinels)["initContainers"]
    env = {var["name"]: var.get("value") for var in configure["env"]}
    assert env["QUORUM"] == "2"
    assert len(env["SENTINEL_NODES"].split()) == 3
    timing = directives(config_file(objects, "sentinel.conf"))
    assert timing["sentinel"].split()[1] == env["MASTER_NAME"]
    for workload in (servers, sentinels):
        (configure,) = pod(workload)["initContainers"]
        assert configure["command"][:2] == ["sh", "/etc/redis-template/configure.sh"]


@pytest.mark.parametrize("redis", REDIS_DIRS, ids=ids(REDIS_DIRS))
def test_each_redis_kustomization_says_what_a_crash_can_lose(redis: Path) -> None:
    text = (redis / "kustomization.yaml").read_text()
    assert "~1 s" in text
    if redis == SENTINEL:
        assert "asynchronous" in text
        assert "ALERTPILOT_REDIS_WAIT_REPLICAS" in text


# Redis, for real ---------------------------------------------------------------------------


def client(port: int, password: str) -> Redis:
    return Redis(port=port, password=password, socket_timeout=2, decode_responses=True)


def wait_for(what: str, check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


class Processes(ExitStack):
    """Redis processes started here, each killed at the end (or when asked)."""

    def __init__(self, logs: Path) -> None:
        super().__init__()
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = self.enter_context((self.logs / f"{name}.log").open("ab"))
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.running[name] = process
        self.callback(self.stop, name)

    def stop(self, name: str) -> None:
        process = self.running.pop(name, None)
        if process is not None:
            process.kill()
            process.wait(timeout=10)


def test_the_single_redis_config_runs_in_redis_server_with_the_aof_on(tmp_path: Path) -> None:
    (tmp_path / "redis.conf").write_text(config_file(rendered(SINGLE), "redis.conf"))
    port, password = free_port(), "test-password"
    with Processes(tmp_path) as processes:
        processes.start(
            "redis",
            "redis-server", str(tmp_path / "redis.conf"),
            "--dir", str(tmp_path), "--port", str(port), "--bind", "127.0.0.1",
            "--requirepass", password,
        )  # fmt: skip
        redis = client(port, password)
        wait_for("redis-server answers", lambda: bool(redis.ping()))
        settings = {
            key: redis.config_get(key)[key]
            for key in ("appendonly", "appendfsync", "maxmemory-policy", "save", "maxmemory")
        }
        assert settings == {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory-policy": "noeviction",
            "save": "",
            "maxmemory": str(256 * 1024 * 1024),
        }
        redis.set("alertpilot:test", "kept")
        assert list((tmp_path / "appendonlydir").glob("*.incr.aof"))


class SentinelSet:
    """deploy/redis/sentinel on loopback: configure.sh, as rendered, writes each server's
    and sentinel's configuration from the environment its StatefulSet gives it, with
    127.0.0.1 and free ports for the pods' names."""

    MASTER = "alertpilot"

    def __init__(self, tmp_path: Path, processes: Processes) -> None:
        objects = rendered(SENTINEL)
        self.templates = tmp_path / "templates"
        self.templates.mkdir()
        for key in ("redis.conf", "sentinel.conf", "configure.sh"):
            (self.templates / key).write_text(config_file(objects, key))
        self.tmp = tmp_path
        self.processes = processes
        self.servers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        self.sentinels = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.password, self.sentinel_password = "server-pass", "sentinel-pass"

    def configure(self, mode: str, announce: str, config_dir: Path) -> str:
        env = {
            "PATH": "/usr/bin:/bin",
            "ANNOUNCE": announce,
            "REDIS_NODES": " ".join(self.servers),
            "SENTINEL_NODES": " ".join(self.sentinels),
            "MASTER_NAME": self.MASTER,
            "QUORUM": "2",
            "REDIS_PASSWORD": self.password,
            "SENTINEL_PASSWORD": self.sentinel_password,
            "CONFIG_DIR": str(config_dir),
            "DATA_DIR": str(config_dir.parent / "data"),
            "TEMPLATE_DIR": str(self.templates),
        }
        done = subprocess.run(
            ["sh", str(self.templates / "configure.sh"), mode],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start_server(self, n: int) -> str:
        config = self.tmp / f"redis-{n}" / "config"
        (config.parent / "data").mkdir(parents=True, exist_ok=True)
        said = self.configure("redis", self.servers[n], config)
        self.processes.start(f"redis-{n}", "redis-server", str(config / "redis.conf"))
        server = self.server(n)
        wait_for(f"server {n} answers", lambda: bool(server.ping()))
        return said

    def start_sentinel(self, n: int) -> str:
        config = self.tmp / f"sentinel-{n}" / "config"
        said = self.configure("sentinel", self.sentinels[n], config)
        self.processes.start(f"sentinel-{n}", "redis-sentinel", str(config / "sentinel.conf"))
        sentinel = self.sentinel(n)
        wait_for(f"sentinel {n} answers", lambda: bool(sentinel.ping()))
        return said

    def server(self, n: int) -> Redis:
        return client(int(self.servers[n].rsplit(":", 1)[1]), self.password)

    def sentinel(self, n: int) -> Redis:
        return client(int(self.sentinels[n].rsplit(":", 1)[1]), self.sentinel_password)

    def primary_by(self, n: int) -> str:
        answer: Any = self.sentinel(n).sentinel_get_master_addr_by_name(self.MASTER)
        host, port = answer
        return f"{host}:{port}"

    def known(self, n: int) -> tuple[int, int]:
        """(replicas, other sentinels) sentinel n knows of."""
        master: Any = self.sentinel(n).sentinel_master(self.MASTER)
        return int(master["num-slaves"]), int(master["num-other-sentinels"])

    def role(self, n: int) -> str:
        answer: Any = self.server(n).execute_command("ROLE")  # type: ignore[no-untyped-call]
        return str(answer[0])

    def fail_over(self) -> None:
        """SENTINEL FAILOVER: the replica becomes the primary without waiting for a vote."""
        assert self.sentinel(0).sentinel_failover(self.MASTER)


@pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-sentinel")),
    reason="redis-server and redis-sentinel (make test installs them)",
)
def test_configure_sh_sets_up_follows_a_failover_and_restarts_in_place(tmp_path: Path) -> None:
    with Processes(tmp_path) as processes:
        redis = SentinelSet(tmp_path, processes)
        # A new installation: nobody answers, so the first server is the primary.
        assert "the first server is" in redis.start_server(0)
        assert "is a primary" in redis.start_server(1)
        for n in range(3):
            redis.start_sentinel(n)
        wait_for(
            "the replica is in sync",
            lambda: redis.server(1).info("replication")["master_link_status"] == "up",
        )
        wait_for(
            "the sentinels know each other and the replica",
            lambda: all(redis.known(n) == (1, 2) for n in range(3)),
        )
        assert {redis.primary_by(n) for n in range(3)} == {redis.servers[0]}
        redis.server(0).set("alertpilot:before", "1")

        # A failover promotes the replica; the old primary, restarted, follows it.
        redis.fail_over()
        wait_for(
            "every sentinel names the new primary",
            lambda: {redis.primary_by(n) for n in range(3)} == {redis.servers[1]},
        )
        wait_for("server 1 is the primary", lambda: redis.role(1) == "master")
        processes.stop("redis-0")
        assert f"names the primary: {redis.servers[1]}" in redis.start_server(0)
        assert redis.role(0) == "slave"
        wait_for(
            "server 0 replicates server 1", lambda: redis.server(0).get("alertpilot:before") == "1"
        )

        # A restarted sentinel watches the new primary, and the others count it once.
        processes.stop("sentinel-1")
        assert f"names the primary: {redis.servers[1]}" in redis.start_sentinel(1)
        assert redis.primary_by(1) == redis.servers[1]
        wait_for("all know all again", lambda: all(redis.known(n) == (1, 2) for n in range(3)))
        time.sleep(2.5)  # a second id for sentinel 1 would come with its next hello (2 s)
        assert [redis.known(n) for n in range(3)] == [(1, 2)] * 3


def test_configure_sh_refuses_a_password_it_cannot_quote(tmp_path: Path) -> None:
    with Processes(tmp_path) as processes:
        redis = SentinelSet(tmp_path, processes)
        redis.password = 'quote"d'
        with pytest.raises(AssertionError, match="a password may hold only"):
            redis.configure("redis", redis.servers[0], tmp_path / "config")
