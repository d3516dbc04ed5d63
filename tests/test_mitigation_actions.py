"""rollback, rate_limit by manifest, the attempt cap's handoff and the label-selector allowlist.

Against the stand-in Kubernetes API through the official client, the guardrails and the real
job dispatch; pages and chat go to the PagerDuty and Slack stand-ins.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from kubernetes import client, config

from tests.conftest import ADMIN, REPO, due, fetch, post, run_jobs, timeline, write_policy
from tests.support.kube_standin import KubeStandIn
from tests.support.mitigation import MitigationBench, entries, latency, resolved, route
from tests.support.rbac import allows, granted, kustomize
from tests.support.rbac import calls as rbac_calls
from webhook import rbac
from workers.config import Settings
from workers.handlers import build_handlers
from workers.jobs.dispatch import execute
from workers.policy import PolicyError, load_policy
from workers.policy.manifests import MANIFEST_KINDS


def image(kube: KubeStandIn) -> str:
    spec = kube.deployment("production", "canary")["spec"]["template"]["spec"]
    return str(spec["containers"][0]["image"])


def overlay_rules() -> list[dict[str, Any]]:
    """What deploy/targets/production, rendered by `kubectl kustomize`, grants alertpilot's
    ServiceAccount (alertpilot/alertpilot) in production: the mitigation-target component."""
    rules = granted(kustomize(REPO / "deploy" / "targets" / "production"), "production")
    assert rules, "deploy/targets/production grants alertpilot's ServiceAccount nothing"
    return rules


# rollback -------------------------------------------------------------------------------------


def canary(kube: KubeStandIn, *, current_age: timedelta) -> None:
    """production/canary at revision 2 (canary:1, `current_age` old) after revision 1."""
    kube.add_deployment("production", "canary", replicas=4, revision=2)
    now = datetime.now(UTC)

    def tpl(version: str) -> dict[str, Any]:
        spec = {"containers": [{"name": "canary", "image": f"registry.example/canary:{version}"}]}
        return {"metadata": {"labels": {"app": "canary"}, "annotations": {}}, "spec": spec}

    kube.add_replicaset(
        "production", "canary-aaaa000001", "canary", 1, tpl("0"), now - timedelta(days=3)
    )
    kube.add_replicaset("production", "canary-aaaa000002", "canary", 2, tpl("1"), now - current_age)


def test_rollback_proposes_the_exact_change_and_rolls_back_once_approved(
    mitigation: MitigationBench,
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    canary(kube, current_age=timedelta(minutes=10))
    app = mitigation.app(route("[rollback]"), allow=ALLOW_CANARY)
    (incident_id,) = post(app, latency("canary")).json["incidents"]
    run_jobs(queue)
    (proposed,) = entries(app, incident_id, "rollback")
    assert proposed["kind"] == "proposed"
    assert (
        "rollback of production/canary from revision 2 (registry.example/canary:1) "
        "to revision 1 (registry.example/canary:0)"
    ) in proposed["message"]
    assert all(verb in ("get", "list") for _, _, verb in kube.calls)  # read, nothing changed
    assert image(kube) == "registry.example/canary:1"

    assert (
        app.post(f"/api/v1/actions/{proposed['proposal']}/approve", headers=ADMIN).status_code
        == 202
    )
    run_jobs(queue)
    assert image(kube) == "registry.example/canary:0"
    deployment = kube.deployment("production", "canary")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    patches = [r for r in kube.requests if r.method == "PATCH"]
    assert len(patches) == 1 and patches[0].content_type == "application/json-patch+json"
    assert patches[0].body[0] == {
        "op": "test",
        "path": "/metadata/annotations/deployment.kubernetes.io~1revision",
        "value": "2",
    }
    done = entries(app, incident_id, "rollback")[-1]
    assert done["kind"] == "succeeded" and done["message"].startswith(
        "rolled back production/canary from revision 2"
    )


ALLOW_CANARY = {"namespaces": ["production"], "workloads": ["api", "canary"]}


def test_rollback_leaves_a_release_older_than_changed_within_alone(
    mitigation: MitigationBench,
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    canary(kube, current_age=timedelta(hours=3))
    actions = "[{rollback: {approval: auto, changed_within: 1h}}]"
    app = mitigation.app(route(actions), allow=ALLOW_CANARY)
    (incident_id,) = post(app, latency("canary")).json["incidents"]
    run_jobs(queue)
    (skipped,) = entries(app, incident_id, "rollback")
    assert skipped["kind"] == "skipped"
    assert "revision 2 rolled out 3h00m ago, not within 1h: no rollback" in skipped["message"]
    assert image(kube) == "registry.example/canary:1"
    assert [c for c in kube.calls if c[2] == "patch"] == []


def test_an_approved_rollback_does_nothing_after_a_newer_rollout(
    mitigation: MitigationBench,
) -> None:
    kube, queue, tmp_path = mitigation.kube, mitigation.queue, mitigation.tmp_path
    canary(kube, current_age=timedelta(minutes=10))
    app = mitigation.app(route("[rollback]"), allow=ALLOW_CANARY)
    (incident_id,) = post(app, latency("canary")).json["incidents"]
    run_jobs(queue)
    (proposed,) = entries(app, incident_id, "rollback")
    # Meanwhile a person ships a fix (revision 3).
    api = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
    fix = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "canary", "image": "registry.example/canary:2"}]}
            }
        }
    }
    client.AppsV1Api(api).patch_namespaced_deployment("canary", "production", fix)
    app.post(f"/api/v1/actions/{proposed['proposal']}/approve", headers=ADMIN)
    run_jobs(queue)
    assert image(kube) == "registry.example/canary:2"
    blocked = entries(app, incident_id, "rollback")[-1]
    assert blocked["kind"] == "blocked"
    assert blocked["message"] == (
        "production/canary would now go from revision 3 (registry.example/canary:2) to "
        "2 (registry.example/canary:1), not from 2 (registry.example/canary:1) "
        "to 1 (registry.example/canary:0) as approved; nothing done"
    )


# rate_limit by manifest ----------------------------------------------------------------------

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-rate-limit
  labels: {app: api}
data:
  limit-rps: "10"
  limit-burst: "20"
"""
INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
  annotations:
    nginx.ingress.kubernetes.io/limit-rps: "10"
    nginx.ingress.kubernetes.io/limit-connections: "5"
