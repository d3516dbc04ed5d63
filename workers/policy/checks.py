"""Checks on a whole policy set that the schema alone cannot make.

Each returns problems located at the key at fault: severity names and
references, templates (syntax, and rendering against a sample alert of the
route), action names used twice in one route, and routes that can never be
reached because an earlier route without `continue` takes every alert they
would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import TemplateError, TemplateSyntaxError

from workers import oncall_markdown, params, postmortem, templates
from workers.config import DEFAULT_ROUTING_KEY
from workers.jobs.contract import MITIGATION_ACTIONS
from workers.params import NAME_PATTERN
from workers.policy.engine import (
    DEFAULT_ROUTE_NAME,
    EMPTY_PART,
    RENDER_ERRORS,
    TEMPLATES,
    key_template_problem,
)
from workers.policy.matchers import Matcher, parse_matcher
from workers.policy.model import DefaultRoute, Guardrails, Route, Severity
from workers.policy.problems import Location, Problem
from workers.policy.regex import compile_regex

_NAME = compile_regex(NAME_PATTERN)
_PLAIN = compile_regex(r"[A-Za-z0-9_.:/-]+")

MATCH_ALL = frozenset({"(?s).*", "(?s:.*)", "[\\s\\S]*"})
"""Regexes that match every value, line breaks included."""
LOOSE = MATCH_ALL | {".*", "(.*)", "(?:.*)", ".*?"}
"""...and the usual spellings of "anything", which stop at a line break."""


@dataclass(frozen=True)
class Draft:
    """A policy set assembled from its files, before it is compiled."""

    severities: dict[str, Severity]
    routes: list[Route]
    default: DefaultRoute
    where: dict[str, Location]
    """"severity:NAME", "route:NAME" and "default" -> where each was written."""
    manifests: Mapping[str, object] = field(default_factory=dict)
    """The pre-approved manifests by name (policies/manifests)."""
    guardrails: Guardrails = field(default_factory=Guardrails)
    """The `mitigations:` section (its allowlist bounds what a route may fix)."""


def check(draft: Draft, env: Mapping[str, str] | None = None) -> list[Problem]:
    return [
        *_severity_names(draft),
        *_route_names(draft),
        *_references(draft),
        *_templates(draft),
        *_duplicate_actions(draft),
        *_action_params(draft),
        *_unreachable(draft),
        *(_secrets(draft, env) if env is not None else []),
    ]


def _secrets(draft: Draft, env: Mapping[str, str]) -> list[Problem]:
    """Secret references (PagerDuty routing keys) that name no variable or file here.

    A warning: `validate` runs where secrets may not be (a laptop, CI); the
    worker, which pages, refuses to start on them.
    """
    problems: list[Problem] = []
    for at, route in _all_routes(draft):
        for index, action in enumerate(route.actions):
            if action.name != "page":
                continue
            name = str(action.params.get("routing_key_env") or DEFAULT_ROUTING_KEY)
            if not env.get(name) and not env.get(f"{name}_FILE"):
                message = f"page: routing key {name} (or {name}_FILE) is not set"
                problems.append(
                    at.problem(message, key=("actions", index), level="warning", code="secret")
                )
    return problems


def _route_names(draft: Draft) -> list[Problem]:
    """`default` names the default route (incidents and jobs refer to routes by name)."""
    return [
        draft.where[f"route:{route.name}"].problem(
            "route name 'default' is the default route's; choose another", key=("name",)
        )
        for route in draft.routes
        if route.name == DEFAULT_ROUTE_NAME
    ]


def _severity_names(draft: Draft) -> list[Problem]:
    return [
        draft.where[f"severity:{name}"].problem(
            f"severity name {name!r}: letters, digits, _ and - only"
        )
        for name in draft.severities
        if not _NAME.fullmatch(name)
    ]


def _all_routes(draft: Draft) -> list[tuple[Location, Route | DefaultRoute]]:
    found: list[tuple[Location, Route | DefaultRoute]] = [
        (draft.where[f"route:{r.name}"], r) for r in draft.routes
    ]
    return [*found, (draft.where["default"], draft.default)]


def _references(draft: Draft) -> list[Problem]:
    known = ", ".join(draft.severities) or "none"
    return [
        at.problem(f"unknown severity {route.severity!r} (defined: {known})", key=("severity",))
        for at, route in _all_routes(draft)
        if route.severity not in draft.severities
    ]


def _templates(draft: Draft) -> list[Problem]:
    problems: list[Problem] = []
    for at, route in _all_routes(draft):
        if not route.incident_key:
            continue
        key = ("incident_key",)
        # Before compiling it: Jinja's compiler folds constants (`{{ 2 ** 999999 }}`).
        unbounded = key_template_problem(route.incident_key)
        if unbounded is not None:
            problems.append(at.problem(f"incident_key: {unbounded}", key=key))
            continue
        template = TEMPLATES.from_string(route.incident_key)
        labels = sample_labels(route)
        try:
            rendered = template.render(labels=labels, annotations={}).strip()
        except RENDER_ERRORS as exc:
            message = f"incident_key: fails to render for a sample alert {labels}: {exc}"
            problems.append(at.problem(message, key=key))
            continue
        if EMPTY_PART in rendered or not rendered:
            what = (
                "renders empty" if not rendered.strip(EMPTY_PART + " ") else "renders a part empty"
            )
            message = (
                f"incident_key {what} for a sample alert {labels}: such alerts "
                "fall back to the default key (groupKey and route)"
            )
            problems.append(at.problem(message, key=key, level="warning"))
    return problems


def sample_labels(route: Route | DefaultRoute) -> dict[str, str]:
    """Labels of an alert the route would take: its `=` values, and "sample" for regexes."""
    labels: dict[str, str] = {}
    for text in route.matchers if isinstance(route, Route) else []:
        matcher = parse_matcher(text)
        if matcher.op == "=":
            labels[matcher.name] = matcher.value
        elif matcher.op == "=~":
            labels[matcher.name] = _regex_example(matcher)
    return labels


def _regex_example(matcher: Matcher) -> str:
    """The first alternative of a simple regex (`a|b` -> a), else "sample"."""
    first = matcher.value.split("|", 1)[0]
    if _PLAIN.fullmatch(first) and matcher.matches({matcher.name: first}):
        return first
    return "sample"


def _duplicate_actions(draft: Draft) -> list[Problem]:
    problems: list[Problem] = []
    for at, route in _all_routes(draft):
        seen: set[str] = set()
        for index, action in enumerate(route.actions):
            if action.name in seen:
                message = f"action {action.name!r} is listed twice; merge its parameters"
                problems.append(at.problem(message, key=("actions", index)))
            seen.add(action.name)
    return problems


def _action_params(draft: Draft) -> list[Problem]:
    """Each action's parameters against its model (workers/params.py), at the key at
    fault; then what a model cannot know: whether a manifest is there, and whether a
    fixed namespace is one mitigations may touch at all."""
    problems: list[Problem] = []
    allowed = draft.guardrails.allow.namespaces
    for at, route in _all_routes(draft):
        for index, action in enumerate(route.actions):
            key = ("actions", index, action.name)
            for loc, message in params.problems(action.name, action.params):
                where = f"{'.'.join(str(p) for p in loc)}: " if loc else ""
                problems.append(at.problem(f"{action.name}: {where}{message}", key=(*key, *loc)))
            name = action.params.get("apply") if action.name == "rate_limit" else None
            if isinstance(name, str) and name not in draft.manifests:
                known = ", ".join(sorted(draft.manifests)) or "none"
                message = f"rate_limit: no manifest policies/manifests/{name}.yaml (have: {known})"
                problems.append(at.problem(message, key=(*key, "apply")))
            fixed = action.params.get("namespace") if action.name in MITIGATION_ACTIONS else None
            if isinstance(fixed, str) and "{" not in fixed and fixed not in allowed:
                message = (
                    f"{action.name}: namespace {fixed!r} is not in mitigations.allow.namespaces "
                    f"({', '.join(allowed) or 'none'}): it would always be refused"
                )
                problems.append(at.problem(message, key=(*key, "namespace"), level="warning"))
    return problems


def _unreachable(draft: Draft) -> list[Problem]:
    """A route is never reached when an earlier one without `continue` matches all it does.

    That holds when every matcher of the earlier route (other than match-all
    regexes) is also a matcher of the later one: a catch-all shadows everything
    after it, `alertname="X"` shadows `alertname="X", service="y"`. A plain
    `=~".*"` does not match a value with a line break (in Alertmanager either),
    so shadowing that rests on one is a warning, not an error.
    """
    problems: list[Problem] = []
    earlier: list[tuple[Route, frozenset[str], frozenset[str]]] = []
    for route in draft.routes:
        own = frozenset(str(parse_matcher(m)) for m in route.matchers)
        for before, strict, loose in earlier:
            if not loose <= own:
                continue
            where = draft.where[f"route:{before.name}"]
            reason = "matches every alert" if not strict else "matches every alert it would"
            message = (
                f"route {route.name!r} is never reached: route {before.name!r} "
                f"({where.file}:{where.line}) {reason} and does not continue"
            )
            at = draft.where[f"route:{route.name}"]
            if strict <= own:
                problems.append(at.problem(message))
            else:
                note = " (except alerts whose label values contain a line break: '.' stops there)"
                problems.append(at.problem(message + note, level="warning"))
            break
        if not route.continue_:
            earlier.append((route, _significant(route, MATCH_ALL), _significant(route, LOOSE)))
    return problems


def _significant(route: Route, match_all: frozenset[str]) -> frozenset[str]:
    matchers = [parse_matcher(m) for m in route.matchers]
    return frozenset(str(m) for m in matchers if not (m.op == "=~" and m.value in match_all))


TEMPLATES_FOLDER = "templates"


def template_files(directory: Path) -> list[Path]:
    """The chat templates in DIR/templates (`*.j2`), in name order."""
    folder = directory / TEMPLATES_FOLDER
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.j2") if p.is_file())


def message_templates(directory: Path) -> list[Problem]:
    """The templates in DIR/templates: each must parse and render a sample (a chat
    message's incident, the on-call handoff's report)."""
    problems: list[Problem] = []
    files = template_files(directory)
    if not files:
        return problems
    env = templates.environment(directory / TEMPLATES_FOLDER)
    drafts = postmortem.environment(directory / TEMPLATES_FOLDER)
    documents: dict[str, Callable[[], object]] = {
        oncall_markdown.TEMPLATE: lambda: oncall_markdown.render(
            directory / TEMPLATES_FOLDER, oncall_markdown.SAMPLE
        ),
        postmortem.TEMPLATE: lambda: drafts.get_template(postmortem.TEMPLATE).render(
            **postmortem.SAMPLE_POSTMORTEM
        ),
    }
    for path in files:
        if path.name in documents:
            render = documents[path.name]
        elif path.name in templates.NAMES.values():

            def render(name: str = path.name) -> object:
                return env.get_template(name).render(**templates.SAMPLE)

        else:
            known = ", ".join(sorted({*templates.NAMES.values(), *documents}))
            message = f"unused template (expected one of {known})"
            problems.append(Problem(str(path), 1, 1, message, "warning"))
            continue
        try:
            render()
        except TemplateSyntaxError as exc:
            problems.append(
                Problem(str(path), exc.lineno or 1, 1, f"template error: {exc.message}")
            )
        except TemplateError as exc:
            message = f"fails to render for a sample: {exc}"
            problems.append(Problem(str(path), 1, 1, message))
        except Exception as exc:  # a filter's own error: `span` of text, a division by zero
            message = f"fails to render for a sample: {type(exc).__name__}: {exc}"
            problems.append(Problem(str(path), 1, 1, message))
    return problems
    env = templates.environment(directory / TEMPLATES_FOLDER)
    for path in files:
        if path.name not in templates.NAMES.values():
            known = ", ".join(sorted(set(templates.NAMES.values())))
            message = f"unused template (expected one of {known})"
            problems.append(Problem(str(path), 1, 1, message, "warning"))
            continue
        try:
            env.get_template(path.name).render(**templates.SAMPLE)
        except TemplateSyntaxError as exc:
            problems.append(
                Problem(str(path), exc.lineno or 1, 1, f"template error: {exc.message}")
            )
        except TemplateError as exc:
            message = f"fails to render for a sample incident: {exc}"
            problems.append(Problem(str(path), 1, 1, message))
    return problems
