"""Workers: one dispatch point, dry-run timeline entries, effects once, stale jobs, retries."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from tests.conftest import empty, fixture, post, run_jobs, timeline
from tests.support import jobs as test_jobs
from workers.actions import HANDLERS
from workers.incident.errors import TransientError
from workers.jobs.contract import CRASH_RETRIES
from workers.jobs.dispatch import RETRY_INTERVALS, execute


def _declare(client: FlaskClient) -> tuple[str, list[str]]:
    response = post(client, fixture("firing-two-alerts.json")).json
    return response["incidents"][0], response["jobs"]


def test_every_declared_action_runs_in_dry_run_onto_thetimeline(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    incident_id, _ = _declare(client)
    run_jobs(queue)
    dry = [e for e in timeline(client, incident_id) if e["kind"] == "dry_run"]
    assert [(e["action"], e["transition"]) for e in dry] == [
        ("page", "declared"),
        ("scale_up", "declared"),
        ("notify", "declared"),  # after the route's runbook ran: it shows its numbers
    ]
    assert "would trigger PagerDuty (error)" in dry[0]["message"]
    assert dry[1]["params"] == {"by": 2, "max_replicas": 20}
    assert redis.hget("aptest:stats:jobs_finished", "page|dry_run") == b"1"


def test_job_run_twice_records_its_effect_once(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    incident_id, job_ids = _declare(client)
    run_jobs(queue)
    job = Job.fetch(job_ids[0], connection=redis, serializer=queue.serializer)
    queue.enqueue_job(job)  # a requeue, or a worker killed after the effect
    run_jobs(queue)
    pages = [e for e in timeline(client, incident_id) if e.get("action") == "page"]
    assert len(pages) == 1
    assert redis.hget("aptest:stats:jobs_finished", "page|dry_run") == b"1"


def test_job_queued_before_resolve_does_nothing_after_it(client: FlaskClient, queue: Queue) -> None:
    incident_id, _ = _declare(client)
    resolved = fixture("one-resolved-one-firing.json")
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
    post(client, resolved)
    run_jobs(queue)
    entries = timeline(client, incident_id)
    skipped = [e["action"] for e in entries if e["kind"] == "skipped"]
    assert skipped == ["page", "scale_up", "notify"]  # notify waited for the runbook
    acted = [(e["action"], e["transition"]) for e in entries if e["kind"] == "dry_run"]
    assert acted == [("page", "resolved"), ("notify", "resolved")]


def _page_payload(client: FlaskClient, queue: Queue, redis: Redis) -> tuple[str, dict[str, Any]]:
    incident_id, job_ids = _declare(client)
    job = Job.fetch(job_ids[0], connection=redis, serializer=queue.serializer)
    empty(queue)
    return incident_id, job.args[0]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    test_jobs.calls.clear()


def test_transient_failure_is_retried_with_backoff_then_succeeds(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    incident_id, payload = _page_payload(client, queue, redis)
    job = queue.enqueue("tests.support.jobs.run_flaky", payload, job_id="flaky-page")
    run_jobs(queue)
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED
    scheduled = queue.scheduled_job_registry
    assert "flaky-page" in scheduled.get_job_ids()
    retry_at = scheduled.get_scheduled_time(job)
    assert retry_at is not None
    scheduled.remove(job)
    queue.enqueue_job(job)  # what the scheduler does when the retry is due
    run_jobs(queue)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    kinds = [e["kind"] for e in timeline(client, incident_id)]
    assert kinds == ["declared", "retried", "dry_run"]
    assert "retry 1 in 30s" in timeline(client, incident_id)[1]["message"]
    assert test_jobs.calls == ["page", "page"]


def test_permanent_failure_lands_in_failed_registry_and_ontimeline(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    incident_id, payload = _page_payload(client, queue, redis)
    queue.enqueue(
        "tests.support.jobs.run_refused", payload, job_id="refused-page", retry=CRASH_RETRIES
    )
    run_jobs(queue)
    assert queue.failed_job_registry.get_job_ids() == ["refused-page"]
    failed = timeline(client, incident_id)[-1]
    assert failed["kind"] == "failed"
    assert "Event object is invalid" in failed["message"]
    assert test_jobs.calls == ["page"]  # not retried
    assert redis.hget("aptest:stats:jobs_finished", "page|failed") == b"1"


def test_transient_failures_give_up_after_the_last_interval(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    incident_id, payload = _page_payload(client, queue, redis)

    def always_busy(*_: object) -> Any:
        raise TransientError("503 from PagerDuty")

    decisions = [
        execute(redis, payload, {"page": always_busy}, job_id="j", attempt=n).retry_in
        for n in range(len(RETRY_INTERVALS) + 1)
    ]
    assert decisions == [*RETRY_INTERVALS, None]
    assert timeline(client, incident_id)[-1]["kind"] == "failed"
    assert "gave up after 6 attempts" in timeline(client, incident_id)[-1]["message"]


def test_malformed_job_payload_is_a_failure(redis: Redis) -> None:
    decision = execute(redis, {"action": "teleport"}, HANDLERS, job_id="bad")
    assert decision.outcome == "failed"
    assert "unknown action" in decision.message


def test_unexpected_error_is_on_the_timeline_and_the_job_is_retried(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    """A bug or an unwrapped vendor error: visible, and RQ gets the job back."""
    incident_id, payload = _page_payload(client, queue, redis)
    job = queue.enqueue(
        "tests.support.jobs.run_buggy", payload, job_id="buggy-page", retry=CRASH_RETRIES
    )
    run_jobs(queue)
    assert job.get_status(refresh=True) == JobStatus.SCHEDULED
    failed = timeline(client, incident_id)[-1]
    assert (failed["kind"], failed["message"]) == ("failed", "unexpected KeyError; see worker log")
    assert "routing_key" not in failed["message"]


def test_two_runs_of_one_job_at_once_act_once(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    incident_id, payload = _page_payload(client, queue, redis)
    results: list[str] = []

    def run() -> None:
        decision = execute(redis, payload, test_jobs.SLOW_HANDLERS, job_id="same-job")
        results.append(decision.outcome)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == ["dry_run", "duplicate"]
    assert test_jobs.calls == ["page:declared:start", "page:declared:end"]
    assert [e["kind"] for e in timeline(client, incident_id)] == ["declared", "dry_run"]


def test_resolve_job_waits_for_the_declared_job_of_the_same_action(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    """Two workers: the page's resolve must not overtake its trigger."""
    _, declared = _page_payload(client, queue, redis)
    resolved = {**declared, "transition": "resolved"}
    first = threading.Thread(
        target=execute, args=(redis, declared, test_jobs.SLOW_HANDLERS), kwargs={"job_id": "d"}
    )
    first.start()
    time.sleep(0.1)  # the declared job holds the action lock now
    execute(redis, resolved, test_jobs.SLOW_HANDLERS, job_id="r")
    first.join(timeout=10)
    assert test_jobs.calls == [
        "page:declared:start",
        "page:declared:end",
        "page:resolved:start",
        "page:resolved:end",
    ]


def test_job_that_stays_transient_ends_in_the_failed_registry_through_rq(
    client: FlaskClient, queue: Queue, redis: Redis
) -> None:
    incident_id, payload = _page_payload(client, queue, redis)
    job = queue.enqueue(
        "tests.support.jobs.run_busy", payload, job_id="busy-page", retry=CRASH_RETRIES
    )
    for _ in range(len(RETRY_INTERVALS) + 2):
        run_jobs(queue)
        if job.get_status(refresh=True) != JobStatus.SCHEDULED:
            break
        queue.scheduled_job_registry.remove(job)
        queue.enqueue_job(job)  # the retry is due
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert queue.failed_job_registry.get_job_ids() == ["busy-page"]
    assert len(test_jobs.calls) == len(RETRY_INTERVALS) + 1
    kinds = [e["kind"] for e in timeline(client, incident_id)]
    assert kinds == ["declared"] + ["retried"] * len(RETRY_INTERVALS) + ["failed"]
