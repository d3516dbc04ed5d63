"""The `alertpilot` command line in this process: top-level help, --version, jobs failed."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from tests.conftest import REDIS_URL, empty, fetch, fixture, post, run_retries
from webhook import cli
from workers.jobs.contract import CRASH_RETRIES

COMMANDS = ("dev", "serve", "worker", "policy", "replay", "mitigations", "actions", "jobs")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis: Redis) -> None:
    """The command line's environment pointed at the test database and queue."""
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("ALERTPILOT_QUEUE", "aptest")
    monkeypatch.setenv("ALERTPILOT_KEY_PREFIX", "aptest:")


def _page_payload(client: FlaskClient, queue: Queue) -> tuple[str, dict[str, Any]]:
    """A declared incident and its page job's payload, with the queue emptied."""
    reply = post(client, fixture("firing-two-alerts.json")).json
    (incident_id,) = reply["incidents"]
    job = fetch(queue, reply["jobs"][0])
    assert job is not None
    empty(queue)
    payload: dict[str, Any] = job.args[0]
    assert payload["action"] == "page"
    return incident_id, payload


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ")}
    assert set(COMMANDS) <= listed


def test_version_prints_the_installed_version_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"alertpilot {importlib.metadata.version('alertpilot')}\n"


def test_jobs_failed_says_so_when_there_are_none(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["jobs", "failed"]) == 0
    assert capsys.readouterr().out == "no failed jobs\n"


def test_jobs_failed_prints_action_incident_attempts_and_last_error(
    cli_env: None, client: FlaskClient, queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    incident_id, payload = _page_payload(client, queue)
    queue.enqueue(
        "tests.support.jobs.run_refused", payload, job_id="refused-page", retry=CRASH_RETRIES
    )
    run_retries(queue, "refused-page")

    assert cli.main(["jobs", "failed"]) == 0

    (line,) = capsys.readouterr().out.splitlines()
    assert line.split("  ") == [
        "refused-page",
        "page declared",
        f"incident {incident_id}",
        "attempts 1",
        "ActionFailed: PagerDuty answered 400: Event object is invalid",
    ]


@pytest.mark.parametrize(
    ("function", "attempts", "error"),
    [
        # Transient errors: six attempts (the job's own Retry), then ActionFailed.
        ("run_busy", 6, "ActionFailed: gave up after 6 attempts"),
        # A bug: the first run and RQ's three crash retries.
        ("run_buggy", 1 + CRASH_RETRIES.max, "KeyError: 'routing_key'"),
    ],
    ids=["transient", "bug"],
)
def test_jobs_failed_counts_every_attempt(
    cli_env: None,
    client: FlaskClient,
    queue: Queue,
    capsys: pytest.CaptureFixture[str],
    function: str,
    attempts: int,
    error: str,
) -> None:
    _, payload = _page_payload(client, queue)
    queue.enqueue(f"tests.support.jobs.{function}", payload, job_id="j1", retry=CRASH_RETRIES)
    run_retries(queue, "j1")

    assert cli.main(["jobs", "failed"]) == 0

    (line,) = capsys.readouterr().out.splitlines()
    assert f"  attempts {attempts}  " in line
    assert line.split("  ")[-1].startswith(error)


def test_jobs_failed_keeps_a_long_error_to_one_short_line(
    cli_env: None, queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = {"action": "x" * 500, "incident_id": "i1", "transition": "declared"}
    queue.enqueue("tests.support.jobs.run_refused", payload, job_id="malformed")
    run_retries(queue, "malformed")

    assert cli.main(["jobs", "failed"]) == 0

    (line,) = capsys.readouterr().out.splitlines()
    job_id, action, incident, attempts, error = line.split("  ")
    assert (job_id, incident, attempts) == ("malformed", "incident i1", "attempts 1")
    assert action.startswith("xxx") and len(action) <= 80
    assert error.startswith("ActionFailed: malformed job payload: unknown action, got 'xxx")
    assert len(error) <= 200
    assert len(line) <= 400
