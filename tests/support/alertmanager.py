"""Run Debian's real ``prometheus-alertmanager`` binary for end-to-end tests.

The helper writes a one-receiver configuration (a webhook pointing at a URL chosen by the
test), starts Alertmanager on a free loopback port with HA gossip disabled, waits until
``/-/ready`` answers and always stops the process again, even when the test fails.

The bearer token is written to a ``credentials_file`` (mode 0600) so it never appears in
the configuration file, in Alertmanager's log or in anything this helper prints.

Typical use::

    with run_alertmanager(url, bearer_token="s3cret", workdir=tmp_path) as am:
        alert = am.firing({"alertname": "HighLatency", "service": "api"})
        am.post_alerts([alert])
        ...
        am.post_alerts([am.resolved(alert)])
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO

import yaml

DEFAULT_BINARY = "/usr/bin/prometheus-alertmanager"
RECEIVER_NAME = "alertpilot"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 5.0
_READY_PROBE_TIMEOUT_S = 1.0
_POLL_INTERVAL_S = 0.1
_START_ATTEMPTS = 3
_LOG_TAIL_CHARS = 4000
_GENERATOR_URL = "http://127.0.0.1/alertpilot-tests"
_ADDRESS_IN_USE = "address already in use"

# Never route loopback test traffic through a proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PROXY_ENV_VARS = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
)


@dataclass(frozen=True)
class AlertmanagerTiming:
    """Route timers, as Alertmanager duration strings (e.g. ``"1s"``, ``"5m"``)."""

    group_wait: str = "1s"
    group_interval: str = "2s"
    repeat_interval: str = "4s"


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC3339 in UTC with a trailing ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> datetime:
    return datetime.now(UTC)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _read_text(path: pathlib.Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text: str) -> str:
    if len(text) <= _LOG_TAIL_CHARS:
        return text
    return "...\n" + text[-_LOG_TAIL_CHARS:]


class Alertmanager:
    """Handle on a running Alertmanager process (only valid inside ``run_alertmanager``)."""

    def __init__(self, base_url: str, log_path: pathlib.Path) -> None:
        self.base_url = base_url
        self._log_path = log_path

    def post_alerts(self, alerts: list[dict[str, object]]) -> None:
        """POST ``alerts`` to ``/api/v2/alerts``; raise ``RuntimeError`` on a non-2xx reply."""
        body = json.dumps(alerts).encode("utf-8")
        request = urllib.request.Request(
            f"{self.base_url}/api/v2/alerts",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=HTTP_TIMEOUT_S) as response:
                status: int = response.status
                detail = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")
            raise RuntimeError(
                f"POST /api/v2/alerts failed: HTTP {exc.code}: {detail.strip()}"
            ) from exc
        if not 200 <= status < 300:
            raise RuntimeError(f"POST /api/v2/alerts failed: HTTP {status}: {detail.strip()}")

    def firing(
        self, labels: dict[str, str], annotations: dict[str, str] | None = None
    ) -> dict[str, object]:
        """Build a firing alert: ``startsAt`` = now, ``endsAt`` = now + 1h."""
        now = _now()
        return {
            "labels": dict(labels),
            "annotations": dict(annotations or {}),
            "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + timedelta(hours=1)),
            "generatorURL": _GENERATOR_URL,
        }

    def resolved(self, alert: dict[str, object]) -> dict[str, object]:
        """Copy of ``alert`` (same labels and ``startsAt``) with ``endsAt`` = now."""
        copy = dict(alert)
        labels = alert.get("labels")
        annotations = alert.get("annotations")
        if isinstance(labels, dict):
            copy["labels"] = dict(labels)
        if isinstance(annotations, dict):
            copy["annotations"] = dict(annotations)
        copy["endsAt"] = rfc3339(_now())
        return copy

    def log(self) -> str:
        """Alertmanager's combined stdout/stderr so far (for assertion messages)."""
        return _read_text(self._log_path)


