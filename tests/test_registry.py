"""One registry of actions: what runs each one, its typed parameters and its name agree."""

from __future__ import annotations

import pytest

from workers.handlers import ACTIONS
from workers.jobs.contract import (
    ACTION_NAMES,
    COMMUNICATION_ACTIONS,
    MITIGATION_ACTIONS,
    ActionRequest,
    Approved,
    TickRequest,
)
from workers.params import PARAMS, MitigationParams
from workers.policy.model import PolicyFile


def test_every_action_has_a_runner_and_typed_parameters() -> None:
    assert set(ACTIONS) == set(PARAMS) == set(ACTION_NAMES)
    for name, action in ACTIONS.items():
        assert action.name == name
        assert action.params is PARAMS[name], name


def test_mitigations_say_what_happens_after_the_incident_and_communication_runs_on() -> None:
    assert {n for n, a in ACTIONS.items() if a.revert is not None} == set(MITIGATION_ACTIONS)


def test_mitigation_parameters_share_the_mitigation_settings() -> None:
    assert {n for n in ACTION_NAMES if issubclass(PARAMS[n], MitigationParams)} == set(
        MITIGATION_ACTIONS
    )
    assert not any(issubclass(PARAMS[n], MitigationParams) for n in COMMUNICATION_ACTIONS)


def test_the_policy_schema_describes_each_actions_parameters_from_its_model() -> None:
    schema = PolicyFile.model_json_schema()
    text = str(schema)
    for name, model in PARAMS.items():
        for field in model.model_fields:
            assert field in text, (name, field)


def test_job_payloads_round_trip_and_a_mistyped_field_fails_as_a_value_error() -> None:
    approved = Approved("p1", "production", "deployment", "api", {"from_revision": 3})
    request = ActionRequest(
        prefix="aptest:",
        incident_id="inc",
        action="rollback",
        transition="declared",
        severity="SEV1",
        params={"changed_within": "1h"},
        attempt=2,
        approved=approved,
    )
    assert ActionRequest.from_json(request.to_json()) == request
    tick = TickRequest("aptest:", "inc", "SEV1", n=3, every=60, public=True)
    assert TickRequest.from_json(tick.to_json()) == tick
    for field, value in [("attempt", "twice"), ("params", ["x"]), ("approved", {"name": "api"})]:
        with pytest.raises(ValueError):
            ActionRequest.from_json({**request.to_json(), field: value})
