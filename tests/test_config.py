"""The one configuration tree: every variable parsed once, every default written once, a bad
value stops the process with one line naming the variable (never its secret value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.cli import main
from workers.config import Integrations, Settings, SettingsError


def test_an_empty_environment_gives_the_defaults_written_on_the_fields() -> None:
    parsed = Settings.from_env({})
    assert parsed == Settings(integrations=Integrations(env={}))


@pytest.mark.parametrize("value", ["", "elsewhere"])
def test_the_policy_directory_is_one_value_for_receiver_workers_and_templates(
    value: str,
) -> None:
    settings = Settings.from_env({"ALERTPILOT_POLICIES_DIR": value})
    expected = Path(value or "policies")
    assert settings.policies_dir == expected
    assert settings.integrations.templates_dir == expected / "templates"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALERTPILOT_DRY_RUN", "maybe", "ALERTPILOT_DRY_RUN: must be true or false"),
        ("ALERTPILOT_DEDUP_TTL", "7 days", "ALERTPILOT_DEDUP_TTL:"),
        ("ALERTPILOT_WEB_CONCURRENCY", "0", "ALERTPILOT_WEB_CONCURRENCY: must be at least 1"),
        ("ALERTPILOT_PAGERDUTY_EVENTS_URL", "http://x", "ALERTPILOT_PAGERDUTY_EVENTS_URL:"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: must start with"),
    ],
)
def test_a_bad_value_stops_every_command_with_one_line_naming_it(
    variable: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["policy", "validate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"alertpilot: {message}")
    assert err.count("\n") == 1


def test_a_secret_read_from_a_file_is_never_echoed_when_its_neighbour_is_wrong(
    tmp_path: Path,
) -> None:
    password = tmp_path / "password"
    password.write_text("hunter2-secret\n")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"ALERTPILOT_WEBHOOK_PASSWORD_FILE": str(password)})
    assert "ALERTPILOT_WEBHOOK_USERNAME" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    settings = Settings.from_env(
        {"ALERTPILOT_WEBHOOK_USERNAME": "am", "ALERTPILOT_WEBHOOK_PASSWORD_FILE": str(password)}
    )
    assert settings.webhook_password == "hunter2-secret"
    assert "hunter2" not in repr(settings)
