"""Redis commands a piece of work sends to db 13, counted two ways.

- MONITOR, filtered to db 13: exact, whatever else the server is doing (the test
  suite uses db 15 of the same server).
- INFO commandstats before and after: what Redis itself counts, but for the whole
  server, so another client's traffic in the window shows up in it.

Both leave out the counter's own INFO, ECHO (its markers) and MONITOR.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from tests.bench.harness import REDIS_URL, BenchError

_OWN = {"INFO", "ECHO", "MONITOR"}
_WAIT_S = 10.0


@dataclass(frozen=True)
class Counted:
    monitor: Counter[str]
    """Commands by name, seen by MONITOR on db 13."""
    commandstats: int
    """Calls added to INFO commandstats over the same window, server-wide."""


def count(work: Callable[[], None], db: int = 13) -> Counted:
    """Run `work` and count the Redis commands sent to `db` while it ran."""
    control = Redis.from_url(REDIS_URL)
    watcher = _Watcher(db)
    watcher.start()
    try:
        watcher.mark(control, "start")
        before = _calls(control)
        work()
        after = _calls(control)
        watcher.mark(control, "end")
    finally:
        watcher.close(control)
    return Counted(watcher.seen, after - before)


def _calls(redis: Redis) -> int:
    stats = redis.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_").split("|")[0].upper() not in _OWN
    )


class _Watcher(threading.Thread):
    """MONITOR on its own connection; counts what falls between the two markers."""

    def __init__(self, db: int) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.nonce = uuid.uuid4().hex
        self.seen: Counter[str] = Counter()
        self.started = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._redis = Redis.from_url(REDIS_URL)

    def run(self) -> None:
        counting = False
        try:
            with self._redis.monitor() as monitor:
                for command in monitor.listen():
                    words = str(command["command"]).split()
                    name = words[0].upper() if words else ""
                    if self.nonce in command["command"]:
                        if "start" in command["command"]:
                            counting = True
                            self.started.set()
                        else:
                            self.ended.set()
                            return
                    elif counting and command["db"] == self.db and name not in _OWN:
                        self.seen[name] += 1
        except BaseException as exc:  # reported by mark(); the thread just ends
            self.error = exc
            self.started.set()
            self.ended.set()

    def mark(self, control: Redis, which: str) -> None:
        event = self.started if which == "start" else self.ended
        control.echo(f"{self.nonce}-{which}")
        # MONITOR may not be on yet when the first marker goes out: send it again.
        for _ in range(int(_WAIT_S / 0.1)):
            if event.wait(0.1):
                break
            if which == "start":
                control.echo(f"{self.nonce}-{which}")
        if self.error is not None:
            raise BenchError(f"MONITOR failed: {self.error!r}")
        if not event.is_set():
            raise BenchError(f"MONITOR did not see the {which} marker within {_WAIT_S:.0f}s")

    def close(self, control: Redis) -> None:
        if self.is_alive():
            control.echo(f"{self.nonce}-end")
            self.join(_WAIT_S)
        self._redis.close()
