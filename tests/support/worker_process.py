"""A real `alertpilot worker` process for fault tests, and waiting on what it does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def wait_for(
    what: str, check: Callable[[], object], timeout: float, log: Path | None = None
) -> None:
    """Poll `check` until it is true; on timeout fail naming `what`, with `log`'s tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    said = log.read_text()[-6000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{said}")


@contextmanager
def worker_process(
    redis_url: str, queue: str, workdir: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`alertpilot worker --heartbeat-dir WORKDIR ARGS`, logging to WORKDIR/worker.log;
    stopped with SIGTERM (then SIGKILL) however the test ends."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ALERTPILOT_QUEUE": queue,
        "ALERTPILOT_POLICIES_DIR": str(REPO / "policies"),
        "PYTHONPATH": str(REPO),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "worker", "--heartbeat-dir", str(workdir), *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "worker.log").open("w"),
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
