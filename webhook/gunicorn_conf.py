"""Gunicorn settings for `alertpilot serve` (loaded as `python:webhook.gunicorn_conf`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

accesslog = "-"
timeout = 30
graceful_timeout = 20
keepalive = 5
# Alertmanager's body limit is ours too; headers stay small.
limit_request_field_size = 8190
# gunicorn >= 25.1 opens a control socket under $XDG_RUNTIME_DIR or ~/.gunicorn, shared
# by every gunicorn of the user and writable by any of its processes: not wanted here.
control_socket_disable = True


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess files."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
