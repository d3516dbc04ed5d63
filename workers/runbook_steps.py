"""Running a runbook's read-only steps for an incident (a `RunbookRequest` job).

Each step runs under its own timeout and its outcome, good or bad, is one line of
the result: a Prometheus that answers 503, a hanging endpoint or a closed port is
a result that says so, never a failed job or incident. The steps' templates (a
query, a URL, a host) are rendered over the labels of the incident's first firing
alert in a sandbox; a template that does not render is that step's result too.
The policy in force when the job runs decides the steps (a runbook changed since
the incident was declared runs as it is now). The results go on the timeline,
bounded in size.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from redis import Redis

from workers.config import Integrations
from workers.incident import timeline
from workers.incident.durations import parse_duration
from workers.incident.keys import Keys
from workers.incident.record import Incident, load_incident
from workers.jobs.contract import RunbookRequest
from workers.policy.problems import PolicyError
from workers.policy.runbooks import HttpCheck, Promql, Step, TcpCheck
from workers.policy.store import in_force
from workers.prometheus import Prometheus

MAX_SUMMARY = 300
"""Characters of one step's line on the timeline."""
TEMPLATES = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)


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


def run_runbook(
    redis: Redis, payload: dict[str, Any], integrations: Integrations, policies: Path
) -> dict[str, Any]:
    request = RunbookRequest.from_json(payload)
    keys = Keys(request.prefix)
    incident = load_incident(redis, keys, request.incident_id)
    if incident is None:
        return {"outcome": "no incident"}
    return run_for(redis, keys, incident, request.runbook, request.when, integrations, policies)


def run_for(
    redis: Redis,
    keys: Keys,
    incident: Incident,
    name: str,
    when: str,
    integrations: Integrations,
    policies: Path,
) -> dict[str, Any]:
    """Run runbook `name` for the incident now; its results on the timeline."""
    try:
        runbook = in_force(policies).runbooks.get(name)
    except PolicyError:
        runbook = None
    if runbook is None:
        note = f"runbook {name}: not in the policy in force; nothing run"
        timeline.append(redis, keys, incident.id, timeline.entry("runbook", note))
        return {"outcome": "no runbook"}
    labels = _labels(incident)
    results = [_run(step, labels, integrations) for step in runbook.steps]
    bad = sum(1 for r in results if not r.ok)
    message = f"runbook {name} ({when}): {len(results)} steps, {bad} not ok"
    entry = timeline.entry(
        "runbook", message, runbook=name, when=when, results=[r.to_json() for r in results]
    )
    timeline.append(redis, keys, incident.id, entry)
    return {"outcome": "ran", "steps": len(results), "not_ok": bad}


def route_runbook(incident: Incident, policies: Path) -> str | None:
    """The runbook the incident's route names in the policy in force, if any."""
    try:
        route = in_force(policies).route(incident.route)
    except PolicyError:
        return None
    return route.runbook if route is not None else None


def _labels(incident: Incident) -> dict[str, str]:
    firing = sorted(incident.firing, key=lambda a: a.starts_at) or list(incident.alerts.values())
    return dict(firing[0].labels) if firing else {}


def _run(step: Step, labels: dict[str, str], integrations: Integrations) -> StepResult:
    runners: dict[type, Callable[[Any, dict[str, str], Integrations], StepResult]] = {
        Promql: _promql,
        HttpCheck: _http,
        TcpCheck: _tcp,
    }
    runner = runners.get(type(step))
    if runner is None:  # workload_status, rollout_history: Kubernetes reads, not built yet
        return StepResult(step.name, step.type, False, "not run yet by this version")
    try:
        return runner(step, labels, integrations)
    except TemplateError as exc:
        return StepResult(step.name, step.type, False, f"template: {exc}")


def _render(template: str, labels: dict[str, str]) -> str:
    return TEMPLATES.from_string(template).render(labels=labels)


def _promql(step: Promql, labels: dict[str, str], integrations: Integrations) -> StepResult:
    if not integrations.prometheus_url:
        return StepResult(step.name, step.type, False, "no Prometheus (ALERTPILOT_PROMETHEUS_URL)")
    prometheus = Prometheus(
        integrations.prometheus_url,
        token=integrations.prometheus_token,
        ca_bundle=integrations.ca_bundle,
    )
    found = prometheus.query(_render(step.query, labels))
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


def _http(step: HttpCheck, labels: dict[str, str], integrations: Integrations) -> StepResult:
    url = _render(step.url, labels)
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


def _tcp(step: TcpCheck, labels: dict[str, str], integrations: Integrations) -> StepResult:
    host = _render(step.host, labels)
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
