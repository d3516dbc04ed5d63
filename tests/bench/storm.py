"""Storm benchmark: 10,000 alerts in 100 groups into the real `serve`, pages for real.

Run with `make bench` (or `python -m tests.bench.storm [--groups 100 --alerts 100]`).

`alertpilot serve` (gunicorn, default workers) and two `alertpilot worker`
processes run with ALERTPILOT_DRY_RUN=false against loopback stand-ins: PagerDuty
over HTTPS (tests/support/pagerduty_standin.py, its CA in ALERTPILOT_CA_BUNDLE)
and a chat webhook (notify). Mitigations stay in dry run: the shipped
`mitigations.dry_run: true`.

The policy set is the shipped one plus one bench-only route in a temporary copy:
the shipped set maps nothing to SEV0, so `BenchOutage` alerts get a SEV0 route
(page, notify).

Each group is one service under the shipped api-latency route (SEV2: page,
notify, scale_up). Its alerts arrive as Alertmanager sends them: each
notification holds the group's whole state, `--batch` more alerts each time, one
notification at a time per group, many groups at once. Halfway through, one
SEV0 notification goes in.

Figures, each against a baseline from the same run:
- drain: first post to the last job done, against two workers draining as many
  no-op jobs (tests/bench/noop.py);
- SEV0 page delay: its 200 to its trigger reaching the stand-in, against the
  same with the workers idle, before the storm;
- resident memory of a gunicorn worker and an RQ worker, against before the storm;
- and the counts that must hold: one incident and one page trigger per group, no
  alert lost, no page twice.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from tests.bench.harness import (
    PREFIX,
    START_TIMEOUT_S,
    BenchError,
    Child,
    Children,
    alertpilot_env,
    answers,
    bench_redis,
    children_of,
    ended,
    enqueue_noops,
    flush,
    free_port,
    job_span,
    memory_kib,
    post_json,
    stop,
    wait_until,
)
from tests.bench.storm_alerts import outage, policies, storm_group
from tests.support.chat_standin import ChatStandIn
from tests.support.pagerduty_standin import PagerDutyStandIn
from tests.support.tls import standin_ca
from workers.incident.keys import Keys
from workers.incident.record import load_incident

NAME = "storm"
QUEUE = f"{PREFIX}{NAME}"
ROUTING_KEY = "b" * 32
CLIENTS = 8
WORKERS = 2
DRAIN_TIMEOUT_S = 300.0
PAGE_TIMEOUT_S = 120.0


class TimedPagerDuty(PagerDutyStandIn):
    """The stand-in, noting when each dedup_key's first valid trigger arrived (monotonic).

    It hooks the stand-in's `_apply`, called under its lock for each accepted event: the
    stand-in keeps no arrival times of its own.
    """

    def __init__(self) -> None:
        if not callable(getattr(PagerDutyStandIn, "_apply", None)):
            raise BenchError("PagerDutyStandIn has no _apply(routing_key, action, dedup_key)")
        super().__init__()
        self.arrived: dict[str, float] = {}

    def _apply(self, routing_key: str, action: str, dedup_key: str) -> None:
        if action == "trigger":
            self.arrived.setdefault(dedup_key, time.monotonic())
        super()._apply(routing_key, action, dedup_key)


@dataclass
class Posted:
    """What the storm's 200s said: incidents and jobs per group, and when it ended."""

    incidents: dict[int, set[str]] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    notifications: int = 0
    started: float = field(default_factory=time.monotonic)
    last_answer: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, group: int, reply: dict[str, Any]) -> None:
        with self.lock:
            self.incidents.setdefault(group, set()).update(reply["incidents"])
            self.jobs += reply["jobs"]
            self.notifications += 1
            self.last_answer = time.monotonic()


Memory = tuple[tuple[int, int], tuple[int, int]]
"""(RSS, peak) in KiB of a gunicorn worker, then of an RQ worker."""


@dataclass
class Service:
    base: str
    serve: Child
    workers: list[Child]
    redis: Redis

    def memory(self) -> Memory:
        """(RSS, peak) in KiB of the largest gunicorn worker and the largest RQ worker
        (its main process, not a work horse)."""
        web = max(memory_kib(pid) for pid in children_of(self.serve.pid))
        rq = max(memory_kib(w.pid) for w in self.workers)
        return web, rq


