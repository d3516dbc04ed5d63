"""Each action's parameters, as a route writes them: one pydantic model per action.

The same models check a policy file (`alertpilot policy validate` reports an
unknown or mistyped key at its `file:line:col`), describe it in the JSON Schema,
and give the worker typed values. They hold route settings only: what a run
adds (the attempt, an approval, a handoff note) travels in the job beside them
(workers/actions.py `ActionRequest`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from workers.incident.durations import parse_duration

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


def _duration(value: str) -> str:
    parse_duration(value)  # DurationError is a ValueError: pydantic reports it
    return value


Duration = Annotated[
    str,
    AfterValidator(_duration),
    WithJsonSchema({"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w))+$"}),
]
ComponentStatus = Literal[
    "operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"
]
Template = Annotated[
    str,
    Field(min_length=1, max_length=253, description="A name, or a template over the labels."),
]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=100_000)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


BRIDGE = Field(None, description="The conference bridge (set from the severity's `bridge`).")


class PageParams(Params):
    routing_key_env: str | None = Field(
        None,
        pattern=ENV_NAME,
        description="Variable (or NAME_FILE) holding the PagerDuty routing key.",
    )
    pagerduty_severity: Literal["critical", "error", "warning", "info"] | None = None
    page_after: Duration | None = Field(
        None, description="Page only if the incident still fires this long after it is declared."
    )
    bridge: str | None = BRIDGE
    runbook: str | None = Field(
        None,
        pattern=r"^https://[^\s<>|\"'`]+$",
        description="A link to the runbook (set from the route's runbook `url`).",
    )


class StatuspageParams(Params):
    components: list[str] | dict[str, ComponentStatus] = Field(
        default_factory=list,
        description="Component ids (the severity's component_status), or id: status.",
    )
    component_status: ComponentStatus | None = None
    impact: Literal["none", "minor", "major", "critical"] | None = None


class NotifyParams(Params):
    bridge: str | None = BRIDGE


class WarRoomParams(Params):
    bridge: str | None = BRIDGE


class MitigationParams(Params):
    namespace: Template | None = Field(
        None, description="Namespace to act in; default: the alert's `namespace` label."
    )
    revert: bool = Field(True, description="Put the change back after the incident.")


class ScaleUpParams(MitigationParams):
    deployment: Template | None = None
    by: Count | None = None
    to: Count | None = None
    factor: Annotated[float, Field(gt=1, le=100, allow_inf_nan=False)] | None = None
    max_replicas: Count | None = None
    repeat: bool = Field(True, description="Try again after the cooldown while it fires.")

    @model_validator(mode="after")
    def _one_amount(self) -> ScaleUpParams:
        given = [name for name in ("by", "to", "factor") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"takes one of by, to and factor, not {' and '.join(given)}")
        return self


class RateLimitParams(MitigationParams):
    ingress: Template | None = None
    deployment: Template | None = None
    rps: Positive | None = None
    connections: Count | None = None
    apply: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="Name of a reviewed manifest in policies/manifests/ (no other may apply).",
    )

    @model_validator(mode="after")
    def _one_form(self) -> RateLimitParams:
        limits = self.rps is not None or self.connections is not None
        if self.apply is not None and limits:
            raise ValueError("either apply: <manifest>, or rps/connections, not both")
        if self.apply is None and not limits:
            raise ValueError("set rps and/or connections, or apply: <manifest>")
        return self


class ApprovalParams(MitigationParams):
    deployment: Template | None = None
    approval: Literal["required", "auto"] = "required"
    approval_expires_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 1800
    approver: Literal["responder", "admin"] = Field(
        "responder", description="Who may approve it: any responder, or an admin only."
    )


class RolloutRestartParams(ApprovalParams):
    pass


class RollbackParams(ApprovalParams):
    changed_within: Duration = "1h"


PARAMS: dict[str, type[Params]] = {
    "page": PageParams,
    "statuspage": StatuspageParams,
    "war_room": WarRoomParams,
    "notify": NotifyParams,
    "scale_up": ScaleUpParams,
    "rate_limit": RateLimitParams,
    "rollout_restart": RolloutRestartParams,
    "rollback": RollbackParams,
}
"""Every action alertpilot knows, with its parameters."""


def problems(action: str, params: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with `params` for `action`: (path below the parameters, message)."""
    try:
        PARAMS[action].model_validate(params)
    except ValidationError as exc:
        # A union's errors name its members ("list[str]"): the member is no place in the file.
        found = [(_place(e["loc"]), _message(e)) for e in exc.errors()]
        # ...and the member that got further says the more useful thing.
        deeper = {loc[:n] for loc, _ in found for n in range(len(loc))}
        return [(loc, message) for loc, message in found if loc not in deeper]
    return []


def _place(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    return tuple(part for part in loc if "[" not in str(part))


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return f"unknown parameter {error['loc'][-1]!r}"
    return str(error["msg"]).removeprefix("Value error, ")
