"""workers.prometheus against Debian's real Prometheus scraping an exporter the test drives,
and against stand-ins for the failures a real one rarely shows on demand."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.prometheus import (
    DrivenExporter,
    PrometheusServer,
    driven_exporter,
    free_loopback_port,
    run_prometheus,
)
from workers.prometheus import MAX_ANSWER_BYTES, Prometheus, QueryResult

WAIT_S = 15.0
JOBS = ("latency", "errors", "series")
P95 = (
    "histogram_quantile(0.95,"
    ' sum(rate(http_request_duration_seconds_bucket{job="latency"}[30s])) by (le))'
)
ERROR_RATIO = (
    'sum(rate(http_requests_total{job="errors", code=~"5.."}[30s]))'
    ' / sum(rate(http_requests_total{job="errors"}[30s]))'
)
TOKEN = "prom-token-9c1e"
RULES = {
    "groups": [
        {
            "name": "tests",
            "rules": [{"alert": "AlwaysFiring", "expr": "vector(1)", "for": "0s"}],
        }
    ]
}


@pytest.fixture(scope="module")
def alertmanager_url() -> str:
    return f"http://127.0.0.1:{free_loopback_port()}"


@pytest.fixture(scope="module")
def exporters() -> Iterator[dict[str, DrivenExporter]]:
    """An exporter per test that drives one, each its own job: the tests share a Prometheus
    (its first scrape comes ~5 s after start) but not their numbers."""
    with contextlib.ExitStack() as stack:
        yield {job: stack.enter_context(driven_exporter()) for job in JOBS}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    exporters: dict[str, DrivenExporter],
    alertmanager_url: str,
) -> Iterator[PrometheusServer]:
    """One Prometheus scraping every exporter once at zero, with a rule and an Alertmanager."""
    workdir = tmp_path_factory.mktemp("prometheus")
    jobs = {job: exporter.target for job, exporter in exporters.items()}
    with run_prometheus(workdir, jobs=jobs, rules=RULES, alertmanager=alertmanager_url) as running:
        running.wait_until_scraped()
        yield running


@pytest.fixture
def prometheus(server: PrometheusServer) -> Prometheus:
    return Prometheus(server.base_url, token=None, ca_bundle=None)


def _until(prometheus: Prometheus, expr: str, done: Callable[[QueryResult], bool]) -> QueryResult:
    deadline = time.monotonic() + WAIT_S
    result = prometheus.query(expr)
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.2)
        result = prometheus.query(expr)
    return result


def test_p95_latency_lands_in_the_bucket_of_the_observed_p95(
    exporters: dict[str, DrivenExporter], prometheus: Prometheus
) -> None:
    exporters["latency"].observe(0.08, 80)
    exporters["latency"].observe(0.7, 20)  # the true p95 is 0.7 s: bucket (0.5, 1]
    count = 'http_request_duration_seconds_count{job="latency"}'
    _until(prometheus, count, lambda r: r.value == 100)

    result = prometheus.query(P95)

    assert result.ok, result.error
    assert result.samples == 1
    assert result.value is not None and 0.5 < result.value <= 1.0


def test_error_ratio_is_5xx_over_all_requests(
    exporters: dict[str, DrivenExporter], prometheus: Prometheus
) -> None:
    exporters["errors"].observe(0.1, 95)
    exporters["errors"].errors(5)
    _until(prometheus, 'sum(http_requests_total{job="errors"})', lambda r: r.value == 100)

    result = prometheus.query(ERROR_RATIO)

    assert result.ok, result.error
    assert result.value == pytest.approx(0.05)


def test_several_series_give_no_value_and_say_how_many(prometheus: Prometheus) -> None:
    result = prometheus.query('http_requests_total{job="series"}')

    assert (result.ok, result.value, result.samples) == (False, None, 2)
    assert result.error == "2 series, expected one"


def test_bad_query_carries_prometheus_parser_message(prometheus: Prometheus) -> None:
    result = prometheus.query("sum(rate(http_requests_total[30s])")

    assert not result.ok and result.value is None
    assert result.error.startswith("bad query: ")
    assert "parse error" in result.error


def test_scalar_answer_is_the_value(prometheus: Prometheus) -> None:
    assert prometheus.query("1 + 1") == QueryResult(ok=True, value=2.0, samples=1)


def test_nan_is_no_value_with_a_note(prometheus: Prometheus) -> None:
    result = prometheus.query("0 / 0")

    assert (result.ok, result.value, result.samples) == (False, None, 1)
    assert result.error.startswith("NaN")


def test_query_before_any_data_is_no_data(prometheus: Prometheus) -> None:
    result = prometheus.query("up", at=time.time() - 3600)

    assert result == QueryResult(ok=False, error="no data")


def test_long_query_is_posted_and_answered(prometheus: Prometheus) -> None:
    expr = "1" + " + 0" * 500

    assert prometheus.query(expr).value == 1.0


def test_rule_files_are_evaluated(server: PrometheusServer, prometheus: Prometheus) -> None:
    expr = 'ALERTS{alertname="AlwaysFiring", alertstate="firing"}'

    assert _until(prometheus, expr, lambda r: r.ok).value == 1.0


def test_alertmanager_is_configured(server: PrometheusServer, alertmanager_url: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while (active := server.api("alertmanagers")["activeAlertmanagers"]) == []:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)

    assert [am["url"] for am in active] == [f"{alertmanager_url}/api/v2/alerts"]


def test_unreachable_prometheus_says_so() -> None:
    prometheus = Prometheus(f"http://127.0.0.1:{free_loopback_port()}", token=None, ca_bundle=None)

    result = prometheus.query("up")

    assert not result.ok
    assert "unreachable" in result.error


def test_hanging_prometheus_times_out_within_the_timeout() -> None:
    with _hanging_server() as url:
        prometheus = Prometheus(url, token=None, ca_bundle=None, timeout=0.5)
        started = time.monotonic()
        result = prometheus.query("up")
        elapsed = time.monotonic() - started

    assert result == QueryResult(ok=False, error="timed out after 0.5s")
    assert elapsed < 1.5


def test_answer_that_stops_halfway_times_out() -> None:
    preamble = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{"
    with _hanging_server(preamble) as url:
        result = Prometheus(url, token=None, ca_bundle=None, timeout=0.5).query("up")

    assert result == QueryResult(ok=False, error="timed out after 0.5s")


def test_503_says_so_with_prometheus_reason() -> None:
    body = {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}
    with _stand_in(503, json.dumps(body).encode()) as (url, _):
        result = Prometheus(url, token=None, ca_bundle=None).query("up")

    assert result == QueryResult(ok=False, error="Prometheus answered 503: TSDB not ready")


def test_answer_over_the_size_bound_is_refused() -> None:
    with _stand_in(200, b" " * (MAX_ANSWER_BYTES + 1)) as (url, _):
        result = Prometheus(url, token=None, ca_bundle=None).query("up")

    assert result == QueryResult(ok=False, error=f"answer larger than {MAX_ANSWER_BYTES} bytes")


def test_token_is_sent_as_bearer_and_never_returned() -> None:
    # The stand-in echoes the Authorization header into its error, as a careless proxy might.
    with _stand_in(503, None) as (url, seen):
        result = Prometheus(url, token=TOKEN, ca_bundle=None).query("up")

    assert seen == [f"Bearer {TOKEN}"]
    assert result.error.startswith("Prometheus answered 503")
    assert TOKEN not in repr(result)


def test_bad_settings_are_refused_without_echoing_the_token() -> None:
    with pytest.raises(ValueError, match="got 'localhost:9090'"):
        Prometheus("localhost:9090", token=None, ca_bundle=None)
    with pytest.raises(ValueError, match="timeout"):
        Prometheus("http://127.0.0.1:9090", token=None, ca_bundle=None, timeout=math.inf)
    with pytest.raises(ValueError) as refused:
        Prometheus("http://127.0.0.1:9090", token="two words", ca_bundle=None)
    assert "two words" not in str(refused.value)


class _StandInServer(ThreadingHTTPServer):
    status: int
    body: bytes | None
    seen: list[str]


class _StandInHandler(BaseHTTPRequestHandler):
    server: _StandInServer

    def do_GET(self) -> None:
        authorization = self.headers.get("Authorization", "")
        self.server.seen.append(authorization)
        body = self.server.body
        if body is None:
            echo = {"status": "error", "errorType": "unavailable", "error": authorization}
            body = json.dumps(echo).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _stand_in(status: int, body: bytes | None) -> Iterator[tuple[str, list[str]]]:
    """Answers every GET with `status` and `body` (None: an error echoing Authorization)."""
    httpd = _StandInServer(("127.0.0.1", 0), _StandInHandler)
    httpd.status, httpd.body, httpd.seen = status, body, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", httpd.seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def _hanging_server(preamble: bytes = b"") -> Iterator[str]:
    """Accepts connections, sends `preamble`, and never says more."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
                connection.sendall(preamble)
                held.append(connection)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()