def start(children: Children, scratch: Path, pd: TimedPagerDuty, chat: ChatStandIn) -> Service:
    port = free_port()
    env = alertpilot_env(
        scratch,
        NAME,
        ALERTPILOT_BIND=f"127.0.0.1:{port}",
        ALERTPILOT_POLICIES_DIR=str(policies(scratch)),
        ALERTPILOT_DRY_RUN="false",
        ALERTPILOT_PAGERDUTY_EVENTS_URL=pd.base_url,
        ALERTPILOT_PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
        ALERTPILOT_CHAT_WEBHOOK_URL=chat.slack_url,
        ALERTPILOT_CA_BUNDLE=pd.ca_path,
    )
    serve = children.alertpilot("serve", ["serve"], env)
    workers = [children.alertpilot(f"worker{n}", ["worker"], env) for n in range(WORKERS)]
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: answers(f"{base}/readyz", 200), "serve ready", serve, timeout=START_TIMEOUT_S
    )
    redis = bench_redis()
    queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
    wait_until(
        lambda: Worker.count(queue=queue) == WORKERS,
        "workers registered",
        *workers,
        timeout=START_TIMEOUT_S,
    )
    return Service(base, serve, workers, redis)


def quiet_page_delay(service: Service, pd: TimedPagerDuty) -> float:
    """A SEV0 notification to idle workers: its page trigger's delay after the 200. Its
    jobs (page, notify) are waited for, so the storm starts on an empty queue."""
    reply = post_json(f"{service.base}/api/v1/alertmanager", outage("quiet"))
    answered = time.monotonic()
    (incident,) = reply["incidents"]
    wait_until(
        lambda: incident in pd.arrived, "the SEV0 page", *service.workers, timeout=PAGE_TIMEOUT_S
    )
    wait_until(
        lambda: sum(ended(service.redis, QUEUE)) >= len(reply["jobs"]),
        "the SEV0's jobs done",
        *service.workers,
        timeout=PAGE_TIMEOUT_S,
    )
    return pd.arrived[incident] - answered


def storm(
    service: Service, pd: TimedPagerDuty, groups: int, alerts: int, batch: int
) -> tuple[Posted, float, float]:
    """Post the storm; what it answered, the storm SEV0's delay and the drain time."""
    url = f"{service.base}/api/v1/alertmanager"
    posted = Posted()
    steps = [*range(batch, alerts, batch), alerts]

    def one_group(group: int) -> None:
        for size in steps:
            posted.add(group, post_json(url, storm_group(group, size)))

    before = sum(ended(service.redis, QUEUE))
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(one_group, g) for g in range(groups)]
        half = groups * len(steps) // 2
        wait_until(
            lambda: posted.notifications >= half or any(f.done() for f in futures),
            "half the storm",
            timeout=DRAIN_TIMEOUT_S,
        )
        sev0 = post_json(url, outage("storm"))
        sev0_answered = time.monotonic()
        for future in futures:
            future.result(timeout=DRAIN_TIMEOUT_S)
    (sev0_incident,) = sev0["incidents"]
    # Each storm incident's route (the shipped HighLatency ones) runs its runbook too.
    runbooks = len({i for found in posted.incidents.values() for i in found})
    expected = before + len(posted.jobs) + len(sev0["jobs"]) + runbooks
    wait_until(
        lambda: sum(ended(service.redis, QUEUE)) >= expected,
        "the storm drained",
        *service.workers,
        timeout=DRAIN_TIMEOUT_S,
    )
    drained = time.monotonic() - posted.started
    wait_until(lambda: sev0_incident in pd.arrived, "the storm's SEV0 page", timeout=10)
    return posted, pd.arrived[sev0_incident] - sev0_answered, drained


def noop_drain(children: Children, scratch: Path, redis: Redis, jobs: int) -> float:
    """Seconds for two `alertpilot worker --burst` to drain `jobs` no-op jobs."""
    name = "storm-noop"
    enqueue_noops(redis, f"{PREFIX}{name}", jobs)
    env = alertpilot_env(scratch / "noop", name)
    burst = [children.alertpilot(f"noop{n}", ["worker", "--burst"], env) for n in range(WORKERS)]
    for worker in burst:
        if worker.wait(DRAIN_TIMEOUT_S) != 0:
            raise BenchError(f"no-op worker failed\n{worker.tail()}")
    done, span = job_span(redis, f"{PREFIX}{name}")
    if done != jobs:
        raise BenchError(f"{jobs} no-op jobs queued, {done} finished")
    return span