"""
ALLOW_MANIFESTS = {"namespaces": ["production"], "workloads": ["api", "api-rate-limit"]}


def manifest_app(mitigation: MitigationBench, manifest: str) -> FlaskClient:
    return mitigation.app(
        route("[{rate_limit: {apply: rate-limit-strict}}]"),
        manifests={"rate-limit-strict": manifest},
        allow=ALLOW_MANIFESTS,
        stabilisation="1s",
    )


def test_apply_creates_the_manifest_by_server_side_apply_and_deletes_it_after_resolve(
    mitigation: MitigationBench,
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = manifest_app(mitigation, CONFIGMAP)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    made = kube.object("", "configmaps", "production", "api-rate-limit")
    assert made is not None and made["data"] == {"limit-rps": "10", "limit-burst": "20"}
    assert [m["manager"] for m in made["metadata"]["managedFields"]] == ["alertpilot"]
    (applied,) = [r for r in kube.requests if r.method == "PATCH"]
    assert applied.content_type == "application/apply-patch+yaml"
    assert (applied.query["fieldManager"], applied.query["force"]) == ("alertpilot", "true")
    (entry,) = entries(app, incident_id, "rate_limit")
    assert entry["message"] == (
        "applied rate-limit-strict (ConfigMap production/api-rate-limit, server-side apply)"
    )

    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 1.1)
    assert kube.object("", "configmaps", "production", "api-rate-limit") is None
    assert ("", "configmaps", "delete") in kube.calls
    assert entries(app, incident_id, "rate_limit")[-1]["message"] == (
        "deleted configmap production/api-rate-limit, which the rate limit had created"
    )


def test_apply_over_an_existing_ingress_restores_what_it_replaced(
    mitigation: MitigationBench,
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    before = {"team": "api", "nginx.ingress.kubernetes.io/limit-rps": "100"}
    kube.add_ingress("production", "api", annotations=before)
    app = manifest_app(mitigation, INGRESS)
    post(app, latency())
    run_jobs(queue)
    annotations = kube.ingress("production", "api")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/limit-rps"] == "10"
    assert annotations["nginx.ingress.kubernetes.io/limit-connections"] == "5"
    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 1.1)
    assert kube.ingress("production", "api")["metadata"]["annotations"] == before


def test_apply_revert_leaves_an_object_a_person_changed_since(mitigation: MitigationBench) -> None:
    kube, queue, tmp_path = mitigation.kube, mitigation.queue, mitigation.tmp_path
    app = manifest_app(mitigation, CONFIGMAP)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    api = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
    client.CoreV1Api(api).patch_namespaced_config_map(
        "api-rate-limit", "production", {"data": {"limit-rps": "50"}}
    )
    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 1.1)
    kept = kube.object("", "configmaps", "production", "api-rate-limit")
    assert kept is not None and kept["data"]["limit-rps"] == "50"
    last = entries(app, incident_id, "rate_limit")[-1]
    assert last["kind"] == "skipped" and "changed since" in last["message"]


# the attempt cap hands the incident to a person ----------------------------------------------


def test_after_the_attempt_cap_a_person_is_paged_and_told_in_chat_instead_of_a_third_try(
    mitigation: MitigationBench, vendors: Any
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    pd, _, chat = vendors
    actions = "[page, notify, {scale_up: {by: 2, max_replicas: 20}}]"
    app = mitigation.app(route(actions), cooldown="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)  # attempt 1: 4 -> 6
    due(queue, 2.2)  # still firing after the cooldown: attempt 2, 6 -> 8
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    due(queue, 2.2)  # attempt 3 is refused: the cap hands the incident over
    due(queue, 2.2)  # and nothing follows
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    assert kube.calls.count(("apps", "deployments/scale", "update")) == 2

    scale = entries(app, incident_id, "scale_up")
    assert [e["kind"] for e in scale] == ["succeeded", "succeeded", "blocked"]
    assert scale[-1]["message"] == (
        "scale_up was tried 2 times for this incident: a person decides now"
    )
    assert scale[-1]["handed_off"] == ["page", "notify"]
    triggers = pd.events("trigger")
    assert len(triggers) == 2 and {t["dedup_key"] for t in triggers} == {incident_id}
    note = triggers[-1]["payload"]
    assert note["summary"].endswith(": a person is needed")
    assert note["custom_details"]["alertpilot_note"] == scale[-1]["message"]
    handoff = [m.body["text"] for m in chat.messages if "A person is needed" in m.body["text"]]
    assert len(handoff) == 1 and scale[-1]["message"] in handoff[0]


def test_no_follow_up_attempt_after_the_incident_resolved(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app(cooldown="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    post(app, resolved(latency()))
    run_jobs(queue)
    due(queue, 2.2)
    assert kube.calls.count(("apps", "deployments/scale", "update")) == 1
    follow_up = entries(app, incident_id, "scale_up")[-1]
    assert follow_up["kind"] == "skipped" and "resolved" in follow_up["message"]


# allowlist by label selector -----------------------------------------------------------------


def test_a_label_selector_allows_labelled_workloads_only(mitigation: MitigationBench) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    kube.add_deployment(
        "production",
        "search",
        replicas=3,
        labels={"app": "search", "alertpilot.io/mitigate": "true"},
    )
    allow = {"namespaces": ["production"], "labels": {"alertpilot.io/mitigate": "true"}}
    app = mitigation.app(allow=allow)
    post(app, latency("search"))
    (refused,) = post(app, latency("api")).json["incidents"]
    run_jobs(queue)
    assert kube.deployment("production", "search")["spec"]["replicas"] == 7
    assert kube.deployment("production", "api")["spec"]["replicas"] == 4
    (entry,) = entries(app, refused, "scale_up")
    assert (entry["kind"], entry["message"]) == (
        "blocked",
        "production/api is not in the mitigation allowlist",
    )


# RBAC: every call of every action ------------------------------------------------------------


EVERY_ACTION = (
    "[{scale_up: {by: 2}}, {rollout_restart: {approval: auto}},"
    " {rollback: {approval: auto}}, {rate_limit: {apply: rate-limit-strict}}]"
)
BY_LABEL = {
    "namespaces": ["production"],
    "labels": {"app": "api"},
    "workloads": ["canary", "api-rate-limit"],
}
BY_NAME = {"namespaces": ["production"], "workloads": ["api", "canary", "api-rate-limit"]}


def run_every_action(mitigation: MitigationBench, allow: dict[str, Any]) -> KubeStandIn:
    """Every action on production/api (with an HPA) and production/canary, then every revert,
    under the allowlist `allow`; the stand-in that recorded the calls."""
    kube, queue = mitigation.kube, mitigation.queue
    canary(kube, current_age=timedelta(minutes=5))
    kube.add_hpa("production", "api", target_deployment="api", min_replicas=4, max_replicas=30)
    kube.add_ingress("production", "canary")
    many = mitigation.app(
        route(EVERY_ACTION),
        manifests={"rate-limit-strict": CONFIGMAP},
        allow=allow,
        stabilisation="1s",
    )
    post(many, latency("api"))
    post(many, latency("canary"))
    run_jobs(queue)
    for deployment in ("api", "canary"):
        post(many, resolved(latency(deployment)))
    run_jobs(queue)
    due(queue, 1.1)
    verbs = {c[2] for c in kube.calls}
    assert {"get", "list", "patch", "create", "delete"} <= verbs, verbs
    return kube


def test_every_call_of_every_action_and_revert_is_allowed_by_the_role(
    mitigation: MitigationBench,
) -> None:
    """The Role that deploy/targets/production binds to alertpilot's ServiceAccount (a
    binding to another namespace's `alertpilot` grants nothing here)."""
    kube = run_every_action(mitigation, BY_LABEL)
    made = rbac_calls(kube)
    assert {call[:3] for call in made} == set(kube.calls)
    rules = overlay_rules()
    assert {call for call in made if not allows(rules, call)} == set()


