"""Runbooks: policies/runbooks/<name>.yaml, reviewed in pull requests like the routes
that name them (`runbook: <name>`).

A runbook says what a responder needs on the page: the title, the symptoms, notes on
severity, whom to escalate to and when, the mitigations its route automates, and the
investigation steps alertpilot runs itself. Steps are typed and read-only by
construction: each type is a model with exactly its fields (a query, a URL, a
host:port, a window), and there is no shell step and no verb that writes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from workers.incident.durations import parse_duration
from workers.params import NAME_PATTERN, Duration
from workers.policy.problems import PolicyError, Problem
from workers.policy.promql import promql_problem
from workers.policy.source import read_text, read_yaml

FOLDER = "runbooks"
MAX_STEP_TIMEOUT_SECONDS = 30
"""A step never holds its job longer than this (its own timeout is at most this)."""


def _short(value: str) -> str:
    if parse_duration(value).total_seconds() > MAX_STEP_TIMEOUT_SECONDS:
        raise ValueError(f"at most {MAX_STEP_TIMEOUT_SECONDS}s")
    return value


Timeout = Annotated[Duration, AfterValidator(_short)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Text = Annotated[str, Field(max_length=2000)]
Target = Annotated[str, Field(min_length=1, max_length=253)]
"""A namespace or deployment: a template over the alert's labels (by default the
`namespace` and `deployment` labels), rendered when the step runs."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkloadStatus(_Strict):
    """The target deployment's replicas, pods not ready, restarts and their last
    termination reasons, recent Warning events (Kubernetes get/list only)."""

    type: Literal["workload_status"]
    name: Name = "workload"
    namespace: Target = "{{ labels.namespace }}"
    deployment: Target = "{{ labels.deployment }}"


class RolloutHistory(_Strict):
    """Revisions of the target that rolled out within `within`, with their images."""

    type: Literal["rollout_history"]
    name: Name = "recent_changes"
    within: Duration = "1h"
    namespace: Target = "{{ labels.namespace }}"
    deployment: Target = "{{ labels.deployment }}"


class Promql(_Strict):
    """A named instant query to Prometheus, a template over the alert's labels."""

    type: Literal["promql"]
    name: Name
    query: Annotated[str, Field(min_length=1, max_length=2000)]
    unit: Annotated[str, Field(max_length=16)] = ""
    threshold: float | None = Field(None, allow_inf_nan=False)
    """Above it (or below, with `bad_when: below`) the value is shown as bad."""
    bad_when: Literal["above", "below"] = "above"


HostPattern = Annotated[
    str, Field(pattern=r"^[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?(\.[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?)*$")
]
"""A host name where `*` stands for letters, digits and dashes within one label:
`*.production.svc.cluster.local`, `redis-*.cache`."""


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def url_host_template(url: str) -> str:
    """The host part of a URL template: what lies between `://` and the path."""
    rest = url.split("://", 1)[-1]
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            end = min(end, found)
    return rest[:end]


class _Reaching(_Strict):
    """A step that connects somewhere. Its host is literal in the policy, or, when alert
    labels fill it in (a template), must match one of `hosts`: whoever writes an
    alerting rule chooses its labels, and must not choose where alertpilot connects."""

    hosts: list[HostPattern] = Field(default_factory=list, max_length=20)

    def host_template(self) -> str:
        raise NotImplementedError

    @model_validator(mode="after")
    def _hosts_for_templates(self) -> _Reaching:
        if _templated(self.host_template()) and not self.hosts:
            raise ValueError(
                "a host filled in from alert labels needs `hosts`: the patterns it must match"
            )
        return self

    def allows(self, host: str) -> bool:
        """Whether the rendered `host` is one this step may connect to: its literal host,
        or, for a host from labels, a name (never an address in any of the forms the
        resolver reads: 2130706433 and 0x7f.1 are 127.0.0.1) matching a pattern of `hosts`."""
        host = host.lower().rstrip(".")
        if not _templated(self.host_template()):
            return host == self.literal_host()
        if _address(host):
            return False
        return any(_host_pattern(p).fullmatch(host) for p in self.hosts)

    def literal_host(self) -> str:
        raise NotImplementedError


