"""Hot reload: a changed policy directory takes effect without a restart, whole or not at all."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from redis import Redis
from werkzeug.serving import make_server

from tests.conftest import ADMIN, AUTH, fixture, write_policy
from webhook.app import create_app
from webhook.app_services import services_of
from workers.config import Settings
from workers.policy.store import PolicyStore

# Two versions of one route file: every alert of a notification goes to the same
# severity under each, so a notification evaluated half by one, half by the
# other would show two severities in one incident.
VERSION = """\
routes:
  - name: {name}-first
    matchers: ['alertname="Load"', 'part="first"']
    severity: {severity}
    incident_key: "load/{{{{ labels.batch }}}}"
  - name: {name}-second
    matchers: ['alertname="Load"', 'part="second"']
    severity: {severity}
    incident_key: "load/{{{{ labels.batch }}}}"
"""
A = VERSION.format(name="a", severity="SEV1")
B = VERSION.format(name="b", severity="SEV2")
INVALID = "routes:\n  - name: broken\n    matchers: ['alertname=~\"(\"']\n    severity: SEV1\n"


def replace_file(directory: Path, text: str) -> None:
    """As a ConfigMap update or `mv` does: the new file appears whole."""
    scratch = directory / ".10-routes.yaml.tmp"
    scratch.write_text(text)
    os.replace(scratch, directory / "10-routes.yaml")


def test_changed_files_load_once_they_settle(tmp_path: Path) -> None:
    store = PolicyStore(write_policy(tmp_path, A))
    first = store.get().content_hash
    replace_file(tmp_path, B)
    assert store.check() is False  # just changed: wait one poll
    assert store.get().content_hash == first
    assert store.check() is True
    assert [r.name for r in store.get().routes] == ["b-first", "b-second"]


def test_invalid_set_is_rejected_and_the_old_one_stays(tmp_path: Path) -> None:
    outcomes: list[bool] = []
    store = PolicyStore(write_policy(tmp_path, A), on_reload=outcomes.append)
    before = store.get()
    replace_file(tmp_path, INVALID)
    assert store.reload() is False
    assert store.get() is before
    assert store.last_error is not None and "invalid regular expression" in store.last_error
    assert store.check() is False and store.check() is False  # not retried while unchanged
    replace_file(tmp_path, B)
    assert store.reload() is True
    assert store.last_error is None
    assert outcomes == [False, True]


def test_reload_outcomes_show_in_metrics_and_status(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    directory = write_policy(tmp_path / "p", A)
    registry = CollectorRegistry()
    app = create_app(replace(settings, policies_dir=directory), redis=redis, registry=registry)
    store = services_of(app).policies
    replace_file(directory, INVALID)
    store.reload()
    status = app.test_client().get("/api/v1/status", headers=ADMIN).json
    assert status["policy"]["hash"] == store.get().content_hash
    assert "invalid regular expression" in status["policy"]["last_reload_error"]
    assert registry.get_sample_value("alertpilot_policy_reload_failures_total") == 1
    replace_file(directory, B)
    store.reload()
    assert registry.get_sample_value("alertpilot_policy_reloads_total") == 1
    status = app.test_client().get("/api/v1/status", headers=ADMIN).json
    assert status["policy"]["last_reload_error"] is None


def _notification(batch: int) -> bytes:
    doc = fixture("firing-two-alerts.json")
    doc["groupKey"] = f'{{}}:{{batch="{batch}"}}'
    for part, alert in zip(("first", "second"), doc["alerts"], strict=True):
        alert["labels"] = {"alertname": "Load", "part": part, "batch": str(batch)}
        alert["fingerprint"] = f"{batch:012x}{len(part):04x}"
    return json.dumps(doc).encode()


def test_notifications_under_reload_are_each_evaluated_by_one_whole_set(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    directory = write_policy(tmp_path / "p", A)
    hashes = {}
    for name, text in (("A", A), ("B", B)):
        hashes[name] = PolicyStore(write_policy(tmp_path / name, text)).get().content_hash
    app = create_app(replace(settings, policies_dir=directory), redis=redis)
    store = services_of(app).policies
    store.watch(0.01)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/v1/alertmanager"
    replies: list[tuple[int, dict[str, Any]]] = []
    stop = threading.Event()

    def post_continuously() -> None:
        batch = 0
        while not stop.is_set() and batch < 3000:
            request = urllib.request.Request(
                url, _notification(batch), {**AUTH, "Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    replies.append((response.status, json.loads(response.read())))
            except urllib.error.HTTPError as error:  # a non-2xx must fail the test, not the thread
                replies.append((error.code, {}))
            batch += 1

    poster = threading.Thread(target=post_continuously)
    poster.start()
    try:
        for text in (INVALID, B, INVALID, A, B):
            time.sleep(0.3)
            replace_file(directory, text)
        time.sleep(0.3)
    finally:
        stop.set()
        poster.join(timeout=30)
        store.stop()
        server.shutdown()

    assert len(replies) > 50
    assert {status for status, _ in replies} == {200}
    used = {body["policy"] for _, body in replies}
    assert used == {hashes["A"], hashes["B"]}  # the invalid set was never used
    for _, body in replies:
        (incident_id,) = body["incidents"]
        doc = json.loads(redis.get(f"aptest:incident:{incident_id}") or b"{}")
        severities = {alert["severity"] for alert in doc["alerts"].values()}
        expected = "SEV1" if body["policy"] == hashes["A"] else "SEV2"
        assert severities == {expected}, (body, doc["alerts"])


def test_unreadable_file_is_rejected_like_an_invalid_one(tmp_path: Path) -> None:
    store = PolicyStore(write_policy(tmp_path, A))
    before = store.get()
    (tmp_path / "10-routes.yaml").write_bytes(b"routes: [\xff\xfe]\n")
    assert store.reload() is False
    assert store.get() is before
    assert store.last_error is not None and "not UTF-8 text" in store.last_error