@pytest.mark.parametrize(
    ("allow", "named"),
    [
        (BY_LABEL, {"configmaps"}),
        (BY_NAME, {"deployments", "deployments/scale", "ingresses", "configmaps"}),
    ],
    ids=["label-selector", "named-workloads"],
)
def test_every_call_names_an_object_the_generated_role_allows(
    mitigation: MitigationBench, allow: dict[str, Any], named: set[str]
) -> None:
    """`alertpilot deploy rbac` (webhook/rbac.py) on the same policy: resourceNames where the
    allowlist fixes them, and still every call of every action and revert allowed."""
    kube = run_every_action(mitigation, allow)
    policy = load_policy(mitigation.tmp_path / "policies")
    rules = granted(rbac.objects(policy, namespace="alertpilot"), "production")
    assert {r for rule in rules if "resourceNames" in rule for r in rule["resources"]} == named
    assert {call for call in rbac_calls(kube) if not allows(rules, call)} == set()


# policy validate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "manifest", "message"),
    [
        (
            "[{rate_limit: {apply: strict}}]",
            None,
            "10-routes.yaml:5:29: rate_limit: no manifest policies/manifests/strict.yaml",
        ),
        (
            "[{rate_limit: {}}]",
            None,
            "10-routes.yaml:5:16: rate_limit: set rps and/or connections, or apply: <manifest>",
        ),
        (
            "[{rate_limit: {apply: strict}}]",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
            "manifests/strict.yaml:2:1: kind: alertpilot applies ConfigMap (v1)",
        ),
        (
            "[{rollback: {approval: sometimes}}]",
            None,
            "10-routes.yaml:5:27: rollback: approval: Input should be 'required' or 'auto'",
        ),
        (
            "[{rollback: {changed_within: an hour}}]",
            None,
            "10-routes.yaml:5:27: rollback: changed_within: expected a duration like 30s",
        ),
        (
            "[{scale_up: {factor: lots}}]",
            None,
            "10-routes.yaml:5:27: scale_up: factor: Input should be a valid number",
        ),
    ],
    ids=["missing-manifest", "empty-rate-limit", "kind", "approval", "changed_within", "factor"],
)
def test_validate_points_at_mitigation_mistakes(
    tmp_path: Path, actions: str, manifest: str | None, message: str
) -> None:
    directory = write_policy(tmp_path / "p", route(actions))
    if manifest is not None:
        (directory / "manifests").mkdir()
        (directory / "manifests" / "strict.yaml").write_text(manifest)
    with pytest.raises(PolicyError) as raised:
        load_policy(directory)
    assert any(message in str(p) for p in raised.value.problems), raised.value.problems


