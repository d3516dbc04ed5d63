"""One registry of actions: what runs each one, its typed parameters and its name agree."""

from __future__ import annotations

from workers.handlers import ACTIONS
from workers.jobs.contract import ACTION_NAMES, COMMUNICATION_ACTIONS, MITIGATION_ACTIONS
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
