"""Idle and slow clients against the real `alertpilot serve` (issue 13).

Under gunicorn's sync workers two connections that sent nothing held both workers until
gunicorn killed them (30 s), and /healthz waited behind them: the liveness probe would
restart the pod. Here 20 idle connections, clients that stop half-way through their
headers and clients that trickle their body a byte a second are all connected while a
notification and /healthz are timed; then the slow ones must be cut off at the read
timeout. Loopback only; every socket and the server are closed in a `finally`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from redis import Redis

from tests.conftest import TOKEN, fixture
from tests.test_processes import Running, _free_port, _running, _serve_env
from workers.config import Settings, SettingsError

READ_TIMEOUT_S = 3
IDLE = 20
HALF_HEADERS = 3
TRICKLING = 3
TRIES = 5
HEALTHZ_WITHIN_S = 0.1
NOTIFICATION_WITHIN_S = 1.0
REPLY_TIMEOUT_S = 3.0
"""A reply later than this counts as none: the sync workers' answer took 30 s."""
CUT_OFF_EARLY_S = 0.5
CUT_OFF_LATE_S = 2.5
"""The sweep of idle connections runs about once a second; a trickle sends once a second."""


@dataclass
class Server:
    running: Running
    port: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`alertpilot serve` with its default workers and threads, and a short read timeout."""
    tmp_path = tmp_path_factory.mktemp("slow-clients")
    port = _free_port()
    env = _serve_env(tmp_path, port, ALERTPILOT_WEB_READ_TIMEOUT=f"{READ_TIMEOUT_S}s")
    workers = Settings.web_concurrency
    with _running(["serve"], env, tmp_path / "serve") as serve:
        serve.wait_for(f"http://127.0.0.1:{port}/readyz")
        serve.wait_until(
            lambda: serve.stderr().count("Booting worker with pid") >= workers,
            f"{workers} gunicorn workers booted",
        )
        yield Server(serve, port)


# --- clients --------------------------------------------------------------------------


def _request(
    port: int, method: str, path: str, body: bytes = b"", headers: str = ""
) -> tuple[int, float]:
    """Status and seconds to the whole reply, or (0, REPLY_TIMEOUT_S) if none came in time."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    started = time.monotonic()
    reply = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT_S) as sock:
            sock.sendall(head.encode() + b"\r\n" + body)
            while chunk := sock.recv(65536):
                reply += chunk
    except TimeoutError:
        return 0, REPLY_TIMEOUT_S
    return int(reply.split(b" ", 2)[1]), time.monotonic() - started


def _post_notification(port: int) -> tuple[int, float]:
    body = json.dumps(fixture("firing-two-alerts.json")).encode()
    return _request(
        port, "POST", "/api/v1/alertmanager", body, f"Authorization: Bearer {TOKEN}\r\n"
    )


def _healthz_median(port: int) -> float:
    """Median of a few: one scheduler hiccup on a small machine is not a regression."""
    timings = []
    for _ in range(TRIES):
        code, seconds = _request(port, "GET", "/healthz")
        timings.append(seconds if code == 200 else REPLY_TIMEOUT_S)
    return statistics.median(timings)


@dataclass
class Crowd:
    """Connections that never finish a request: idle, stopped half-way through the
    headers, and trickling a body one byte a second."""

    idle: list[socket.socket] = field(default_factory=list)
    half_headers: list[socket.socket] = field(default_factory=list)
    trickling: list[socket.socket] = field(default_factory=list)
    opened: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def all(self) -> list[socket.socket]:
        return [*self.idle, *self.half_headers, *self.trickling]

    def all_open(self) -> bool:
        """None of them has been answered, reset or closed by the server yet."""
        for sock in self.all():
            try:
                if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) is not None:
                    return False  # bytes or end of stream
            except BlockingIOError:
                continue
            except OSError:
                return False
        return True

    def trickle(self) -> None:
        while not self.stop.wait(1.0):
            for sock in list(self.trickling):
                try:
                    sock.send(b" ")
                except OSError:
                    self.trickling.remove(sock)


