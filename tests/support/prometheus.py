"""Run Debian's real ``prometheus`` binary, and an exporter whose numbers the test sets.

``run_prometheus`` writes a configuration (scrape and evaluation every second, one job
per scrape target, optional alerting rules and an optional Alertmanager), starts Prometheus
on a free loopback port with a throwaway TSDB, waits until ``/-/ready`` answers and
always stops the whole process group again, even when the test fails.

``driven_exporter`` serves a ``prometheus_client`` registry on loopback with the metrics
a web service would have: a request-latency histogram and a request counter by status
code. The test calls ``observe`` and ``errors``; Prometheus scrapes what it set.

Typical use::

    with driven_exporter() as api, run_prometheus(tmp_path, jobs={"api": api.target}) as prom:
        prom.wait_until_scraped()
        api.observe(0.3, 100)

Prometheus 2.42 applies scrape targets on a fixed 5 s tick, so the first scrape comes
about 5 s after start: start one Prometheus per module, with an exporter per test.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from tests.support.alertmanager import wait_ready

DEFAULT_BINARY = "/usr/bin/prometheus"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
READY_TIMEOUT_S = 15.0
SCRAPE_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
_PROBE_TIMEOUT_S = 1.0
_POLL_INTERVAL_S = 0.1
_START_ATTEMPTS = 3
_LOG_TAIL_CHARS = 4000

# Loopback test traffic never goes through a proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PROXY_ENV_VARS = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DrivenExporter:
    """A service's metrics, set by the test: ``http_request_duration_seconds`` (histogram)
    and ``http_requests_total{code="200"|"500"}``. Both codes exist from the start at 0,
    so the first scrape sees zeros and ``rate`` counts everything observed after it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "http_requests", "Requests by status code.", ["code"], registry=self.registry
        )
        self.requests.labels("200")
        self.requests.labels("500")
        self.target = ""

    def observe(self, latency: float, n: int) -> None:
        """``n`` successful requests that each took ``latency`` seconds."""
        for _ in range(n):
            self.latency.observe(latency)
        self.requests.labels("200").inc(n)

    def errors(self, n: int) -> None:
        """``n`` requests answered 5xx (counted, not timed: the histogram is successes)."""
        self.requests.labels("500").inc(n)


@contextlib.contextmanager
def driven_exporter() -> Iterator[DrivenExporter]:
    exporter = DrivenExporter()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=exporter.registry)
    exporter.target = f"127.0.0.1:{server.server_port}"
    try:
        yield exporter
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT_S)


class PrometheusServer:
    """Handle on a running Prometheus (only valid inside ``run_prometheus``)."""

    def __init__(self, base_url: str, jobs: Sequence[str], log_path: pathlib.Path) -> None:
        self.base_url = base_url
        self.jobs = tuple(jobs)
        self._log_path = log_path

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; RuntimeError on anything else."""
        url = f"{self.base_url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with _OPENER.open(url, timeout=_PROBE_TIMEOUT_S * 5) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"GET {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        if answer.get("status") != "success":
            raise RuntimeError(f"GET {path}: {answer}")
        return answer["data"]

    def wait_until_scraped(self, timeout: float = SCRAPE_TIMEOUT_S) -> None:
        """Until ``up`` is 1 for every job: each target has been scraped successfully once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.api("query", query="up == 1")["result"]
            if {sample["metric"]["job"] for sample in up} >= set(self.jobs):
                return
            time.sleep(_POLL_INTERVAL_S)
        raise RuntimeError(f"{self.jobs} not all scraped within {timeout:.0f}s; log:\n{self.log()}")

    def log(self) -> str:
        return _tail(_read_text(self._log_path))


def _read_text(path: pathlib.Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text: str) -> str:
    return text if len(text) <= _LOG_TAIL_CHARS else "...\n" + text[-_LOG_TAIL_CHARS:]


def _write_config(
    workdir: pathlib.Path,
    jobs: Mapping[str, str],
    rules: Mapping[str, Any] | None,
    alertmanager: str | None,
) -> pathlib.Path:
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in jobs.items()
        ],
    }
    if rules is not None:
        rules_path = workdir / "rules.yml"
        rules_path.write_text(yaml.safe_dump(dict(rules), sort_keys=False), encoding="utf-8")
        config["rule_files"] = [str(rules_path)]
    if alertmanager is not None:
        parts = urllib.parse.urlsplit(alertmanager)
        config["alerting"] = {
            "alertmanagers": [
                {
                    "scheme": parts.scheme or "http",
                    "path_prefix": parts.path or "/",
                    "static_configs": [{"targets": [parts.netloc]}],
                }
            ]
        }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path


def _start(
    binary: str, config_path: pathlib.Path, data_dir: pathlib.Path, log: IO[bytes], port: int
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_ENV_VARS}
    return subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def run_prometheus(
    workdir: pathlib.Path,
    *,
    jobs: Mapping[str, str] | None = None,
    rules: Mapping[str, Any] | None = None,
    alertmanager: str | None = None,
    binary: str = DEFAULT_BINARY,
) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``jobs`` (job name: ``host:port``); stop it on exit.

    ``rules`` is the content of a rule file (``{"groups": [...]}``); ``alertmanager`` a
    base URL (``http://127.0.0.1:9093``) alerts are sent to. Raises ``RuntimeError`` if
    the binary is missing or Prometheus is not ready within ``READY_TIMEOUT_S`` (with the
    tail of its log).
    """
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise RuntimeError(
            f"Prometheus binary {binary!r} not found or not executable; "
            "install Debian's 'prometheus' package (make debian-packages)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = dict(jobs or {})
    config_path = _write_config(workdir, jobs, rules, alertmanager)
    data_dir = workdir / "tsdb"
    log_path = workdir / "prometheus.log"
    deadline = time.monotonic() + READY_TIMEOUT_S
    with log_path.open("ab") as log:
        process: subprocess.Popen[bytes] | None = None
        try:
            # The free port can be taken between probing and binding: retry on a fresh one.
            for _attempt in range(_START_ATTEMPTS):
                port = free_loopback_port()
                base_url = f"http://127.0.0.1:{port}"
                process = _start(binary, config_path, data_dir, log, port)
                if wait_ready(process, base_url, deadline):
                    break
                _stop(process)
                process = None
                if "address already in use" not in _read_text(log_path):
                    break
            if process is None:
                raise RuntimeError(
                    f"Prometheus did not become ready (config {config_path}); "
                    f"log tail:\n{_tail(_read_text(log_path))}"
                )
            yield PrometheusServer(base_url, list(jobs), log_path)
        finally:
            if process is not None:
                _stop(process)
