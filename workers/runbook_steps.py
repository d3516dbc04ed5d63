"""Running a runbook's read-only steps for an incident (a `RunbookRequest` job).

Each step runs under its own timeout and its outcome, good or bad, is one line of
the result: a Prometheus that answers 503, a hanging endpoint or a closed port is
a result that says so, never a failed job or incident. The steps' templates (a
query, a URL, a host) are rendered over the labels of the incident's first firing
alert in a sandbox; a template that does not render is that step's result too.
The policy in force when the job runs decides the steps (a runbook changed since
the incident was declared runs as it is now). The steps run side by side, so a run
takes as long as its slowest step (at most MAX_STEP_TIMEOUT_SECONDS plus the
Kubernetes client's timeout). The results go on the timeline, bounded in size.

The Kubernetes steps (`workload_status`, `rollout_history`) only get and list, and
only in the namespaces the policy's mitigations.allow.namespaces names: the
namespace comes from the alert's labels, which whoever writes the alerting rule
chooses.

The declared chat message waits for the first run (its "Current metrics"): it is
scheduled DECLARED_MESSAGE_WAIT seconds out, and this job releases it as soon as the
results are on the timeline (`RunbookRequest.release`). The page never waits.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from jinja2 import StrictUndefined, TemplateError
from redis import Redis
from rq import Queue
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from workers import approvals
from workers.config import Integrations
from workers.incident import clock, timeline
from workers.incident.durations import parse_duration
from workers.incident.errors import PermanentError, TransientError
from workers.incident.keys import Keys
from workers.incident.record import Incident, load_incident
from workers.jobs.contract import RunbookRequest, release
from workers.kube import Kubernetes
from workers.policy.problems import PolicyError
from workers.policy.runbooks import (
    HttpCheck,
    Promql,
    RolloutHistory,
    Step,
    TcpCheck,
    WorkloadStatus,
)
from workers.policy.store import in_force
from workers.prometheus import Prometheus
from workers.sandbox import Sandbox

log = logging.getLogger(__name__)

MAX_SUMMARY = 300
"""Characters of one step's line on the timeline."""
MAX_PARALLEL = 8
"""Steps of one run in flight at once."""
RUN_DEADLINE_SECONDS = 40
"""A run's results are written by then, whatever its steps do: 30 steps of the longest
timeout (30 s) would otherwise hold the job, and a message waiting for it, for minutes."""
TEMPLATES = Sandbox(autoescape=False, undefined=StrictUndefined)


@dataclass(frozen=True)
class StepResult:
    name: str
    type: str
    ok: bool
    summary: str
    value: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "ok": self.ok,
            "summary": self.summary[:MAX_SUMMARY],
            "value": self.value,
        }


@dataclass(frozen=True)
class Reach:
    """What the steps may read: Prometheus and the checks' endpoints (`integrations`),
    Kubernetes (built on first use), in the namespaces the policy allows."""

    integrations: Integrations
    kube: Callable[[], Kubernetes]
    namespaces: tuple[str, ...] = ()


def run_runbook(
    redis: Redis,
    queue: Queue,
    payload: dict[str, Any],
    integrations: Integrations,
    kube: Callable[[], Kubernetes],
    policies: Path,
) -> dict[str, Any]:
    request = RunbookRequest.from_json(payload)
    keys = Keys(request.prefix)
    incident = load_incident(redis, keys, request.incident_id)
    if incident is None:
        done: dict[str, Any] = {"outcome": "no incident"}
    else:
        done = run_for(
            redis, keys, incident, request.runbook, request.when, integrations, kube, policies
        )
    # Whatever happened, the chat message that waits for this run goes now: it shows the
    # values if there are any. A second release (a retried job) finds nothing to move.
    released = release(queue, request.release)
    return done | {"released": released}


