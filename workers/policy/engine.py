"""Evaluate a policy set against one alert's labels: which routes, which plan.

Matchers and templates are compiled once at load. The first matching route
wins unless it says `continue: true`; no match falls through to `default`.

Routes are indexed by the label most of them match with `=` (usually
`alertname`): an alert is only tried against the routes whose `=` matcher on
that label has its value, plus the routes without one, in policy order. Any
other route would fail that matcher, so the result is the same as a full scan
at a cost that stays flat as policies grow.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template, TemplateError, Undefined

from workers.policy.matchers import Matcher, parse_matcher
from workers.policy.model import Action, DefaultRoute, Guardrails, Route, Severity
from workers.policy.problems import Problem
from workers.policy.runbooks import Runbook
from workers.sandbox import Sandbox

EMPTY_PART = "\x00"
"""What an empty `{{ ... }}` renders as in an incident key: marks a key to fall back."""


class _Missing(Undefined):
    """A label or annotation the alert lacks: marks wherever it is used as text, inside
    an expression too (`{{ 'latency/' ~ labels.service }}`); `default(...)` still works."""

    __slots__ = ()

    def __str__(self) -> str:
        return EMPTY_PART


def _mark_empty(value: Any) -> Any:
    if callable(value):  # `labels.items`: a method's text holds its address, new each run
        return EMPTY_PART
    if value is None or isinstance(value, Undefined) or not str(value).strip():
        return EMPTY_PART
    return value


TEMPLATES = Sandbox(autoescape=False, finalize=_mark_empty, undefined=_Missing)
KEY_NODES = frozenset(
    {
        "Template", "Output", "TemplateData", "Name", "Getattr", "Getitem", "Slice", "Const",
        "Filter", "Keyword", "Concat", "CondExpr", "If", "Compare", "Operand", "And", "Or",
        "Not", "Add",
    }
)  # fmt: skip
"""What an incident key template may hold: it is rendered for every alert the receiver
takes, so nothing that can loop or grow past its parts (no `for`, calls, `*`, `**`, `%`,
macros); `+` and `~` only join what is there."""
KEY_FILTERS = frozenset(
    {"lower", "upper", "title", "capitalize", "trim", "default", "d", "string", "truncate"}
)
"""Filters that give at most their input's length back (or the default's)."""
KEY_NAMES = frozenset({"labels", "annotations"})


KEY_MAX_CHARS = 1000
KEY_MAX_NODES = 200
"""Jinja's compiler slows down steeply on long expressions (300 `+` terms: 7-10 s, then
a SyntaxError); a key needs a handful of parts."""


def _reads_a_label(node: Any) -> bool:
    """`labels.x`, `labels['x']`, or a slice of one (`labels.x[:20]`)."""
    inner = node.node
    if type(inner).__name__ == "Name":
        return bool(inner.name in KEY_NAMES)
    sliced = type(node).__name__ == "Getitem" and type(node.arg).__name__ == "Slice"
    return sliced and type(inner).__name__ in ("Getattr", "Getitem") and _reads_a_label(inner)


def key_template_problem(source: str) -> str | None:
    """Why `source` is no incident key template (short, it parses, and holds only
    KEY_NODES, KEY_FILTERS and KEY_NAMES, with attributes and items read from labels and
    annotations only), or None. Checked before anything compiles or renders it."""
    if len(source) > KEY_MAX_CHARS:
        return f"at most {KEY_MAX_CHARS} characters, got {len(source)}"
    try:
        stack: list[Any] = [TEMPLATES.parse(source)]
    except TemplateError as exc:
        return f"template error: {exc.message or exc}"
    except (ValueError, RecursionError, MemoryError) as exc:  # digits, nesting
        return f"template error: {type(exc).__name__}: {str(exc)[:200]}"
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > KEY_MAX_NODES:
            return f"more than {KEY_MAX_NODES} parts: an incident key names a few labels"
        kind = type(node).__name__
        if kind in ("Getattr", "Getitem") and not _reads_a_label(node):
            return "only labels.<name> and annotations.<name> can be read (not a method)"
        if kind not in KEY_NODES:
            return (
                f"{kind.lower()} is not allowed in an incident key (it is rendered for every alert)"
            )
        if kind == "Filter" and node.name not in KEY_FILTERS:
            allowed = ", ".join(sorted(KEY_FILTERS))
            return f"filter {node.name!r} is not allowed in an incident key (allowed: {allowed})"
        if kind == "Name" and node.name not in KEY_NAMES:
            return f"{node.name!r}: an incident key reads labels and annotations only"
        stack.extend(node.iter_child_nodes())
    return None


RENDER_ERRORS = (Exception,)
"""What rendering a route's template over an alert's labels can raise: anything (Jinja's
filters assert, and a label value can take a branch validate's sample alert did not), and
the alert then falls back to the default key rather than failing its notification."""
DEFAULT_ROUTE_NAME = "default"


@dataclass(frozen=True)
class CompiledRoute:
    name: str
    matchers: tuple[Matcher, ...]
    severity: str
    incident_key: Template | None
    continue_: bool
    dry_run: bool | None
    actions: tuple[Action, ...]
    runbook: str | None = None
    """The route's runbook (policies/runbooks/<name>.yaml), run on declare and escalation."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Match:
    """The plan for one alert under one route."""

    route: str
    severity: str
    actions: tuple[Action, ...]
    dry_run: bool | None
    incident_key: str
    """Rendered key that groups alerts into one incident."""
    key_fallback: str | None = None
    """Why the route's `incident_key` template was not used for this alert, if it was not."""


@dataclass(frozen=True)
class RouteIndex:
    """Route positions by the value of a label's `=` matcher, level by level, and the rest.

    Level one uses the label most routes match with `=`; the routes without such
    a matcher go to level two, keyed by the most common `=` label among them,
    and so on. Routes with no `=` matcher at all are tried for every alert.
    """

    levels: tuple[tuple[str, dict[str, tuple[int, ...]]], ...] = ()
    unindexed: tuple[int, ...] = ()

    MAX_LEVELS = 4

    @classmethod
    def build(cls, routes: Sequence[CompiledRoute]) -> RouteIndex:
        remaining = list(range(len(routes)))
        levels: list[tuple[str, dict[str, tuple[int, ...]]]] = []
        while remaining and len(levels) < cls.MAX_LEVELS:
            counts = Counter(m.name for i in remaining for m in routes[i].matchers if m.op == "=")
            if not counts:
                break
            label = counts.most_common(1)[0][0]
            by_value: dict[str, list[int]] = {}
            rest: list[int] = []
            for i in remaining:
                value = _equality(routes[i], label)
                if value is None:
                    rest.append(i)
                else:
                    by_value.setdefault(value, []).append(i)
            levels.append((label, {v: tuple(p) for v, p in by_value.items()}))
            remaining = rest
        return cls(tuple(levels), tuple(remaining))

    @property
    def label(self) -> str | None:
        return self.levels[0][0] if self.levels else None

    def candidates(self, labels: Mapping[str, str]) -> Iterator[int]:
        """Positions of the routes that can match, in policy order."""
        lists = [by_value.get(labels.get(label, ""), ()) for label, by_value in self.levels]
        lists = [found for found in lists if found]
        if self.unindexed:
            lists.append(self.unindexed)
        if len(lists) == 1:
            return iter(lists[0])
        return heapq.merge(*lists)


def _equality(route: CompiledRoute, label: str) -> str | None:
    return next((m.value for m in route.matchers if m.name == label and m.op == "="), None)


@dataclass(frozen=True)
class Policy:
    """A whole, validated policy set; notifications are evaluated against one at a time."""

    severities: dict[str, Severity]
    routes: tuple[CompiledRoute, ...]
    default: CompiledRoute
    content_hash: str
    index: RouteIndex = field(default_factory=RouteIndex)
    warnings: tuple[Problem, ...] = ()
    """Problems that do not stop the set from loading (validate prints them)."""
    guardrails: Guardrails = field(default_factory=Guardrails)
    """The `mitigations:` section: limits every mitigation job carries."""
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    """policies/manifests/<name>.yaml by name, for `rate_limit: {apply: <name>}`."""
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    """policies/runbooks/<name>.yaml by name, for a route's `runbook: <name>`."""

    def route(self, name: str) -> CompiledRoute | None:
        """The route of that name (the default route is "default"), if the set has it."""
        if name == self.default.name:
            return self.default
        return next((r for r in self.routes if r.name == name), None)

    def rank(self, severity: str) -> int:
        """0 for the most severe; larger numbers are less severe.

        A severity the policy no longer defines (renamed in a PR while an
        incident was open) ranks below every defined one, so it can still be
        escalated from and never blocks intake.
        """
        names = list(self.severities)
        return names.index(severity) if severity in names else len(names)


def compile_policy(
    severities: dict[str, Severity],
    routes: list[Route],
    default: DefaultRoute,
    content_hash: str,
) -> Policy:
    compiled = tuple(_compile(r.name, r, r.continue_) for r in routes)
    return Policy(
        severities=severities,
        routes=compiled,
        default=_compile(DEFAULT_ROUTE_NAME, default, False),
        content_hash=content_hash,
        index=RouteIndex.build(compiled),
    )


def _compile(name: str, route: Route | DefaultRoute, continue_: bool) -> CompiledRoute:
    matchers = route.matchers if isinstance(route, Route) else []
    return CompiledRoute(
        name=name,
        matchers=tuple(parse_matcher(m) for m in matchers),
        severity=route.severity,
        incident_key=TEMPLATES.from_string(route.incident_key) if route.incident_key else None,
        continue_=continue_,
        dry_run=route.dry_run,
        actions=tuple(route.actions),
        runbook=route.runbook if isinstance(route, Route) else None,
    )


def evaluate(
    policy: Policy,
    labels: Mapping[str, str],
    *,
    annotations: Mapping[str, str] | None = None,
    group_key: str = "",
) -> list[Match]:
    """Every route the alert takes, in order (more than one only through `continue`)."""
    matched: list[Match] = []
    for position in policy.index.candidates(labels):
        route = policy.routes[position]
        if route.matches(labels):
            matched.append(_plan(route, labels, annotations or {}, group_key))
            if not route.continue_:
                return matched
    if not matched:
        matched.append(_plan(policy.default, labels, annotations or {}, group_key))
    return matched


def _plan(
    route: CompiledRoute, labels: Mapping[str, str], annotations: Mapping[str, str], group_key: str
) -> Match:
    key, fallback = _incident_key(route, labels, annotations, group_key)
    return Match(
        route=route.name,
        severity=route.severity,
        actions=route.actions,
        dry_run=route.dry_run,
        incident_key=key,
        key_fallback=fallback,
    )


def _incident_key(
    route: CompiledRoute, labels: Mapping[str, str], annotations: Mapping[str, str], group_key: str
) -> tuple[str, str | None]:
    """The route's template, or Alertmanager's groupKey plus the route name; and why
    the template was not used, when it was not.

    A template that fails, or any of whose `{{ ... }}` parts renders empty for this
    alert (a label it names is missing: `latency/{{ labels.service }}` without a
    service), falls back to the default key rather than merging unrelated alerts
    under `latency/`.
    """
    default = f"{group_key}|{route.name}"
    if route.incident_key is None:
        return default, None
    rendered, problem = render_key(route.incident_key, labels, annotations)
    return (rendered, None) if rendered else (default, problem)


def render_key(
    template: Template, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> tuple[str, str | None]:
    """The key a template renders for an alert, or "" and why it cannot be used."""
    try:
        rendered = template.render(labels=labels, annotations=annotations).strip()
    except RENDER_ERRORS as exc:
        return "", f"it fails ({type(exc).__name__}: {exc})"
    if EMPTY_PART in rendered or not rendered:
        return "", "a part of it renders empty (a label it names is missing)"
    return rendered, None


def key_hash(incident_key: str) -> str:
    return hashlib.sha256(incident_key.encode()).hexdigest()