def checks(
    service: Service, pd: TimedPagerDuty, posted: Posted, groups: int, alerts: int
) -> dict[str, int]:
    ids = {i for found in posted.incidents.values() for i in found}
    triggers = Counter(e["dedup_key"] for e in pd.events("trigger"))
    keys = Keys(f"{PREFIX}{NAME}:")
    recorded = 0
    for incident_id in ids:
        incident = load_incident(service.redis, keys, incident_id)
        recorded += len(incident.firing) if incident is not None else 0
    return {
        "groups": groups,
        "incidents": len(ids),
        "groups with more than one incident": sum(
            1 for s in posted.incidents.values() if len(s) > 1
        ),
        "page triggers": sum(triggers[i] for i in ids),
        "incidents never paged": sum(1 for i in ids if triggers[i] == 0),
        "incidents paged twice or more": sum(1 for i in ids if triggers[i] > 1),
        "alerts posted": groups * alerts,
        "alerts firing in the incidents": recorded,
        "failed jobs": ended(service.redis, QUEUE)[1],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--alerts", type=int, default=100, help="alerts per group")
    parser.add_argument("--batch", type=int, default=10, help="alerts added per notification")
    args = parser.parse_args(argv)
    redis = bench_redis()
    flush(redis)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="apbench-storm-") as tmp,
            TimedPagerDuty() as pd,
            ChatStandIn() as chat,
            Children(Path(tmp) / "logs") as children,
        ):
            service = start(children, Path(tmp), pd, chat)
            idle = service.memory()
            quiet = quiet_page_delay(service, pd)
            posted, sev0, drained = storm(service, pd, args.groups, args.alerts, args.batch)
            after = service.memory()
            for worker in service.workers:
                stop(worker)
            counts = checks(service, pd, posted, args.groups, args.alerts)
            chat_messages = len(chat.messages)
            baseline = noop_drain(children, Path(tmp), redis, len(posted.jobs))
    finally:
        flush(redis)
        shutil.rmtree(Path(standin_ca().ca_path).parent, ignore_errors=True)
    report(args, posted, counts, chat_messages, (quiet, sev0), (drained, baseline), (idle, after))


def report(
    args: argparse.Namespace,
    posted: Posted,
    counts: dict[str, int],
    chat_messages: int,
    delays: tuple[float, float],
    drains: tuple[float, float],
    memory: tuple[Memory, Memory],
) -> None:
    (quiet, sev0), (drained, baseline), (idle, after) = delays, drains, memory
    intake = posted.last_answer - posted.started
    jobs = len(posted.jobs)
    print(
        f"storm benchmark: {args.groups * args.alerts} alerts in {args.groups} groups, "
        f"{posted.notifications} notifications ({args.batch} more alerts each) from {CLIENTS} "
        f"clients; serve + {WORKERS} `alertpilot worker`, pages and chat for real (stand-ins)"
    )
    rows = [
        ("intake", f"{intake:.1f} s", "", f"{posted.notifications / intake:.0f} notifications/s"),
        (
            "drain",
            f"{drained:.1f} s",
            f"{drained / baseline:.2f}x",
            f"first post to last job done ({jobs} jobs); {jobs} no-op jobs: {baseline:.1f} s",
        ),
        (
            "SEV0 page delay",
            f"{sev0:.2f} s",
            f"{sev0 / quiet:.1f}x",
            f"its 200 to its trigger, mid-storm; with idle workers: {quiet:.2f} s",
        ),
    ]
    for name, before, now in (
        ("RSS gunicorn worker", idle[0], after[0]),
        ("RSS RQ worker", idle[1], after[1]),
    ):
        rows.append(
            (
                name,
                f"{now[0] / 1024:.1f} MiB",
                f"{now[0] / before[0]:.2f}x",
                f"after the storm (peak {now[1] / 1024:.1f}); before: {before[0] / 1024:.1f} MiB",
            )
        )
    for name, value, ratio, note in rows:
        print(f"  {name:<20} {value:>9} {ratio:>7}  {note}")
    for name, count in [*counts.items(), ("chat messages", chat_messages)]:
        print(f"  {name:<38} {count}")


if __name__ == "__main__":
    main()