def run_for(
    redis: Redis,
    keys: Keys,
    incident: Incident,
    name: str,
    when: str,
    integrations: Integrations,
    kube: Callable[[], Kubernetes],
    policies: Path,
) -> dict[str, Any]:
    """Run runbook `name` for the incident now; its results on the timeline."""
    try:
        policy = in_force(policies)
        runbook = policy.runbooks.get(name)
    except PolicyError:
        runbook = None
    if runbook is None:
        note = f"runbook {name}: not in the policy in force; nothing run"
        timeline.append(redis, keys, incident.id, timeline.entry("runbook", note))
        return {"outcome": "no runbook"}
    labels = _labels(incident)
    reach = Reach(integrations, kube, tuple(policy.guardrails.allow.namespaces))
    results = _with_proposals(_run_all(runbook.steps, labels, reach), redis, keys, incident)
    bad = sum(1 for r in results if not r.ok)
    message = f"runbook {name} ({when}): {len(results)} steps, {bad} not ok"
    entry = timeline.entry(
        "runbook", message, runbook=name, when=when, results=[r.to_json() for r in results]
    )
    timeline.append(redis, keys, incident.id, entry)
    return {"outcome": "ran", "steps": len(results), "not_ok": bad}


def _with_proposals(
    results: list[StepResult], redis: Redis, keys: Keys, incident: Incident
) -> list[StepResult]:
    """A recent rollout beside the rollback waiting for a person, when there is one."""
    if not any(r.type == "rollout_history" and not r.ok for r in results):
        return results
    waiting = [
        p
        for p in approvals.pending(redis, keys)
        if p.incident_id == incident.id and p.action == "rollback"
    ]
    if not waiting:
        return results
    tie = f"rollback proposed (alertpilot actions approve {waiting[0].id}); "  # first: kept
    return [
        replace(r, summary=tie + r.summary) if r.type == "rollout_history" and not r.ok else r
        for r in results
    ]


def route_runbook(incident: Incident, policies: Path) -> str | None:
    """The runbook the incident's route names in the policy in force, if any."""
    try:
        route = in_force(policies).route(incident.route)
    except PolicyError:
        return None
    return route.runbook if route is not None else None


def _labels(incident: Incident) -> dict[str, str]:
    """The labels the templates see: the first firing alert of the incident's route (the
    one that escalated it, say), else the first firing one, else the first of all."""
    alerts = sorted(incident.alerts.values(), key=lambda a: (a.starts_at, a.fingerprint))
    for chosen in (
        [a for a in alerts if a.status == "firing" and a.route == incident.route],
        [a for a in alerts if a.status == "firing"],
        alerts,
    ):
        if chosen:
            return dict(chosen[0].labels)
    return {}


def _run_all(steps: list[Step], labels: dict[str, str], reach: Reach) -> list[StepResult]:
    """Every step's result, side by side; a step still going at RUN_DEADLINE_SECONDS is
    a result that says so (its thread ends at its own timeout, in the background)."""
    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="runbook")
    try:
        futures = [pool.submit(_run, step, labels, reach) for step in steps]
        wait(futures, timeout=RUN_DEADLINE_SECONDS)
        return [_outcome(step, future) for step, future in zip(steps, futures, strict=True)]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _outcome(step: Step, future: Future[StepResult]) -> StepResult:
    if not future.done():
        message = f"not done within the run's {RUN_DEADLINE_SECONDS}s"
        return StepResult(step.name, step.type, False, message)
    failed = future.exception()
    if failed is not None:  # a defect here, not the step's: in the log in full
        log.error("runbook step %s failed", step.name, exc_info=failed)
        return StepResult(step.name, step.type, False, f"failed ({type(failed).__name__})")
    return future.result()


def _run(step: Step, labels: dict[str, str], reach: Reach) -> StepResult:
    runners: dict[type, Callable[[Any, dict[str, str], Reach], StepResult]] = {
        Promql: _promql,
        HttpCheck: _http,
        TcpCheck: _tcp,
        WorkloadStatus: _workload,
        RolloutHistory: _rollouts,
    }
    try:
        return runners[type(step)](step, labels, reach)
    except TemplateError as exc:
        return StepResult(step.name, step.type, False, f"template: {exc}")
    except (PermanentError, TransientError) as exc:
        return StepResult(step.name, step.type, False, str(exc))


