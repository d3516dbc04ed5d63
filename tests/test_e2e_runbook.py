"""The whole chain, real where it can be (issue 16): Debian's Prometheus scrapes an
exporter the test drives and fires its own HighLatency rule to Debian's Alertmanager,
which posts to alertpilot on loopback; alertpilot declares, runs the route's runbook
(PromQL against that Prometheus, workload and rollouts from the Kubernetes stand-in)
and the chat stand-in receives the declared message with the numbers Prometheus
computed. The test then makes requests faster and the next update shows the drop."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rq import Queue

from tests.conftest import TOKEN, due, run_jobs, serving
from tests.support.alertmanager import run_alertmanager
from tests.support.chat_standin import ChatStandIn
from tests.support.mitigation import MitigationBench, route
from tests.support.prometheus import DrivenExporter, driven_exporter, run_prometheus
from tests.test_runbook_kube import troubled

pytestmark = pytest.mark.e2e

P95 = (
    "histogram_quantile(0.95, sum(rate("
    'http_request_duration_seconds_bucket{{job="{job}"}}[20s])) by (le))'
)
ERRORS = (
    'sum(rate(http_requests_total{{job="{job}",code=~"5.."}}[20s]))'
    ' / sum(rate(http_requests_total{{job="{job}"}}[20s]))'
)
RUNBOOK = f"""\
title: API latency
steps:
  - type: promql
    name: p95_latency
    query: '{P95.format(job="{{ labels.job }}")}'
    unit: s
    threshold: 0.5
  - type: promql
    name: error_ratio
    query: '{ERRORS.format(job="{{ labels.job }}")}'
    threshold: 0.01
  - type: workload_status
  - type: rollout_history
    within: 1h
"""
RULES = {
    "groups": [
        {
            "name": "api",
            "rules": [
                {
                    "alert": "HighLatency",
                    "expr": P95.format(job="api") + " > 0.25",
                    "labels": {
                        "job": "api",
                        "service": "web",
                        "namespace": "production",
                        "deployment": "web",
                    },
                    "annotations": {"summary": "p95 latency above 250ms"},
                }
            ],
        }
    ]
}
ROUTES = route("[notify]").replace("    severity: SEV2\n", "    severity: SEV2\n    runbook: api\n")


@pytest.fixture
def exporter() -> Iterator[DrivenExporter]:
    with driven_exporter() as running:
        yield running


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def metric(message: str, name: str) -> float:
    (line,) = [x for x in message.splitlines() if x.startswith("Current metrics:")]
    found = re.search(rf"{name} ([0-9.e+-]+)", line)
    assert found is not None, line
    return float(found.group(1))


def test_prometheus_alertmanager_alertpilot_chat_with_the_numbers_prometheus_computed(
    mitigation: MitigationBench,
    exporter: DrivenExporter,
    queue: Queue,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vendors: tuple[Any, Any, ChatStandIn],
) -> None:
    troubled(mitigation.kube)  # production/web: a rollout 12m ago, a pod crash-looping
    (mitigation.tmp_path / "policies" / "runbooks").mkdir(parents=True)
    (mitigation.tmp_path / "policies" / "runbooks" / "api.yaml").write_text(RUNBOOK)
    client = mitigation.app(ROUTES)
    _, _, chat = vendors  # the worker's chat (the live fixture's environment)
    with (
        serving(client.application) as url,
        run_alertmanager(
            f"{url}/api/v1/alertmanager", bearer_token=TOKEN, workdir=tmp_path / "am"
        ) as alertmanager,
        run_prometheus(
            tmp_path / "prometheus",
            jobs={"api": exporter.target},
            rules=RULES,
            alertmanager=alertmanager.base_url,
        ) as prometheus,
    ):
        monkeypatch.setenv("ALERTPILOT_PROMETHEUS_URL", prometheus.base_url)
        prometheus.wait_until_scraped()
        # Slow: 80 requests at 80 ms and 20 at 700 ms (a true p95 of 700 ms, in the
        # (0.5, 1] bucket), and 10 answered 5xx: an error ratio of 10/110.
        exporter.observe(0.08, 80)
        exporter.observe(0.7, 20)
        exporter.errors(10)

        def declared() -> list[str]:
            run_jobs(queue)
            return [m.body["text"] for m in chat.messages if "declared" in m.body["text"]]

        (message,) = wait_for("the declared message", declared, timeout=60)
        p95, errors = metric(message, "p95_latency"), metric(message, "error_ratio")
        assert 0.5 < p95 <= 1.0, message  # histogram_quantile within the true value's bucket
        assert errors == pytest.approx(10 / 110, abs=0.005), message
        assert "Recent changes: production/web: rolled out in the last 1h: revision 2" in message
        assert "pod web-aaaa02-bad not ready (CrashLoopBackOff" in message

        # Faster now: p95 falls into (0.25, 0.5], still over the rule's 250 ms: it fires on.
        exporter.observe(0.3, 4000)

        def dropped() -> bool:
            found = prometheus.api("query", query=P95.format(job="api"))["result"]
            return bool(found) and float(found[0]["value"][1]) <= 0.5

        wait_for("Prometheus to see the drop", dropped)
        due(queue, 4 * 3600)  # SEV2's update_every: the first status update
        (update,) = [m.body["text"] for m in chat.messages if "Update (SEV2)" in m.body["text"]]
    now = metric(update, "p95_latency")
    assert 0.25 < now <= 0.5, update
    assert f"(at declaration: {p95:.4g} s (over 0.5))" in update, update
