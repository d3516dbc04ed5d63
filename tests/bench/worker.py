"""Worker benchmark: alertpilot's jobs per second against RQ's own no-op job, one worker.

Run with `make bench` (or `python -m tests.bench.worker [--incidents 100]`).

- baseline: `3 x incidents` no-op jobs (tests/bench/noop.py, queued with RQ's own
  defaults) drained by `alertpilot worker --burst`: the same process, worker class
  and set-up as production, whatever webhook/worker.py makes of them now, with
  nothing to do per job but RQ's own work (dequeue, fork, bookkeeping);
- alertpilot: `incidents` new SEV2 incidents posted through the app (each queues
  page, notify and scale_up under the shipped policies, dry run), drained the same way.

Rates are jobs over the span from the first job's start to the last one's end (the
worker's start-up is left out; the wall time of the whole process is shown too).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Worker

from tests.bench.harness import (
    AUTH,
    PREFIX,
    REDIS_URL,
    REPO,
    TOKEN,
    BenchError,
    Children,
    alertpilot_env,
    bench_redis,
    ended,
    enqueue_noops,
    flush,
    job_span,
)
from webhook.app import create_app
from workers.config import Settings

FIXTURE = REPO / "tests" / "fixtures" / "alertmanager" / "firing-two-alerts.json"
DRAIN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Drained:
    jobs: int
    span_s: float
    wall_s: float
    failed: int

    @property
    def rate(self) -> float:
        return self.jobs / self.span_s if self.span_s else 0.0


def worker_class() -> str:
    """The RQ worker class `alertpilot worker` builds, as found from webhook/worker.py: the
    most derived rq.Worker subclass in it or in the modules of what it calls."""
    import webhook.worker as module

    places = [module] + [
        sys.modules[value.__module__]
        for value in vars(module).values()
        if inspect.isfunction(value) and value.__module__ in sys.modules
    ]
    found = {
        value
        for place in places
        for value in vars(place).values()
        if inspect.isclass(value) and issubclass(value, Worker)
    }
    leaves = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    return f"{leaves[0].__module__}.{leaves[0].__qualname__}" if len(leaves) == 1 else "unknown"


def sev2_incident(i: int) -> dict[str, Any]:
    """A one-alert notification of a new group: api-latency, SEV2 (page, notify, scale_up)."""
    doc = json.loads(FIXTURE.read_text())
    doc["alerts"] = doc["alerts"][:1]
    service = f"svc-w{i}"
    doc["groupKey"] = f'{{}}:{{alertname="HighLatency", service="{service}"}}'
    doc["groupLabels"]["service"] = doc["commonLabels"]["service"] = service
    doc["alerts"][0]["labels"]["service"] = service
    doc["alerts"][0]["fingerprint"] = f"{i:016x}"
    return doc


def post_incidents(redis: Redis, name: str, count: int) -> int:
    """`count` new SEV2 incidents through the app (Flask's client, real Redis); jobs queued."""
    settings = Settings(
        redis_url=REDIS_URL,
        policies_dir=REPO / "policies",
        webhook_token=TOKEN,
        key_prefix=f"{PREFIX}{name}:",
        queue_name=f"{PREFIX}{name}",
    )
    client = create_app(settings, redis=redis, registry=CollectorRegistry()).test_client()
    jobs = 0
    for i in range(count):
        answer = client.post(
            "/api/v1/alertmanager", data=json.dumps(sev2_incident(i)), headers=AUTH
        )
        reply = answer.json or {}
        if reply.get("status") != "accepted" or len(reply["jobs"]) != 3:
            raise BenchError(f"incident {i}: {answer.status_code} {reply}")
        jobs += len(reply["jobs"]) + 1  # and the route's runbook run (policies/runbooks)
    return jobs


def drain(redis: Redis, children: Children, scratch: Path, name: str, expected: int) -> Drained:
    """Run `alertpilot worker --burst` on queue `name` until it exits."""
    env = alertpilot_env(scratch / name, name)
    start = time.monotonic()
    worker = children.alertpilot(f"worker-{name}", ["worker", "--burst"], env)
    code = worker.wait(DRAIN_TIMEOUT_S)
    wall = time.monotonic() - start
    if code != 0:
        raise BenchError(f"worker exited with {code}\n{worker.tail()}")
    jobs, span = job_span(redis, f"{PREFIX}{name}")
    failed = ended(redis, f"{PREFIX}{name}")[1]
    if jobs + failed != expected:
        raise BenchError(f"{expected} jobs queued, {jobs} finished, {failed} failed")
    return Drained(jobs, span, wall, failed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100, help="new SEV2 incidents")
    args = parser.parse_args(argv)
    redis = bench_redis()
    flush(redis)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="apbench-worker-") as tmp,
            Children(Path(tmp) / "logs") as children,
        ):
            jobs = post_incidents(redis, "worker", args.incidents)
            enqueue_noops(redis, f"{PREFIX}noop", jobs)
            noop = drain(redis, children, Path(tmp), "noop", jobs)
            real = drain(redis, children, Path(tmp), "worker", jobs)
    finally:
        flush(redis)
    print(f"worker benchmark: one `alertpilot worker --burst` ({worker_class()}), {jobs} jobs each")
    print(f"  {'case':<44} {'jobs/s':>7} {'vs no-op':>8} {'span':>8} {'wall':>7}  failed")
    cases = (
        ("RQ no-op job", noop),
        (f"{args.incidents} SEV2 incidents (page, notify, scale_up)", real),
    )
    for label, run in cases:
        print(
            f"  {label:<44} {run.rate:7.1f} {run.rate / noop.rate:7.2f}x "
            f"{run.span_s:6.1f} s {run.wall_s:5.1f} s  {run.failed}"
        )


if __name__ == "__main__":
    main()