def test_the_shipped_manifests_load_and_both_roles_let_alertpilot_apply_and_delete_them(
    policies_dir: Path,
) -> None:
    policy = load_policy(policies_dir)
    assert "rate-limit-strict" in policy.manifests
    generated = rbac.objects(policy, namespace="alertpilot")
    for manifest in policy.manifests.values():
        group, resource = MANIFEST_KINDS[(manifest["apiVersion"], manifest["kind"])]
        namespace = manifest["metadata"].get("namespace") or "production"
        name = manifest["metadata"]["name"]
        for rules in (overlay_rules(), granted(generated, namespace)):
            for verb in ("get", "patch", "create", "delete"):
                assert allows(rules, (group, resource, verb, name)), (resource, verb, name)


def test_a_mitigation_does_nothing_once_no_alert_of_its_open_incident_fires(
    mitigation: MitigationBench,
) -> None:
    """Truncated notifications keep an incident open with no firing alert it knows of."""
    kube, queue = mitigation.kube, mitigation.queue
    app = mitigation.app()
    (incident_id,) = post(app, latency()).json["incidents"]
    gone = resolved(latency())
    gone["truncatedAlerts"] = 2
    post(app, gone)
    run_jobs(queue)
    assert kube.calls == []
    (entry,) = entries(app, incident_id, "scale_up")
    assert (entry["kind"], entry["message"]) == (
        "skipped",
        "no alert of the incident fires any more; nothing done",
    )