def _http_target(url: str) -> tuple[str, int] | None:
    """(host, port) the HTTP client will connect to for `url`: urllib3's reading of the
    URL requests prepares; None unless the standard library reads the same (a backslash
    or an `@` where the two parsers differ would let a label pick the host)."""
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        return None
    try:
        prepared = str(requests.Request("GET", url).prepare().url)
        theirs, ours = parse_url(prepared), urlsplit(prepared)
        ports = (theirs.port, ours.port)
    except (requests.RequestException, LocationParseError, ValueError):
        return None
    host = (theirs.host or "").lower()
    if not host or host != (ours.hostname or "").lower() or ports[0] != ports[1]:
        return None
    return host, ports[0] or (443 if prepared.startswith("https:") else 80)


def _clip(text: str, size: int = 80) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def _render(template: str, labels: dict[str, str]) -> str:
    return TEMPLATES.from_string(template).render(labels=labels)


def _quoted(value: str) -> str:
    """A label value as the inside of a PromQL "..." string: it can never end the string
    it is put in and rewrite the query (a ' or ` that could end one of the other kinds
    is refused before: `_promql`)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return escaped.replace("\n", "\\n").replace("\r", "\\r")


def _promql(step: Promql, labels: dict[str, str], reach: Reach) -> StepResult:
    integrations = reach.integrations
    if not integrations.prometheus_url:
        return StepResult(step.name, step.type, False, "no Prometheus (ALERTPILOT_PROMETHEUS_URL)")
    prometheus = Prometheus(
        integrations.prometheus_url,
        token=integrations.prometheus_token,
        ca_bundle=integrations.ca_bundle,
    )
    for quote in ("'", "`"):  # only "..." strings take an escaped quote
        if quote in step.query and any(quote in v for v in labels.values()):
            message = f"a label holds a {quote} that the query's {quote}-strings cannot take"
            return StepResult(step.name, step.type, False, message)
    found = prometheus.query(_render(step.query, {k: _quoted(v) for k, v in labels.items()}))
    if not found.ok or found.value is None:
        return StepResult(step.name, step.type, False, found.error or "no value")
    value = found.value
    shown = f"{value:.4g}{(' ' + step.unit) if step.unit else ''}"
    if step.threshold is None:
        return StepResult(step.name, step.type, True, shown, value)
    bad = value > step.threshold if step.bad_when == "above" else value < step.threshold
    verdict = f"{'over' if step.bad_when == 'above' else 'under'} {step.threshold:g}"
    return StepResult(
        step.name, step.type, not bad, f"{shown} ({verdict})" if bad else shown, value
    )


def _http(step: HttpCheck, labels: dict[str, str], reach: Reach) -> StepResult:
    url = _render(step.url, labels)
    target = _http_target(url)
    if target is None or not step.allows(target[0]) or target[1] != step.port():
        return StepResult(step.name, step.type, False, f"{_clip(url)}: not a host it may reach")
    timeout = parse_duration(step.timeout).total_seconds()
    started = time.monotonic()
    try:
        answer = requests.get(url, timeout=timeout, allow_redirects=False, stream=True)
        answer.close()
    except requests.Timeout:
        return StepResult(step.name, step.type, False, f"no answer within {step.timeout}")
    except requests.RequestException as exc:
        return StepResult(step.name, step.type, False, f"unreachable ({type(exc).__name__})")
    took = time.monotonic() - started
    ok = answer.status_code == step.expect_status
    summary = f"HTTP {answer.status_code} in {took * 1000:.0f} ms"
    return StepResult(step.name, step.type, ok, summary, float(answer.status_code))


def _tcp(step: TcpCheck, labels: dict[str, str], reach: Reach) -> StepResult:
    host = _render(step.host, labels)
    if any(c.isspace() for c in host) or not step.allows(host):
        return StepResult(step.name, step.type, False, f"{_clip(host)}: not a host it may reach")
    timeout = parse_duration(step.timeout).total_seconds()
    started = time.monotonic()
    try:
        with socket.create_connection((host, step.port), timeout=timeout):
            pass
    except TimeoutError:
        return StepResult(
            step.name, step.type, False, f"{host}:{step.port}: no answer within {step.timeout}"
        )
    except OSError as exc:
        return StepResult(
            step.name, step.type, False, f"{host}:{step.port}: {exc.strerror or type(exc).__name__}"
        )
    took = (time.monotonic() - started) * 1000
    return StepResult(step.name, step.type, True, f"{host}:{step.port} answers ({took:.0f} ms)")


def _target(step: WorkloadStatus | RolloutHistory, labels: dict[str, str], reach: Reach) -> str:
    """The step's namespace/deployment, once the policy allows its namespace."""
    namespace, name = _render(step.namespace, labels), _render(step.deployment, labels)
    if not namespace or not name:
        raise PermanentError("the alert names no namespace and deployment")
    if namespace not in reach.namespaces:
        raise PermanentError(
            f"namespace {namespace!r} is not one alertpilot may read (mitigations.allow.namespaces)"
        )
    return f"{namespace}/{name}"


