"""`alertpilot serve`: exec gunicorn with a fresh Prometheus multiprocess directory.

The directory must be set before prometheus_client is imported and be empty at
start (stale files would resurrect dead workers' counters), so it is made here
and handed to gunicorn through the environment of an exec.
"""

from __future__ import annotations

import os
import sys
import tempfile

from webhook.settings import Settings


def exec_gunicorn(settings: Settings) -> int:
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="alertpilot-metrics-")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:webhook.gunicorn_conf",
        "--bind",
        settings.bind,
        "--workers",
        str(settings.web_concurrency),
        "webhook.wsgi:app",
    ]
    os.execve(sys.executable, argv, env)  # noqa: S606 - replaces this process on purpose
    return 0  # not reached
