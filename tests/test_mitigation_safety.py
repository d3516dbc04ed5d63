"""A mitigation acts only on the exact object that was decided or approved, under the policy
in force when it runs; a change the API server took is never applied again blindly."""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.conftest import ADMIN, due, post, run_jobs, write_policy
from tests.support.clock import AheadClock
from tests.support.mitigation import MitigationBench, entries, latency, resolved, route
from workers import guardrails
from workers.actions import Outcome
from workers.guardrails import Guard
from workers.incident import clock
from workers.incident.errors import PermanentError, TransientError
from workers.incident.keys import Keys
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.kube import Kubernetes, api_client
from workers.mitigations.common import Cluster, act
from workers.mitigations.record import record, recorded, remembered
from workers.policy import PolicyError, load_policy

RESTART = route("[{rollout_restart: {approval: required}}]")
API_PATH = "/apis/apps/v1/namespaces/production/deployments/"


def _joined(first: dict[str, Any], fingerprint: str, deployment: str) -> dict[str, Any]:
    """`first`'s group, now also with an alert on `deployment` whose fingerprint sorts first."""
    doc = copy.deepcopy(first)
    other = copy.deepcopy(latency(deployment)["alerts"][0])
    other["fingerprint"] = fingerprint
    doc["alerts"] = [other, *doc["alerts"]]
    return doc


def _propose(mitigation: MitigationBench, routes: str = RESTART) -> tuple[Any, str, str]:
    app = mitigation.app(routes)
    canary = latency("api-canary")
    (incident_id,) = post(app, canary).json["incidents"]
    run_jobs(mitigation.queue)
    (proposed,) = entries(app, incident_id, "rollout_restart")
    assert proposed["kind"] == "proposed"
    assert "rollout restart of production/api-canary" in proposed["message"]
    return app, incident_id, str(proposed["proposal"])


def _approve_and_run(
    mitigation: MitigationBench, app: Any, incident_id: str, proposal: str
) -> dict[str, Any]:
    """Approve the proposal through the API, run the job; its timeline entry."""
    assert app.post(f"/api/v1/actions/{proposal}/approve", headers=ADMIN).status_code == 202
    run_jobs(mitigation.queue)
    entry: dict[str, Any] = entries(app, incident_id, "rollout_restart")[-1]
    return entry


def _patches(mitigation: MitigationBench) -> list[str]:
    return [r.path for r in mitigation.kube.requests if r.method == "PATCH"]


def test_an_approved_restart_acts_on_the_proposed_workload_after_another_alert_joins(
    mitigation: MitigationBench,
) -> None:
    app, incident_id, proposal = _propose(mitigation)
    joined = _joined(latency("api-canary"), "0000000000000001", "api")
    assert post(app, joined).json["incidents"] == [incident_id]

    done = _approve_and_run(mitigation, app, incident_id, proposal)

    assert _patches(mitigation) == [API_PATH + "api-canary"]
    assert done["message"] == "restarted production/api-canary (rollout restart)"


def test_an_approval_is_refused_once_no_firing_alert_points_at_its_workload(
    mitigation: MitigationBench,
) -> None:
    app, incident_id, proposal = _propose(mitigation)
    canary = latency("api-canary")
    both = _joined(canary, "0000000000000001", "api")
    post(app, both)
    gone = copy.deepcopy(both)
    gone["alerts"][1] = resolved(canary)["alerts"][0]
    post(app, gone)  # the canary's alert resolved; api's still fires

    refused = _approve_and_run(mitigation, app, incident_id, proposal)

    assert _patches(mitigation) == []
    assert refused["kind"] == "blocked"
    assert refused["message"].startswith("approved for production/api-canary, but no firing alert")


def test_an_approved_restart_obeys_dry_run_set_in_the_policy_since(
    mitigation: MitigationBench,
) -> None:
    app, incident_id, proposal = _propose(mitigation)
    mitigation.app(RESTART, dry_run=True)  # the team tightens the policy before approving

    outcome = _approve_and_run(mitigation, app, incident_id, proposal)

    assert _patches(mitigation) == []
    assert outcome["kind"] == "dry_run" and "production/api-canary" in outcome["message"]