def _write_config(
    workdir: pathlib.Path,
    webhook_url: str,
    bearer_token: str,
    timing: AlertmanagerTiming,
    group_by: tuple[str, ...],
) -> pathlib.Path:
    token_path = workdir / "webhook-bearer-token"
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as token_file:
        token_file.write(bearer_token)

    config = {
        "route": {
            "receiver": RECEIVER_NAME,
            "group_by": list(group_by),
            "group_wait": timing.group_wait,
            "group_interval": timing.group_interval,
            "repeat_interval": timing.repeat_interval,
        },
        "receivers": [
            {
                "name": RECEIVER_NAME,
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(token_path),
                            }
                        },
                    }
                ],
            }
        ],
    }
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _is_ready(base_url: str) -> bool:
    try:
        with _OPENER.open(f"{base_url}/-/ready", timeout=_READY_PROBE_TIMEOUT_S) as response:
            ready: bool = response.status == 200
            return ready
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(process: subprocess.Popen[bytes], base_url: str, deadline: float) -> bool:
    """Poll ``/-/ready`` (Alertmanager's and Prometheus's) until ``deadline``; False if the
    process exits or time runs out."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _is_ready(base_url):
            return True
        time.sleep(_POLL_INTERVAL_S)
    return False


def _start(
    binary: str,
    config_path: pathlib.Path,
    data_dir: pathlib.Path,
    log_file: IO[bytes],
    port: int,
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_ENV_VARS}
    return subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


@contextlib.contextmanager
def run_alertmanager(
    webhook_url: str,
    *,
    bearer_token: str,
    workdir: pathlib.Path,
    timing: AlertmanagerTiming = AlertmanagerTiming(),
    group_by: tuple[str, ...] = ("alertname", "service"),
    binary: str = DEFAULT_BINARY,
) -> Iterator[Alertmanager]:
    """Start Alertmanager with one webhook receiver; stop it on exit, whatever happens.

    Raises ``RuntimeError`` if the binary is missing or Alertmanager does not become ready
    within ``READY_TIMEOUT_S`` seconds (the message includes the tail of its log).
    """
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise RuntimeError(
            f"Alertmanager binary {binary!r} not found or not executable; "
            "install Debian's 'prometheus-alertmanager' package to run e2e tests"
        )

    workdir.mkdir(parents=True, exist_ok=True)
    config_path = _write_config(workdir, webhook_url, bearer_token, timing, group_by)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    log_path = workdir / "alertmanager.log"

    deadline = time.monotonic() + READY_TIMEOUT_S
    with log_path.open("ab") as log_file:
        process: subprocess.Popen[bytes] | None = None
        try:
            base_url = ""
            failure = ""
            # The free port can be taken by someone else between probing and binding; if
            # Alertmanager exits because of that, retry on a fresh port a couple of times.
            for _attempt in range(_START_ATTEMPTS):
                log_file.flush()
                log_offset = log_path.stat().st_size
                port = _free_loopback_port()
                base_url = f"http://127.0.0.1:{port}"
                process = _start(binary, config_path, data_dir, log_file, port)
                if wait_ready(process, base_url, deadline):
                    break
                returncode = process.poll()
                _stop(process)
                process = None
                with log_path.open("rb") as log_reader:
                    log_reader.seek(log_offset)
                    attempt_log = log_reader.read().decode("utf-8", errors="replace")
                if returncode is None:
                    failure = f"did not become ready within {READY_TIMEOUT_S:.0f}s"
                else:
                    failure = f"exited with status {returncode} before becoming ready"
                if _ADDRESS_IN_USE not in attempt_log or time.monotonic() >= deadline:
                    break
            if process is None:
                raise RuntimeError(
                    f"Alertmanager {failure} (config {config_path}, log {log_path}); "
                    f"log tail:\n{_tail(_read_text(log_path))}"
                )
            yield Alertmanager(base_url, log_path)
        finally:
            if process is not None:
                _stop(process)
