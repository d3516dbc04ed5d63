"""Found by a hostile review of this session's changes, each a test that failed then: a
scheduler killed outright or stalled by a Redis that stops answering, a queue name that
is another installation's lane, incident keys that validate but fail or vary at intake,
or that take seconds to compile."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import REDIS_URL, REPO, TOKEN, fixture, post, write_policy
from tests.support.worker_process import wait_for, worker_process
from webhook.app import create_app
from workers.config import Settings, SettingsError
from workers.jobs.contract import enqueue
from workers.policy import PolicyError, load_policy
from workers.policy.engine import TEMPLATES, key_template_problem, render_key
from workers.runner import LOOP_FILE, MAINTENANCE_SECONDS, MAX_BACKOFF, Scheduler, make_worker

RECORD = "tests.support.jobs.record"


def _child(code: str, *args: object, timeout: float) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; the JSON object it prints last."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s")
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _route(name: str, matcher: str, *, key: str | None = None, severity: str = "SEV2") -> str:
    text = f"  - name: {name}\n    matchers: [{json.dumps(matcher)}]\n    severity: {severity}\n"
    if key is not None:
        text += f"    incident_key: {json.dumps(key)}\n"
    return text


# 1. Lanes


def test_a_queue_name_that_is_another_installations_lane_is_refused() -> None:
    """`payments-comms` would have the very lanes of the installation named `payments`:
    each one's workers would run the other's pages and mitigations."""
    assert Settings.from_env({"ALERTPILOT_QUEUE": "payments"}).queue_name == "payments"
    for name in ("payments-comms", "payments-urgent"):
        with pytest.raises(SettingsError, match=f"ALERTPILOT_QUEUE: must not end in .*{name}"):
            Settings.from_env({"ALERTPILOT_QUEUE": name})


# 2. workers/runner.py


def test_a_scheduler_killed_outright_is_back_within_maintenance_seconds(
    tmp_path: Path, redis: Redis
) -> None:
    """runner.py: "maintenance runs every MAINTENANCE_SECONDS, so a scheduler killed
    outright is back within that". An idle RQ worker runs maintenance only between
    dequeues, and its BLPOP waits dequeue_timeout (worker_ttl - 15 = 405 s): a job due
    after the kill waits minutes (in production the liveness probe restarts the pod
    first, as `well()` is False while the dead scheduler's locks are held)."""
    queue_name = "apkill"
    log = tmp_path / "worker.log"
    with worker_process(REDIS_URL, queue_name, tmp_path):
        wait_for("the scheduler lock", lambda: redis.exists(f"rq:scheduler-lock:{queue_name}"), 60)

        def scheduler_pid() -> int:
            for key in redis.scan_iter("rq:scheduler:*"):
                pid = int(redis.hget(key, "pid") or 0)
                if pid:
                    return pid
            return 0

        wait_for("the scheduler process", scheduler_pid, 30)
        os.kill(scheduler_pid(), signal.SIGKILL)  # a child of the worker this test started
        time.sleep(2)  # the worker is idle in its BLPOP by now
        due = datetime.now(UTC) + timedelta(seconds=1)
        queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
        enqueue(queue, RECORD, {"key": "aptest:ran", "name": "after-kill"}, "job-after", at=due)
        deadline = time.monotonic() + MAINTENANCE_SECONDS + 15
        while time.monotonic() < deadline and not redis.lrange("aptest:ran", 0, -1):
            time.sleep(0.2)
        assert redis.lrange("aptest:ran", 0, -1), (
            f"the job due 1 s after the scheduler died did not run within "
            f"{MAINTENANCE_SECONDS + 15} s; worker log:\n{log.read_text()[-2000:]}"
        )


class _FreezableProxy:
    """A loopback TCP proxy to Redis that can stop forwarding (a Redis that hangs, or a
    network partition without RST: the peer is silent, no error arrives)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                self._shut(sink)
                return
            while self.frozen.is_set() and not self.closed:
                time.sleep(0.05)
            if self.closed:
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for sock in self.sockets:
            self._shut(sock)


def test_the_scheduler_loop_goes_round_while_redis_does_not_answer(
    tmp_path: Path, redis: Redis
) -> None:
    """The liveness check needs the scheduler's loop to go round (LOOP_STALE, 60 s) and
    'a Redis outage must not restart the worker pods'. A Redis that stops answering
    (node lost, partition without RST) raises no error: the scheduler blocks in recv for
    the worker connection's socket_timeout (RQ sets 415 s), its loop file goes stale,
    `well()` turns False and the probe restarts the pod during the outage."""
    url = redis.connection_pool.connection_kwargs
    proxy = _FreezableProxy(url.get("host", "127.0.0.1"), int(url.get("port", 6379)))
    # The connection the worker hands its scheduler: RQ raised its socket_timeout to 415 s.
    through = Redis(host="127.0.0.1", port=proxy.port, db=int(url.get("db", 0)))
    worker = make_worker(through, "aphang", heartbeat_dir=tmp_path)
    scheduler = Scheduler(worker.queues, connection=worker.connection, serializer=JSONSerializer)
    scheduler.heartbeat_dir = tmp_path
    scheduler._install_signal_handlers = lambda: None  # type: ignore[method-assign]  # a thread
    scheduler.acquire_locks()
    runner = threading.Thread(target=scheduler.work, daemon=True)
    runner.start()
    loop = tmp_path / LOOP_FILE
    try:
        wait_for("the scheduler's first rounds", loop.exists, 10)
        time.sleep(1.5)
        proxy.frozen.set()
        time.sleep(4 * MAX_BACKOFF + 2)
        age = time.time() - loop.stat().st_mtime
        assert age < 2 * MAX_BACKOFF + 1, f"no round of the scheduler's loop for {age:.1f} s"
    finally:
        scheduler._stop_requested = True
        proxy.close()  # the blocked read ends; the loop sees the stop
        runner.join(timeout=5)  # a daemon thread; its retries reach only the closed proxy
        through.close()


# 3. Intake: the process's resend cache


def _redis_answer(settings: Settings, redis: Redis, doc: dict[str, Any]) -> str:
    """What the shared digest alone answers for `doc` now (read only)."""
    from webhook.intake import _group_hash, _same, digest
    from webhook.payload import parse
    from workers.incident.keys import Keys

    notification = parse(doc)
    stored = redis.get(Keys(settings.key_prefix).group(_group_hash(notification)))
    return "duplicate" if _same(stored, digest(notification)) else "accepted"


# 5. Policy: incident key templates and regexes


def test_an_incident_key_naming_a_method_is_refused_or_renders_one_key() -> None:
    """`{{ labels.service.lower }}` (for `labels.service | lower`) passes
    key_template_problem (Getattr is allowed) and renders
    '<built-in method lower of str object at 0x7f...>': a memory address, so the same
    alert gets another incident key per notification and process."""
    source = "latency/{{ labels.service.lower }}"
    if key_template_problem(source) is not None:
        return  # refused at validate: fine
    template = TEMPLATES.from_string(source)
    alerts = [{"service": "".join(["ap", "i"])} for _ in range(3)]  # three notifications
    keys = {render_key(template, labels, {})[0] for labels in alerts}
    assert len(keys) == 1, keys


def test_an_incident_key_whose_filter_asserts_falls_back_instead_of_failing_the_notification(
    tmp_path: Path, redis: Redis
) -> None:
    """Jinja's truncate asserts `length >= len(end)`; AssertionError is not in
    RENDER_ERRORS. Validation renders the key for a sample alert that takes the other
    branch, so the set loads; then every notification carrying a production alert of that
    route is a 500 (all its alerts unapplied, Alertmanager retrying forever)."""
    key = (
        "{{ labels.service | truncate(2) if labels.namespace == 'production' else labels.service }}"
    )
    directory = write_policy(
        tmp_path / "policies", "routes:\n" + _route("api", 'service="api"', key=key)
    )
    load_policy(directory)  # validates
    settings = Settings(
        redis_url=REDIS_URL,
        policies_dir=directory,
        webhook_token=TOKEN,
        key_prefix="aptest:",
        queue_name="aptest",
    )
    client = create_app(settings, redis=redis, registry=CollectorRegistry()).test_client()
    response = post(client, fixture("firing-two-alerts.json"))
    assert response.status_code == 200, response.json


LOAD = """
import json, sys, time
from pathlib import Path
from workers.policy import PolicyError, load_policy
start = time.process_time()
try:
    load_policy(Path(sys.argv[1]))
    outcome = "loaded"
except PolicyError:
    outcome = "refused"
except BaseException as exc:
    outcome = type(exc).__name__
print(json.dumps({"seconds": time.process_time() - start, "outcome": outcome}))
"""


def test_an_incident_key_of_many_joins_loads_or_is_refused_quickly(tmp_path: Path) -> None:
    """`+` passes key_template_problem; Jinja's optimizer re-folds every nested Add while
    compiling (cubic): 300 joins (3 KB) take ~10 s of CPU and end in a SyntaxError
    traceback ('too many nested parentheses'), 150 take 1.2 s, per route, at every load:
    receiver start, hot reload, each mitigation job's refresh, policy validate."""
    key = "{{ labels.service" + " + labels.service" * 300 + " }}"
    directory = write_policy(tmp_path, "routes:\n" + _route("api", 'service="api"', key=key))
    result = _child(LOAD, directory, timeout=120)
    assert result["seconds"] < 2 and result["outcome"] in ("loaded", "refused"), result


def test_a_policy_load_in_progress_neither_holds_up_a_fork_nor_locks_the_child(
    tmp_path: Path,
) -> None:
    """PolicyStore took its lock around every fork and held it for a whole load, and
    `alertpilot worker` forks a work horse per job: while its watcher loaded a large set
    (1.5 MB: seconds), no job, a page included, could start. Now a fork waits only for
    the swap, and the child gets a load lock of its own (it must not inherit one held by
    a thread that does not exist in it)."""
    from workers.policy.store import PolicyStore

    directory = write_policy(tmp_path, "routes:\n" + _route("api", 'service="api"'))
    store = PolicyStore(directory)
    loading = threading.Event()
    done = threading.Event()

    def slow_load() -> None:  # a load in progress: it holds the load lock for a while
        with store._lock:
            loading.set()
            done.wait(10)

    thread = threading.Thread(target=slow_load, daemon=True)
    thread.start()
    assert loading.wait(5)
    try:
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the work horse: it reads the policy as a mitigation job does
            signal.alarm(5)  # an inherited, held lock would block it for good
            os._exit(0 if store.refresh() is False and store.get() is not None else 1)
        waited = time.monotonic() - started
        _, status = os.waitpid(pid, 0)
    finally:
        done.set()
        thread.join(timeout=10)
    assert waited < 1, f"the fork waited {waited:.1f} s for the policy load"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize(
    "key",
    [
        "{{ 1" + "0" * 5000 + " }}",
        "{{ " + "(" * 300 + "labels.service" + ")" * 300 + " }}",
        "{{ " + "not " * 500 + "labels.service }}",
    ],
    ids=["5001-digit-integer", "300-parentheses", "500-nots"],
)
def test_an_incident_key_jinja_cannot_compile_is_a_located_problem(
    tmp_path: Path, key: str
) -> None:
    """key_template_problem catches TemplateError only; Jinja's lexer raises ValueError
    (int() past 4,300 digits) and its parser and compiler RecursionError: `policy
    validate` prints a traceback instead of file:line:col."""
    directory = write_policy(tmp_path, "routes:\n" + _route("api", 'service="api"', key=key))
    with pytest.raises(PolicyError):
        load_policy(directory)


EVALUATE = """
import json, random, sys, time
from pathlib import Path
from workers.policy import evaluate, load_policy
policy = load_policy(Path(sys.argv[1]))
rng = random.Random(2)
value = "".join(rng.choice("ab") for _ in range(int(sys.argv[2]))) + "-x"
start = time.process_time()
(match,) = evaluate(policy, {"alertname": "Any", "service": value})
print(json.dumps({"seconds": time.process_time() - start, "route": match.route}))
"""
