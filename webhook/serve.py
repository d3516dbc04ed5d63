"""`alertpilot serve`: exec gunicorn with an empty Prometheus multiprocess directory.

The directory must be set before prometheus_client is imported and hold no
counter files at start (stale files would resurrect dead workers' counters).
It reaches gunicorn, its workers and `webhook.gunicorn_conf` as
`PROMETHEUS_MULTIPROC_DIR` in the environment of an exec, so gunicorn's
master keeps this process's pid and signals (SIGHUP, SIGTERM) reach it.

- `PROMETHEUS_MULTIPROC_DIR` unset: a new private directory per start
  (mkdtemp under TMPDIR), so two instances on one host never share or wipe
  each other's files. gunicorn's master removes it on exit (`on_exit`); a
  SIGKILL or a failed bind leaves an empty directory behind.
- set by the operator (say, an emptyDir volume): that directory is used and
  kept; only prometheus_client's files directly in it (`*.db`) are removed at
  start, nothing else in it and nothing outside it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from workers.config import Settings

OWNED_METRICS_DIR = "ALERTPILOT_OWNED_METRICS_DIR"
"""Set (to the directory) by `serve` for gunicorn's master when the directory is its own."""


@dataclass(frozen=True)
class MetricsDir:
    path: Path
    owned: bool
    """Made by this start, so removed when gunicorn exits; else the operator's, so kept."""


def prepare_metrics_dir(env: Mapping[str, str]) -> MetricsDir:
    """The directory for this start, ready for gunicorn: new and private, or the configured
    one emptied of stale counter files."""
    configured = env.get("PROMETHEUS_MULTIPROC_DIR")
    if not configured:
        return MetricsDir(Path(tempfile.mkdtemp(prefix="alertpilot-metrics-")), owned=True)
    path = Path(configured)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
    return MetricsDir(path, owned=False)


def exec_gunicorn(settings: Settings) -> int:
    env = dict(os.environ)
    env.pop(OWNED_METRICS_DIR, None)
    directory = prepare_metrics_dir(env)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory.path)
    if directory.owned:
        env[OWNED_METRICS_DIR] = str(directory.path)
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
        "--threads",
        str(settings.web_threads),
        "webhook.wsgi:app",
    ]
    os.execve(sys.executable, argv, env)  # noqa: S606 - replaces this process on purpose
    return 0  # not reached