def _workload(step: WorkloadStatus, labels: dict[str, str], reach: Reach) -> StepResult:
    where = _target(step, labels, reach)
    namespace, name = where.split("/", 1)
    found = reach.kube().workload(namespace, name)
    troubled = [p for p in found.pods if not p.ready or p.waiting or p.last_termination]
    counts = (
        f"{where}: {found.ready}/{found.desired} ready, {found.available} available, "
        f"{found.updated} up to date"
    )
    parts = [counts]  # each part bounded, so the counts and a warning always fit
    if troubled:
        many = "+" if found.more_pods else ""
        pod = troubled[0]
        why = ", ".join(
            w
            for w in (
                pod.waiting,
                f"last ended {pod.last_termination}" if pod.last_termination else "",
                f"{pod.restarts} restarts" if pod.restarts else "",
            )
            if w
        )
        state = "ready" if pod.ready else "not ready"
        example = _clip(f"pod {pod.name} {state} ({why or 'starting'})", 110)
        others = f" and {len(troubled) - 1}{many} more pods not well" if len(troubled) > 1 else ""
        parts.append(example + others)
    parts.extend(_clip(w, 100) for w in found.warnings[:1])
    ok = found.ready >= found.desired and not troubled
    return StepResult(step.name, step.type, ok, "; ".join(parts), float(found.ready))


def _rollouts(step: RolloutHistory, labels: dict[str, str], reach: Reach) -> StepResult:
    where = _target(step, labels, reach)
    namespace, name = where.split("/", 1)
    current, revisions = reach.kube().revisions(namespace, name)
    now = clock.now()
    since = now - timedelta(seconds=parse_duration(step.within).total_seconds())
    recent = [r for r in revisions if r.created >= since]
    if not recent:
        return StepResult(
            step.name, step.type, True, f"{where}: nothing rolled out in the last {step.within}"
        )
    shown = []
    for revision in sorted(recent, key=lambda r: r.number, reverse=True)[:3]:
        ago = max(0, int((now - revision.created).total_seconds()) // 60)
        mark = " (current)" if revision.number == current else ""
        shown.append(f"revision {revision.number}{mark} {ago}m ago: {revision.images}")
    summary = f"{where}: rolled out in the last {step.within}: {'; '.join(shown)}"
    if any(r.number == current for r in recent) and len(revisions) > 1:
        summary += ": consider rollback"
    return StepResult(step.name, step.type, False, summary, float(len(recent)))