def _address(host: str) -> bool:
    """Whether getaddrinfo would read `host` as a numeric address, not look it up."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)  # the lenient forms: 2130706433, 127.1, 0x7f.0.0.1
        return True
    except (OSError, ValueError):
        return False


def _host_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile("[a-z0-9-]+".join(re.escape(part) for part in pattern.split("*")))


class HttpCheck(_Reaching):
    """GET the URL (a template over the labels): its status and latency."""

    type: Literal["http_check"]
    name: Name
    url: Annotated[str, Field(pattern=r"^https?://[^\n]+$", max_length=2000)]
    """A template: `{{ labels.x }}` may hold spaces; the rendered URL may not."""
    timeout: Timeout = "5s"
    expect_status: int = Field(200, ge=100, le=599)

    def host_template(self) -> str:
        return url_host_template(self.url)

    def literal_host(self) -> str:
        return (urlsplit(self.url).hostname or "").rstrip(".")

    def port(self) -> int:
        """The port the URL names in the policy (labels never choose it), or the scheme's."""
        literal = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", url_host_template(self.url))
        found = re.search(r":([0-9]{1,5})$", literal)
        if found is not None:
            return int(found.group(1))
        return 443 if self.url.startswith("https:") else 80


class TcpCheck(_Reaching):
    """A dependency's host:port accepts a connection (Redis, PostgreSQL...)."""

    type: Literal["tcp_check"]
    name: Name
    host: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^/\n]+$")]
    port: int = Field(ge=1, le=65535)
    timeout: Timeout = "3s"

    def host_template(self) -> str:
        return self.host

    def literal_host(self) -> str:
        return self.host.lower().rstrip(".")


Step = Annotated[
    WorkloadStatus | RolloutHistory | Promql | HttpCheck | TcpCheck,
    Field(discriminator="type"),
]


class Escalation(_Strict):
    after: Duration = Field(description="When nobody has acknowledged, or it is not mitigated.")
    to: Annotated[str, Field(min_length=1, max_length=200)]
    bridge: Annotated[str, Field(pattern=r"^https://[^\s<>|\"'`]+$")] | None = None
    channel: Annotated[str, Field(max_length=80)] | None = None


class Runbook(_Strict):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    url: Annotated[str, Field(pattern=r"^https://[^\s<>|\"'`]+$", max_length=2000)] | None = Field(
        None, description="The runbook's document for people: linked from the page."
    )
    symptoms: list[Text] = Field(default_factory=list, max_length=50)
    severity_notes: Text = ""
    escalation: Escalation | None = None
    mitigations: list[Text] = Field(
        default_factory=list, max_length=20, description="What the route automates, for people."
    )
    steps: list[Step] = Field(default_factory=list, max_length=30)


def runbook_files(directory: Path) -> list[Path]:
    folder = directory / FOLDER
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_runbooks(directory: Path) -> tuple[dict[str, Runbook], list[Problem]]:
    """Every runbook by name (its file name without .yaml), and the problems found."""
    # Imported here: the loader imports this module for its folder and hash.
    from workers.policy.loader import validation_problem

    runbooks: dict[str, Runbook] = {}
    problems: list[Problem] = []
    for path in runbook_files(directory):
        name = path.stem
        if re.fullmatch(NAME_PATTERN, name) is None:
            message = f"a runbook's file name must match {NAME_PATTERN}"
            problems.append(Problem(str(path), 1, 1, message))
            continue
        try:
            doc, marks = read_yaml(str(path), read_text(path))
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        try:
            runbooks[name] = Runbook.model_validate(doc if doc is not None else {})
        except ValidationError as exc:
            for error in exc.errors():
                problems.append(validation_problem(str(path), marks, tuple(error["loc"]), error))
        else:
            problems.extend(_unique_steps(str(path), runbooks[name], marks))
            problems.extend(_promql_steps(str(path), runbooks[name], marks))
    return runbooks, problems


def _promql_steps(path: str, runbook: Runbook, marks: Any) -> list[Problem]:
    """Each promql step's query must render and parse as PromQL (workers/policy/promql.py)."""
    found = []
    for index, step in enumerate(runbook.steps):
        said = promql_problem(step.query) if isinstance(step, Promql) else None
        if said is not None:
            line, col = marks.get(("steps", index, "query"), marks.get(("steps", index), (1, 1)))
            found.append(Problem(path, line, col, f"steps.{index}.query: {said}"))
    return found


def _unique_steps(path: str, runbook: Runbook, marks: Any) -> list[Problem]:
    seen: set[str] = set()
    found = []
    for index, step in enumerate(runbook.steps):
        if step.name in seen:
            line, col = marks.get(("steps", index, "name"), marks.get(("steps", index), (1, 1)))
            found.append(Problem(path, line, col, f"steps.{index}.name: {step.name!r} is taken"))
        seen.add(step.name)
    return found