@contextlib.contextmanager
def _crowd(port: int) -> Iterator[Crowd]:
    crowd = Crowd()
    trickler = threading.Thread(target=crowd.trickle, daemon=True)
    try:
        for _ in range(IDLE):
            crowd.idle.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(HALF_HEADERS):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
            crowd.half_headers.append(sock)
        for _ in range(TRICKLING):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
            )
            crowd.trickling.append(sock)
        crowd.opened = time.monotonic()
        trickler.start()
        time.sleep(0.2)  # the server has accepted them (and, for the old design, read them)
        yield crowd
    finally:
        crowd.stop.set()
        if trickler.is_alive():
            trickler.join(timeout=5)
        for sock in crowd.all():
            sock.close()


def _cut_off_after(sock: socket.socket, since: float) -> float:
    """Seconds from `since` until the server ended the connection (any reply counts,
    a 400 for a body that came up short), or inf if it had not by the latest allowed."""
    deadline = since + READ_TIMEOUT_S + CUT_OFF_LATE_S
    try:
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            if not sock.recv(65536):
                return time.monotonic() - since
    except TimeoutError:
        return float("inf")
    except OSError:  # reset
        return time.monotonic() - since


# --- tests ----------------------------------------------------------------------------


def test_healthz_stays_fast_while_idle_and_slow_clients_hold_connections(
    server: Server, redis: Redis
) -> None:
    with _crowd(server.port) as crowd:
        median = _healthz_median(server.port)
        assert crowd.all_open(), "measured after the crowd was cut off: nothing was tested"
    assert median < HEALTHZ_WITHIN_S, f"/healthz median {median:.3f}s\n{server.running.logs()}"


def test_notification_gets_its_200_within_a_second_while_idle_and_slow_clients_hold_connections(
    server: Server, redis: Redis
) -> None:
    with _crowd(server.port) as crowd:
        code, seconds = _post_notification(server.port)
        assert crowd.all_open(), "measured after the crowd was cut off: nothing was tested"
    assert code == 200, server.running.logs()
    assert seconds < NOTIFICATION_WITHIN_S, f"{seconds:.3f}s\n{server.running.logs()}"


def test_idle_and_slow_clients_are_cut_off_at_the_read_timeout(
    server: Server, redis: Redis
) -> None:
    with _crowd(server.port) as crowd:
        cut_off = {
            "idle": [_cut_off_after(s, crowd.opened) for s in crowd.idle],
            "half headers": [_cut_off_after(s, crowd.opened) for s in crowd.half_headers],
            "trickling": [_cut_off_after(s, crowd.opened) for s in crowd.trickling],
        }
    for kind, seconds in cut_off.items():
        assert min(seconds) > READ_TIMEOUT_S - CUT_OFF_EARLY_S, (kind, seconds)
        assert max(seconds) < READ_TIMEOUT_S + CUT_OFF_LATE_S, (kind, seconds)
    warnings = server.running.stderr().count("no whole request within")
    assert warnings >= HALF_HEADERS + TRICKLING, server.running.logs()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALERTPILOT_WEB_THREADS", "0", "ALERTPILOT_WEB_THREADS: must be at least 1"),
        ("ALERTPILOT_WEB_READ_TIMEOUT", "500ms", "ALERTPILOT_WEB_READ_TIMEOUT: must be at least"),
        ("ALERTPILOT_WEB_READ_TIMEOUT", "10", "ALERTPILOT_WEB_READ_TIMEOUT: expected a duration"),
    ],
)
def test_a_bad_web_limit_is_refused_naming_its_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({variable: value})


def test_web_limits_are_read_from_their_variables() -> None:
    settings = Settings.from_env(
        {"ALERTPILOT_WEB_THREADS": "4", "ALERTPILOT_WEB_READ_TIMEOUT": "2s"}
    )
    assert (settings.web_threads, settings.web_read_timeout_seconds) == (4, 2.0)