def test_a_follow_up_that_can_scale_no_further_hands_the_incident_to_a_person(
    mitigation: MitigationBench, vendors: Any
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    _, _, chat = vendors
    actions = "[notify, {scale_up: {by: 2, max_replicas: 6}}]"
    app = mitigation.app(route(actions), cooldown="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)  # 4 -> 6, the route's cap
    due(queue, 2.2)  # still firing: the follow-up cannot help
    assert kube.deployment("production", "api")["spec"]["replicas"] == 6
    last = entries(app, incident_id, "scale_up")[-1]
    assert last["kind"] == "skipped" and last["handed_off"] == ["notify"]
    handoff = [m.body["text"] for m in chat.messages if "A person is needed" in m.body["text"]]
    assert len(handoff) == 1
    assert "scale_up stopped: production/api has 6 replicas; the caps allow no more" in handoff[0]


def test_a_rerun_after_a_crash_past_the_api_call_does_not_scale_twice(
    mitigation: MitigationBench,
) -> None:
    """The worker died after the scale landed, before anything else was written."""
    kube, redis, queue = mitigation.kube, mitigation.redis, mitigation.queue
    app = mitigation.app()
    (job_id,) = [j for j in post(app, latency()).json["jobs"] if "scale_up" in j]
    payload = fetch(queue, job_id).args[0]  # type: ignore[union-attr]
    queue.empty()
    handlers = build_handlers(Settings.from_env(os.environ), redis, "aptest:", queue)
    assert execute(redis, payload, handlers, job_id=job_id).outcome == "succeeded"
    kept = f"aptest:intent:{job_id}"
    for key in redis.scan_iter("aptest:*"):  # all bookkeeping after the call is lost
        name = key.decode()
        if name != kept and any(
            p in name for p in ("effect", "attempts", "cooldown", "mitigation", "budget")
        ):
            redis.delete(key)
    again = execute(redis, payload, handlers, job_id=job_id)
    assert again.outcome == "succeeded"
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    assert kube.calls.count(("apps", "deployments/scale", "update")) == 1
    record = redis.hgetall(f"aptest:incident:{payload['incident_id']}:mitigation:scale_up")
    assert (record[b"before"], record[b"after"]) == (b"4", b"8")


def test_a_conflicting_write_is_retried_on_a_fresh_read(mitigation: MitigationBench) -> None:
    kube, redis, queue = mitigation.kube, mitigation.redis, mitigation.queue
    app = mitigation.app()
    (job_id,) = [j for j in post(app, latency()).json["jobs"] if "scale_up" in j]
    payload = fetch(queue, job_id).args[0]  # type: ignore[union-attr]
    queue.empty()
    handlers = build_handlers(Settings.from_env(os.environ), redis, "aptest:", queue)
    kube.fail_next("update", "deployments/scale", 409)
    first = execute(redis, payload, handlers, job_id=job_id)
    assert first.outcome == "retried" and "409" in first.message
    assert kube.deployment("production", "api")["spec"]["replicas"] == 4
    assert execute(redis, payload, handlers, job_id=job_id, attempt=1).outcome == "succeeded"
    assert kube.deployment("production", "api")["spec"]["replicas"] == 8
    assert kube.calls.count(("apps", "deployments/scale", "get")) == 2  # read again


@pytest.mark.parametrize(
    ("params", "guardrails", "replicas", "kind"),
    [
        ("{to: 100}", {"max_replicas": 10}, 10, "succeeded"),  # the policy's ceiling
        ("{factor: 10}", {"max_factor": 3}, 12, "succeeded"),  # 3x the current 4
        ("{by: 30, max_replicas: 9}", {}, 9, "succeeded"),  # the route's cap
        ("{to: 2}", {}, 4, "skipped"),  # never scales down
    ],
    ids=["ceiling", "max_factor", "route-cap", "never-down"],
)
def test_scale_up_obeys_every_cap(
    mitigation: MitigationBench, params: str, guardrails: dict[str, Any], replicas: int, kind: str
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    actions = f"[{{scale_up: {params}}}]"
    app = mitigation.app(route(actions), **guardrails)
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert kube.deployment("production", "api")["spec"]["replicas"] == replicas
    (entry,) = entries(app, incident_id, "scale_up")
    assert entry["kind"] == kind
    writes = [c for c in kube.calls if c[2] not in ("get", "list")]
    assert len(writes) == (1 if kind == "succeeded" else 0)


@pytest.mark.parametrize("where", ["policy", "route"])
def test_dry_run_mitigations_describe_and_call_nothing(
    mitigation: MitigationBench, where: str
) -> None:
    kube, queue = mitigation.kube, mitigation.queue
    routes = route(
        "[{scale_up: {by: 4}}, {rollback: {approval: auto}}, {rate_limit: {apply: strict}}]"
    )
    if where == "route":
        routes = routes.replace("    severity: SEV2\n", "    severity: SEV2\n    dry_run: true\n")
    app = mitigation.app(
        routes,
        manifests={"strict": CONFIGMAP},
        allow=ALLOW_MANIFESTS,
        dry_run=where == "policy",
    )
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(queue)
    assert kube.calls == []
    kinds = {e["action"]: e["kind"] for e in timeline(app, incident_id) if e.get("action")}
    assert kinds == {"scale_up": "dry_run", "rollback": "dry_run", "rate_limit": "dry_run"}
    (scale,) = entries(app, incident_id, "scale_up")
    assert scale["message"] == "would apply scale_up {'by': 4} to production/api"
    (limit,) = entries(app, incident_id, "rate_limit")
    if where == "policy":  # the worker resolved the manifest's object
        assert limit["message"].endswith("to production/api-rate-limit")
    assert limit["params"] == {"apply": "strict"}  # the manifest itself stays out