def test_an_approved_restart_obeys_an_allowlist_narrowed_since(
    mitigation: MitigationBench,
) -> None:
    app, incident_id, proposal = _propose(mitigation)
    mitigation.app(RESTART, allow={"namespaces": ["production"], "workloads": ["api"]})

    outcome = _approve_and_run(mitigation, app, incident_id, proposal)

    assert _patches(mitigation) == []
    assert outcome["kind"] == "blocked" and "allowlist" in outcome["message"]


def test_a_queued_scale_up_does_nothing_once_its_route_no_longer_has_it(
    mitigation: MitigationBench,
) -> None:
    app = mitigation.app()
    (incident_id,) = post(app, latency()).json["incidents"]
    mitigation.app(route("[notify]"))  # scale_up taken out before the worker ran

    run_jobs(mitigation.queue)

    assert [c for c in mitigation.kube.calls if c[2] not in ("get", "list")] == []
    (outcome,) = entries(app, incident_id, "scale_up")
    assert outcome["kind"] == "skipped"
    assert "route 'api-latency' has no scale_up in the policy in force" in outcome["message"]


def test_a_queued_scale_up_obeys_a_ceiling_lowered_since(mitigation: MitigationBench) -> None:
    app = mitigation.app()  # scale_up by 4, max_replicas 20: 4 -> 8 when queued
    post(app, latency())
    mitigation.app(max_replicas=5)

    run_jobs(mitigation.queue)

    assert mitigation.kube.deployment("production", "api")["spec"]["replicas"] == 5


def test_an_inline_manifest_in_route_parameters_is_a_validate_error(tmp_path: Path) -> None:
    actions = (
        "[{rate_limit: {rps: 10, manifest: {kind: ConfigMap, "
        'metadata: {uid: x, resourceVersion: "1"}}}}]'
    )
    directory = write_policy(tmp_path / "p", route(actions))
    with pytest.raises(PolicyError) as raised:
        load_policy(directory)
    (problem,) = raised.value.problems
    assert str(problem).endswith(
        "10-routes.yaml:5:38: rate_limit: manifest: unknown parameter 'manifest'"
    )


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ("[{scale_up: {by: 2, to: 8}}]", "scale_up: takes one of by, to and factor"),
        ("[{scale_up: {by: true}}]", "scale_up: by: Input should be a valid integer"),
        ("[{rollback: {approval: later}}]", "rollback: approval: Input should be 'required'"),
        ("[{page: {routing_key: R0UT1NG}}]", "page: routing_key: unknown parameter"),
        ("[{rate_limit: {rps: 10, apply: strict}}]", "rate_limit: either apply"),
    ],
    ids=["two-amounts", "bool-as-int", "approval", "secret-inline", "two-forms"],
)
def test_action_parameters_are_typed_per_action(tmp_path: Path, actions: str, message: str) -> None:
    directory = write_policy(tmp_path / "p", route(actions))
    with pytest.raises(PolicyError) as raised:
        load_policy(directory)
    assert any(message in str(p) for p in raised.value.problems), raised.value.problems


def test_validate_warns_of_a_fixed_namespace_mitigations_may_never_touch(tmp_path: Path) -> None:
    directory = write_policy(tmp_path / "p", route("[{scale_up: {namespace: staging}}]"))
    (directory / "20-mitigations.yaml").write_text(
        "mitigations: {allow: {namespaces: [production]}}\n"
    )
    (directory / "manifests").mkdir()
    (directory / "manifests" / "strict.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: limits, namespace: kube-system}\n"
    )
    warnings = [str(p) for p in load_policy(directory).warnings]
    assert any(
        "10-routes.yaml:5:27: warning: scale_up: namespace 'staging' is not in "
        "mitigations.allow.namespaces (production)" in w
        for w in warnings
    ), warnings
    assert any(
        "manifests/strict.yaml:3:26: warning: metadata.namespace 'kube-system' is not in" in w
        for w in warnings
    ), warnings


def _cluster(mitigation: MitigationBench) -> tuple[Cluster, Kubernetes]:
    kube = Kubernetes(api_client(os.environ["KUBECONFIG"]))
    cluster = Cluster(mitigation.redis, {}, lambda: kube, mitigation.queue, lambda: None)  # type: ignore[arg-type,return-value]
    return cluster, kube


def _incident() -> Incident:
    now = "2026-12-05T00:00:00Z"
    return Incident("inc1", "k", "api-latency", "SEV2", "open", now, None, now, "t", "g", "r", "")


