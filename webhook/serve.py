"""`alertpilot serve`: exec gunicorn with an empty Prometheus multiprocess directory.

The directory must be set before prometheus_client is imported and be empty at
start (stale files would resurrect dead workers' counters). It is
`PROMETHEUS_MULTIPROC_DIR` when the operator sets it, else a fixed directory
under the temp dir; either way it is emptied here, then handed to gunicorn
through the environment of an exec. A fixed path (rather than a new one per
start) keeps restarts from piling up directories in a pod's scratch volume.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from webhook.settings import Settings


def metrics_dir(env: dict[str, str]) -> Path:
    configured = env.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "alertpilot-metrics"


def exec_gunicorn(settings: Settings) -> int:
    env = dict(os.environ)
    directory = metrics_dir(env)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
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
