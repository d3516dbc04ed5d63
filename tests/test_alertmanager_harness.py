"""Self-test for tests/support/alertmanager.py against the real Alertmanager binary."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.alertmanager import run_alertmanager

NOTIFY_TIMEOUT_S = 15.0
TOKEN = "harness-test-token"


@dataclass(frozen=True)
class Notification:
    path: str
    headers: dict[str, str]
    body: dict[str, object]


class _Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Notification] = []

    def add(self, item: Notification) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[Notification]:
        with self._lock:
            return list(self._items)


def _handler_for(recorder: _Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            recorder.add(
                Notification(
                    path=self.path,
                    headers={k: v for k, v in self.headers.items()},
                    body=json.loads(raw),
                )
            )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def _wait_for(
    recorder: _Recorder, predicate: Callable[[Notification], bool], describe: str, log: str
) -> Notification:
    deadline = time.monotonic() + NOTIFY_TIMEOUT_S
    while time.monotonic() < deadline:
        for item in recorder.snapshot():
            if predicate(item):
                return item
        time.sleep(0.1)
    pytest.fail(
        f"no {describe} notification within {NOTIFY_TIMEOUT_S}s; "
        f"got {[n.body.get('status') for n in recorder.snapshot()]}\n{log}"
    )


@pytest.mark.e2e
def test_alertmanager_delivers_firing_and_resolved(tmp_path: pathlib.Path) -> None:
    recorder = _Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(recorder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        url = f"http://127.0.0.1:{port}/alertmanager"
        with run_alertmanager(url, bearer_token=TOKEN, workdir=tmp_path) as am:
            labels = {"alertname": "HarnessSelfTest", "service": "checkout", "severity": "page"}
            alert = am.firing(labels, {"summary": "harness self-test"})
            am.post_alerts([alert])

            fired = _wait_for(
                recorder, lambda n: n.body.get("status") == "firing", "firing", am.log()
            )
            assert fired.path == "/alertmanager"
            assert fired.body["version"] == "4"
            assert fired.body["receiver"] == "alertpilot"
            alerts = fired.body["alerts"]
            assert isinstance(alerts, list) and len(alerts) == 1
            assert alerts[0]["labels"] == labels
            assert alerts[0]["status"] == "firing"
            assert fired.body["groupLabels"] == {
                "alertname": "HarnessSelfTest",
                "service": "checkout",
            }
            assert fired.headers.get("Authorization") == f"Bearer {TOKEN}"

            am.post_alerts([am.resolved(alert)])
            resolved = _wait_for(
                recorder, lambda n: n.body.get("status") == "resolved", "resolved", am.log()
            )
            assert resolved.body["version"] == "4"
            resolved_alerts = resolved.body["alerts"]
            assert isinstance(resolved_alerts, list) and len(resolved_alerts) == 1
            assert resolved_alerts[0]["labels"] == labels
            assert resolved_alerts[0]["status"] == "resolved"
            assert resolved.headers.get("Authorization") == f"Bearer {TOKEN}"
            assert TOKEN not in am.log()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