def _budget(redis: Redis) -> int:
    return int(redis.get(Keys("aptest:").budget(int(time.time() // 3600))) or 0)


def test_a_failure_after_the_api_server_took_the_change_counts_and_is_final(
    mitigation: MitigationBench,
) -> None:
    cluster, kube = _cluster(mitigation)
    request = ActionRequest("aptest:", "inc1", "rollout_restart", "declared", "SEV2", job_id="j1")
    guard = Guard(dry_run=False, namespaces=("production",))

    def change() -> Outcome:
        kube.restart("production", "api", "2026-12-05T00:00:00Z")
        raise KeyError("kind")  # a bug after the write landed

    with pytest.raises(PermanentError, match="counted as an attempt and not applied again"):
        act(request, _incident(), cluster, guard, ("production", "api"), change)

    keys, redis = Keys("aptest:"), mitigation.redis
    assert redis.get(keys.attempts("inc1", "rollout_restart")) == b"1"
    assert redis.exists(keys.cooldown("rollout_restart", "production", "api"))
    assert _budget(redis) == 1  # spent, not given back


def test_a_failure_before_any_write_gives_the_budget_back_and_counts_nothing(
    mitigation: MitigationBench,
) -> None:
    cluster, _ = _cluster(mitigation)
    request = ActionRequest("aptest:", "inc1", "rollout_restart", "declared", "SEV2", job_id="j1")
    guard = Guard(dry_run=False, namespaces=("production",))

    def change() -> Outcome:
        raise KeyError("kind")

    with pytest.raises(KeyError):
        act(request, _incident(), cluster, guard, ("production", "api"), change)

    keys, redis = Keys("aptest:"), mitigation.redis
    assert redis.get(keys.attempts("inc1", "rollout_restart")) is None
    assert _budget(redis) == 0


@pytest.mark.parametrize(("status", "kept"), [(503, "8"), (409, "8"), (None, "12")])
def test_a_refused_write_leaves_the_revert_record_of_the_last_change_that_landed(
    mitigation: MitigationBench, status: int | None, kept: str
) -> None:
    """Attempt 1 raised 4 to 8; attempt 2 (to 12) is refused: the revert must still find
    8, the count the object really holds, or it would leave the workload scaled up. A
    timeout (no status) may have landed: then the record says 12."""
    cluster, _ = _cluster(mitigation)
    request = ActionRequest("aptest:", "inc1", "scale_up", "declared", "SEV2", job_id="j2")
    incident = _incident()
    record(cluster, request, incident, {"object": "scale", "before": "4", "after": "8"})

    with (
        pytest.raises(TransientError),
        remembered(cluster, request, incident, {"object": "scale", "before": "4", "after": "12"}),
    ):
        raise TransientError("Kubernetes answered something", status=status)

    assert recorded(cluster, request, incident)["after"] == kept


def test_a_route_may_not_be_named_like_the_default_route(tmp_path: Path) -> None:
    routes = "routes:\n  - name: default\n    matchers: ['a=\"b\"']\n    severity: SEV1\n"
    with pytest.raises(PolicyError) as raised:
        load_policy(write_policy(tmp_path / "p", routes))
    assert any("route name 'default'" in str(p) for p in raised.value.problems)


SCALE_BY_2 = route("[{scale_up: {by: 2, max_replicas: 20}}]")


def _replicas(mitigation: MitigationBench, name: str) -> int:
    return int(mitigation.kube.deployment("production", name)["spec"]["replicas"])


def _with_alert_on(doc: dict[str, Any], deployment: str, fingerprint: str) -> dict[str, Any]:
    """`doc`'s group, now also with a firing alert on `deployment` sorting first."""
    joined = copy.deepcopy(doc)
    other = copy.deepcopy(latency(deployment)["alerts"][0])
    other["fingerprint"] = fingerprint
    joined["alerts"] = [other, *joined["alerts"]]
    return joined


def _wait_for_lock_then_pause(mitigation: MitigationBench, seconds: float, run: Any) -> None:
    """Hold production/api's target lock while `run` (a worker, in this thread: RQ's
    worker installs signal handlers) starts and waits for it; `seconds` later throw the
    kill switch, then let go of the lock."""
    keys = Keys("aptest:")
    lock = mitigation.redis.lock(
        keys.target_lock("production", "api"), timeout=60, thread_local=False
    )
    assert lock.acquire(blocking=False)

    def operator() -> None:
        time.sleep(seconds)
        mitigation.redis.set(keys.mitigations_paused, "operator: stop everything")
        lock.release()

    thread = threading.Thread(target=operator)
    thread.start()
    run()
    thread.join(timeout=60)


def test_a_scale_up_follow_up_does_not_switch_workloads_and_the_revert_restores_both(
    mitigation: MitigationBench,
) -> None:
    """Attempt 1 scales production/api-canary 2 -> 4. Alert `api` joins the group (its
    fingerprint sorts first). The follow-up re-chooses its target from the firing alerts
    and scales production/api 4 -> 6, and because the incident has one revert record per
    action, it overwrites the canary's; since api's 4 equals the canary's recorded
    `after`, it even keeps the canary's `before` (2). The revert then sets api to 2
    replicas (half of what it had before alertpilot touched it) and leaves the canary
    scaled up for good."""
    app = mitigation.app(SCALE_BY_2, cooldown="1s", stabilisation="1s")
    canary = latency("api-canary")
    (incident_id,) = post(app, canary).json["incidents"]
    run_jobs(mitigation.queue)
    assert _replicas(mitigation, "api-canary") == 4

    joined = _with_alert_on(canary, "api", "0000000000000001")
    assert post(app, joined).json["incidents"] == [incident_id]
    due(mitigation.queue, 2.5)  # the follow-up attempt

    post(app, resolved(joined))
    due(mitigation.queue, 2.5)  # the revert, after the stabilisation window

    assert (_replicas(mitigation, "api"), _replicas(mitigation, "api-canary")) == (4, 2), [
        e["message"] for e in entries(app, incident_id, "scale_up")
    ]


def test_a_queued_scale_up_follow_up_obeys_repeat_false_set_since(
    mitigation: MitigationBench,
) -> None:
    """`repeat: false` means one attempt. Attempt 1 queued attempt 2 (after the cooldown);
    the team then sets `repeat: false`. Attempt 2 reads the route's parameters in force but
    only uses `repeat` to decide on attempt 3, so it scales again: 6 -> 8."""
    app = mitigation.app(SCALE_BY_2, cooldown="1s")
    (incident_id,) = post(app, latency()).json["incidents"]
    run_jobs(mitigation.queue)
    assert _replicas(mitigation, "api") == 6

    mitigation.app(route("[{scale_up: {by: 2, max_replicas: 20, repeat: false}}]"), cooldown="1s")
    due(mitigation.queue, 2.5)

    assert _replicas(mitigation, "api") == 6, [
        e["message"] for e in entries(app, incident_id, "scale_up")
    ]


def test_a_revert_waiting_for_the_target_lock_obeys_the_kill_switch_thrown_meanwhile(
    mitigation: MitigationBench,
) -> None:
    """The revert checks the kill switch (`to_revert`) before it takes the target lock,
    and not again under it: thrown while the revert waits for the lock (up to 30s), the
    revert still writes to the deployment. A forward change re-checks it under the lock
    (`claim`); the revert should too ("while mitigations are paused the revert waits")."""
    app = mitigation.app(stabilisation="1s")
    doc = latency()
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(mitigation.queue)
    assert _replicas(mitigation, "api") == 8
    post(app, resolved(doc))

    _wait_for_lock_then_pause(mitigation, 3.0, lambda: due(mitigation.queue, 1.5))

    assert _replicas(mitigation, "api") == 8, [
        e["message"] for e in entries(app, incident_id, "scale_up")
    ]


def test_a_route_made_dry_run_does_not_strand_the_change_it_already_made(
    mitigation: MitigationBench,
) -> None:
    """scale_up raised production/api 4 -> 8 for real; the team then marks the route
    `dry_run: true` (the cautious edit). On resolve the revert reads the route in force,
    turns into a dry run ("would revert") and finishes: the record is kept, no job is
    left to put it back, and api stays at 8 for good. Deleting the route instead would
    have reverted (a revert "puts back what was done"), so the more cautious edit leaves
    the cluster worse off; the kill switch, by contrast, makes the revert wait."""
    app = mitigation.app(stabilisation="1s")
    doc = latency()
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(mitigation.queue)
    assert _replicas(mitigation, "api") == 8

    dry = """\
routes:
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    dry_run: true
    actions: [{scale_up: {by: 4, max_replicas: 20}}]
"""
    mitigation.app(dry, stabilisation="1s")
    post(app, resolved(doc))
    due(mitigation.queue, 2.5)

    assert _replicas(mitigation, "api") == 4, [
        (e["kind"], e["message"]) for e in entries(app, incident_id, "scale_up")
    ]


def test_a_scale_up_follow_up_does_not_act_for_real_once_the_incident_is_dry_run(
    mitigation: MitigationBench,
) -> None:
    """An incident escalated to a `dry_run: true` route is dry run for good ("sticky: a
    dry-run route's incident never acts for real", workers/incident/transitions.py). The scale_up
    follow-up queued before the escalation carries the job's old `dry_run: false` and the
    first route's name; the worker never looks at the incident's dry run, so it scales
    again for real: 6 -> 8."""
    routes = """\
routes:
  - name: canary-latency
    matchers: ['alertname="HighLatency"', 'deployment="api-canary"']
    severity: SEV1
    dry_run: true
    incident_key: "latency/{{ labels.namespace }}"
    actions: [notify]
  - name: api-latency
    matchers: ['alertname="HighLatency"']
    severity: SEV2
    incident_key: "latency/{{ labels.namespace }}"
    actions: [{scale_up: {by: 2, max_replicas: 20}}]
"""
    app = mitigation.app(routes, cooldown="1s")
    doc = latency()
    (incident_id,) = post(app, doc).json["incidents"]
    run_jobs(mitigation.queue)
    assert _replicas(mitigation, "api") == 6

    joined = copy.deepcopy(doc)
    canary = copy.deepcopy(latency("api-canary")["alerts"][0])
    joined["alerts"].append(canary)
    assert post(app, joined).json["incidents"] == [incident_id]
    incident = app.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN).json
    assert incident["severity"] == "SEV1"

    due(mitigation.queue, 2.5)  # the follow-up attempt

    assert _replicas(mitigation, "api") == 6, [
        (e["kind"], e["message"]) for e in entries(app, incident_id, "scale_up")
    ]


def test_a_rerun_after_a_crash_takes_no_second_budget_unit_and_a_refund_finds_its_hour(
    redis: Redis, ahead_clock: AheadClock
) -> None:
    """A work horse killed between the claim and the change leaves its unit taken; the
    crash retry (same job) took a second one, so one scale-up cost two units for up to
    two hours. A refund also went to the hour it ran in, not the one it claimed from."""
    keys = Keys("aptest:")
    guard = Guard(dry_run=False, namespaces=("production",), budget_per_hour=5)
    where = {"env": {}, "action": "scale_up", "namespace": "production", "name": "api"}
    hour = keys.budget(int(clock.timestamp() // 3600))
    assert guardrails.claim(redis, keys, guard, **where, job_id="inc-declared-scale_up") is None
    assert guardrails.claim(redis, keys, guard, **where, job_id="inc-declared-scale_up") is None
    assert int(redis.get(hour) or 0) == 1
    assert guardrails.claim(redis, keys, guard, **where, job_id="other-job") is None
    assert int(redis.get(hour) or 0) == 2

    ahead_clock.advance(3600)
    guardrails.refund(redis, keys, "inc-declared-scale_up")
    assert int(redis.get(hour) or 0) == 1
    assert redis.get(keys.budget(int(clock.timestamp() // 3600))) is None
    guardrails.refund(redis, keys, "inc-declared-scale_up")  # nothing left to give back
    assert int(redis.get(hour) or 0) == 1


def test_the_budget_still_refuses_past_its_limit_one_job_each(redis: Redis) -> None:
    keys = Keys("aptest:")
    guard = Guard(dry_run=False, namespaces=("production",), budget_per_hour=2)
    where = {"env": {}, "action": "scale_up", "namespace": "production", "name": "api"}
    assert guardrails.claim(redis, keys, guard, **where, job_id="a") is None
    assert guardrails.claim(redis, keys, guard, **where, job_id="b") is None
    refused = guardrails.claim(redis, keys, guard, **where, job_id="c")
    assert refused is not None and "budget" in refused.reason
    assert int(redis.get(keys.budget(int(clock.timestamp() // 3600))) or 0) == 2
