"""The policy file format, as pydantic models; also the source of policies/schema.json.

A policy directory holds YAML files, each with any of `severities`, `routes`
and `default`. Severities are listed from most to least severe; that order is
what "escalate" means.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
)

from workers.jobs.contract import ACTION_NAMES
from workers.params import NAME_PATTERN, PARAMS, ComponentStatus, Duration
from workers.policy.matchers import MatcherError, parse_matcher
from workers.policy.regex import MAX_SET_SIZE, Budget

BUDGET = "regex_budget"
"""Validation context key: the set's `Budget`, shared by all its files."""


def _matcher(value: str, info: ValidationInfo) -> str:
    """A valid matcher, whose regex fits in what is left of the set's budget (if given)."""
    budget = info.context.get(BUDGET) if isinstance(info.context, dict) else None
    if not isinstance(budget, Budget):
        parse_matcher(value)  # MatcherError is a ValueError too
        return value
    if budget.spent:  # the matcher that spent it is reported; the set will not load
        return value
    try:
        pattern = parse_matcher(value).pattern
    except MatcherError as exc:
        budget.spend(exc.size)
        raise
    if pattern is not None:
        budget.spend(pattern.size)
        if budget.spent:
            raise ValueError(
                f"the set's regexes take over {MAX_SET_SIZE:,} RE2 instructions with this "
                f"one ({pattern.size:,}); simplify them"
            )
    return value


def _action(value: Any) -> Any:
    """`page` or `{scale_up: {by: 2}}` -> {"name": ..., "params": {...}}."""
    if isinstance(value, str):
        return {"name": value, "params": {}}
    if isinstance(value, dict) and len(value) == 1:
        ((name, params),) = value.items()
        return {"name": name, "params": {} if params is None else params}
    raise ValueError("an action is a name (page) or a one-key mapping ({scale_up: {by: 2}})")


def _action_name(value: str) -> str:
    if value not in ACTION_NAMES:
        raise ValueError(f"unknown action {value!r}; known: {', '.join(ACTION_NAMES)}")
    return value


MatcherText = Annotated[
    str,
    AfterValidator(_matcher),
    WithJsonSchema({"type": "string", "description": 'Alertmanager matcher: name="value"'}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Action(_Strict):
    name: Annotated[str, AfterValidator(_action_name)]
    params: dict[str, Any] = Field(default_factory=dict)


ActionEntry = Annotated[
    Action,
    BeforeValidator(_action),
    # The file form, not the parsed one: `page`, or `{scale_up: {by: 2}}`.
    WithJsonSchema(
        {
            "oneOf": [
                {"enum": list(ACTION_NAMES)},
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "properties": {
                        name: {"anyOf": [model.model_json_schema(), {"type": "null"}]}
                        for name, model in PARAMS.items()
                    },
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class Severity(_Strict):
    name: str = Field(description="Human name, e.g. Critical.")
    description: str = ""
    response_time: Duration = Field(description="How soon a responder must acknowledge.")
    page: str | None = Field(None, description="Who is paged (an escalation or team name).")
    update_every: Duration | None = Field(None, description="Status-update cadence; null: none.")
    public: bool = Field(
        False, description="Whether incidents of this severity go on the status page."
    )
    war_room: bool = Field(
        False, description="Each incident gets a Slack channel of its own (Slack's Web API)."
    )
    bridge: str | None = Field(
        None,
        max_length=500,
        pattern=r"^https://[^\s<>|\"'`]+$",
        description="The conference bridge (an https URL), in the declared message and the API.",
    )
    needs_commander: bool = Field(
        False,
        description="An incident commander must be assigned within the response time; "
        "if none is, chat and the timeline say so.",
    )
    postmortem_within: Duration | None = Field(
        None,
        description="A postmortem is due this long after resolve; overdue ones are named in "
        "chat and in the on-call handoff. Null: none is asked for.",
    )
    page_after: Duration | None = Field(
        None, description="Page only if the incident still fires this long after it is declared."
    )
    pagerduty_severity: Literal["critical", "error", "warning", "info"] | None = Field(
        None,
        description="PagerDuty event severity (default SEV0/1 critical, SEV2 error, else warning)",
    )
    statuspage_impact: Literal["none", "minor", "major", "critical"] | None = Field(
        None, description="Statuspage impact (default: SEV0 critical, SEV1 major, else minor)."
    )
    component_status: ComponentStatus | None = Field(
        None,
        description="Status set on the route's Statuspage components while the incident is open.",
    )


class Route(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    matchers: list[MatcherText] = Field(min_length=1)
    severity: str
    incident_key: str | None = Field(
        None, description="Jinja template over labels; default: groupKey and route."
    )
    runbook: str | None = Field(
        None, pattern=NAME_PATTERN, description="A runbook of policies/runbooks/ (its file name)."
    )
    continue_: bool = Field(False, alias="continue")
    dry_run: bool | None = None
    actions: list[ActionEntry] = Field(default_factory=list)


class DefaultRoute(_Strict):
    severity: str
    incident_key: str | None = None
    dry_run: bool | None = None
    actions: list[ActionEntry] = Field(default_factory=list)


class Allow(_Strict):
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces mitigations may touch; empty: none."""
    workloads: list[str] = Field(
        default_factory=list,
        description="Names of the objects mitigations may change (deployments, ingresses, "
        "applied manifests). With `labels` empty too: any in an allowed namespace.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Label selector (equality): an object carrying all these labels is allowed "
        "too, e.g. {alertpilot.io/mitigate: 'true'}.",
    )


class Guardrails(_Strict):
    """Limits every mitigation obeys, checked by the worker before any call to the API server."""

    dry_run: bool = Field(True, description="Describe mitigations instead of applying them.")
    allow: Allow = Field(default_factory=Allow)
    max_replicas: int = Field(
        50, ge=1, description="Ceiling for any scale-up, whatever the route says."
    )
    max_factor: float = Field(
        3.0, gt=1, description="At most this many times the current replicas."
    )
    cooldown: Duration = Field("10m", description="Between two mitigations of one target.")
    attempts_per_incident: int = Field(2, ge=1, description="Then a human is asked instead.")
    budget_per_hour: int = Field(20, ge=1, description="Mitigations per hour, across all workers.")
    stabilisation: Duration = Field(
        "15m", description="How long an incident stays resolved before its mitigations revert."
    )


class PolicyFile(_Strict):
    severities: dict[str, Severity] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    default: DefaultRoute | None = None
    mitigations: Guardrails | None = None
