"""What the process benchmarks share: Redis db 13, free ports, child processes, /proc.

Every child is started in a session of its own (its pid is its process group), so
`Children.__exit__` stops it and everything it forked (gunicorn's workers, RQ's work
horses and scheduler) by that group id, SIGTERM then SIGKILL, even when the bench
fails. Every wait is bounded. Only keys under `PREFIX` and RQ's `rq:` keys of db 13
(a database no test uses) are written, and `flush` deletes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"
PREFIX = "apbench-"
"""Every bench key prefix and queue name starts with this."""
TOKEN = "bench-token-5d2e"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 15.0
POLL_S = 0.05
LOG_TAIL_CHARS = 2000

# Loopback traffic never goes through a proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(RuntimeError):
    """The bench could not measure what it set out to (a child died, a wait ran out)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(scratch: Path, **overrides: str) -> dict[str, str]:
    """This environment without any alertpilot setting, plus `overrides`. TMPDIR and
    XDG_RUNTIME_DIR point into `scratch` (gunicorn's control socket, metrics files)."""
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALERTPILOT_") and k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(PYTHONUNBUFFERED="1", TMPDIR=str(scratch), XDG_RUNTIME_DIR=str(scratch))
    env.update(overrides)
    return env


def alertpilot_env(scratch: Path, name: str, **overrides: str) -> dict[str, str]:
    """`serve` / `worker` settings: db 13, key prefix and queue `apbench-<name>`, the
    shipped policies, the bench token; `overrides` last."""
    settings = {
        "REDIS_URL": REDIS_URL,
        "ALERTPILOT_WEBHOOK_TOKEN": TOKEN,
        "ALERTPILOT_POLICIES_DIR": str(REPO / "policies"),
        "ALERTPILOT_KEY_PREFIX": f"{PREFIX}{name}:",
        "ALERTPILOT_QUEUE": f"{PREFIX}{name}",
    }
    return environment(scratch, **{**settings, **overrides})


# --- child processes ----------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self) -> str:
        return f"--- {self.name} ({self.log}) ---\n{_tail(self.log)}"

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name} still running after {timeout:.0f}s") from None


@dataclass
class Children:
    """A context manager that stops every child it started when it exits."""

    logs: Path
    started: list[Child] = field(default_factory=list)

    def __enter__(self) -> Self:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for child in reversed(self.started):
            stop(child)
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            for child in self.started:
                print(child.tail(), file=sys.stderr)

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def alertpilot(self, name: str, args: list[str], env: Mapping[str, str]) -> Child:
        """`alertpilot ARGS` (the console script runs the same `webhook.cli:main`)."""
        return self.start(name, [sys.executable, "-m", "webhook.cli", *args], env)


def stop(child: Child) -> None:
    """SIGTERM to the child's process group, then SIGKILL to what is left of it."""
    group = child.pid
    if child.process.poll() is None or _group_alive(group):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    if child.process.poll() is None or _group_alive(group):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        child.process.wait(timeout=STOP_TIMEOUT_S)


def wait_until(condition: Callable[[], bool], what: str, *children: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for child in children:
            if child.process.poll() is not None:
                raise BenchError(f"{child.name} exited before {what}\n{child.tail()}")
        if time.monotonic() > deadline:
            tails = "\n".join(c.tail() for c in children)
            raise BenchError(f"no {what} within {timeout:.0f}s\n{tails}")
        time.sleep(POLL_S)


# --- HTTP ---------------------------------------------------------------------------


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=HTTP_TIMEOUT_S) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_json(url: str, doc: Any) -> dict[str, Any]:
    """POST a notification with the bench token; its JSON answer, which must be a 200."""
    status, body = http("POST", url, json.dumps(doc).encode(), AUTH)
    if status != 200:
        raise BenchError(f"POST {url}: {status} {body[:300]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def answers(url: str, status: int | None = None) -> bool:
    """GET `url` answers `status` (any status when None)."""
    try:
        code, _ = http("GET", url)
    except OSError:
        return False
    return status is None or code == status


# --- /proc --------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _group_alive(group: int) -> bool:
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and fields[2] == str(group) and fields[0] not in ("Z", "X"):
            return True
    return False


def children_of(pid: int) -> list[int]:
    found = []
    for child in _pids():
        fields = _stat(child)
        if fields is not None and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.append(child)
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process: resident now, and the most it has been."""
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(values["VmRSS"].split()[0]), int(values["VmHWM"].split()[0])


# --- Redis and RQ -------------------------------------------------------------------


def bench_redis() -> Redis:
    redis = Redis.from_url(REDIS_URL)
    redis.ping()
    return redis


def flush(redis: Redis) -> int:
    """Delete the bench's keys in db 13 (its prefixes, and RQ's); how many there were."""
    deleted = 0
    for pattern in (f"{PREFIX}*", "rq:*"):
        batch = list(redis.scan_iter(match=pattern, count=1000))
        for start in range(0, len(batch), 500):
            deleted += int(redis.delete(*batch[start : start + 500]))
    return deleted


def queues(redis: Redis, name: str) -> list[Queue]:
    """The queue `name` and any lanes of it (`name-...`) that RQ knows of."""
    return [
        q
        for q in Queue.all(connection=redis, serializer=JSONSerializer)
        if q.name == name or q.name.startswith(f"{name}-")
    ]


def queued(redis: Redis, name: str) -> int:
    return sum(q.count for q in queues(redis, name))


def ended(redis: Redis, name: str) -> tuple[int, int]:
    """(finished, failed) jobs in the registries of `name` and its lanes."""
    found = queues(redis, name)
    finished = sum(q.finished_job_registry.count for q in found)
    failed = sum(q.failed_job_registry.count for q in found)
    return finished, failed


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


NOOP = "tests.bench.noop.noop"


def enqueue_noops(redis: Redis, name: str, count: int) -> None:
    """`count` no-op jobs on queue `name`, with RQ's own defaults, in one round trip."""
    queue = Queue(name, connection=redis, serializer=JSONSerializer)
    queue.enqueue_many([Queue.prepare_data(NOOP, job_id=f"noop-{i}") for i in range(count)])


def job_span(redis: Redis, name: str) -> tuple[int, float]:
    """Finished jobs of `name` and its lanes, and the seconds from the first one's start
    to the last one's end (a worker's start-up is not in it)."""
    ids = [i for q in queues(redis, name) for i in q.finished_job_registry.get_job_ids()]
    jobs = [
        j
        for j in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer)
        if j is not None and j.started_at is not None and j.ended_at is not None
    ]
    if not jobs:
        return 0, 0.0
    first = min(j.started_at for j in jobs if j.started_at is not None)
    last = max(j.ended_at for j in jobs if j.ended_at is not None)
    return len(jobs), (last - first).total_seconds()
