"""Gunicorn settings for `alertpilot serve` (loaded as `python:webhook.gunicorn_conf`)."""

from __future__ import annotations

import os
import shutil
from typing import Any

from prometheus_client import multiprocess

from webhook.serve import OWNED_METRICS_DIR

# gthread, with no thread for a client before it sends and a read deadline (the module
# says why); threads and the deadline are settings (`alertpilot serve`).
worker_class = "webhook.gunicorn_worker.ReceiverWorker"
accesslog = "-"
timeout = 30
graceful_timeout = 20
keepalive = 5
# Alertmanager's body limit is ours too; headers stay small.
limit_request_field_size = 8190
# gunicorn >= 25.1 opens a control socket under $XDG_RUNTIME_DIR or ~/.gunicorn, shared
# by every gunicorn of the user and writable by any of its processes: not wanted here.
control_socket_disable = True


# The app (and its policy set) is loaded once in the master and forked into workers:
# a worker that restarts never has to load policy files that may have turned invalid.
preload_app = True


def post_fork(server: Any, worker: Any) -> None:
    """Each worker watches the policy directory itself (threads do not survive fork)."""
    from webhook.app_services import services_of
    from webhook.wsgi import app, settings

    services_of(app).policies.watch(settings.policy_reload_seconds)


def when_ready(server: Any) -> None:
    """The master watches too, so a worker it forks later starts with the newest good set."""
    from webhook.app_services import services_of
    from webhook.wsgi import app, settings

    services_of(app).policies.watch(settings.policy_reload_seconds)


def on_reload(server: Any) -> None:
    """SIGHUP: reload the master's set, which the workers forked next inherit."""
    from webhook.app_services import services_of
    from webhook.wsgi import app

    try:
        services_of(app).policies.reload()
    except Exception:  # an exception here would stop gunicorn's master
        server.log.exception("policy reload on SIGHUP failed; the previous set stays")


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess files."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the metrics directory `alertpilot serve` made for this start.

    An operator's `PROMETHEUS_MULTIPROC_DIR` stays. So does the directory of a
    master that re-exec'd itself (SIGUSR2): the new master is still using it.
    """
    owned = os.environ.get(OWNED_METRICS_DIR)
    if owned and owned == os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not server.reexec_pid:
        shutil.rmtree(owned, ignore_errors=True)
