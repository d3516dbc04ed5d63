"""The RQ worker `alertpilot worker` runs: every lane, a scheduler that rides out Redis
outages, prompt shutdown, and the job code loaded once before it forks.

- **Lanes.** It takes jobs from the installation's lanes most urgent first
  (workers/jobs/contract.py LANES): a page never waits behind bulk work.
- **Scheduler.** RQ's scheduler runs in a child process that dies on the first Redis
  error, and RQ starts it again only at its next maintenance run (10 minutes by
  default): a `page_after` page ran 13 minutes late after a 5 s Redis restart.
  `Scheduler` keeps its loop through Redis errors (backing off to `MAX_BACKOFF`),
  and maintenance runs every `MAINTENANCE_SECONDS`, so a scheduler killed outright is
  back within that.
- **Liveness.** With `--heartbeat-dir`, the worker touches `HEARTBEAT_FILE` every
  second while it is well: it runs no scheduler (another worker holds the lock), or
  its scheduler process is alive and its loop went round within `LOOP_STALE`. Nothing
  of it needs Redis: a Redis outage must not restart the worker pods.
- **Shutdown.** RQ's pubsub thread waits up to 60 s in `get_message`; a stop waited
  that out. Here it waits 1 s.
- **Fork cost.** The forking worker (kept: a job that crashes or hangs takes down its
  work horse, not the worker) forks per job. The job code, its vendor SDKs and the TLS
  contexts are loaded in the parent before the first fork, so a work horse inherits
  them instead of importing them again (0.7 s) and reloading the CA store (30 ms).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from workers.config import Settings
from workers.incident.keys import Keys
from workers.jobs import locks
from workers.jobs.contract import lanes
from workers.tls import ssl_context

log = logging.getLogger(__name__)

MAX_BACKOFF = 2.0
"""Seconds between the scheduler's tries while Redis is away: due jobs go out within
this of its return."""
MAINTENANCE_SECONDS = 30
"""RQ's registry clean-up, and the restart of a scheduler that died, this often."""
SOCKET_TIMEOUT = 2.0
"""Seconds the scheduler waits for Redis to answer one command."""
HEARTBEAT_FILE = "worker-alive"
LOOP_FILE = "scheduler-loop"
LOOP_STALE = 60.0
"""Seconds without a round of the scheduler's loop after which the worker is not well."""


class Scheduler(RQScheduler):
    """RQ's scheduler, with a loop that outlives Redis errors."""

    heartbeat_dir: Path | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Its own connection times out fast (it sends no blocking command): a Redis that
        # stops answering without closing the socket must not hold the loop for the
        # worker's 40 s+ socket timeout, times redis-py's retries.
        self._pool_kwargs = {
            **self._pool_kwargs,
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),  # the loop is the retry, with its own backoff
        }

    def work(self) -> None:
        self._install_signal_handlers()
        delay = float(self.interval)
        born = False
        while not self._stop_requested:
            try:
                if not born:
                    self.register_birth()
                    born = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                delay = float(self.interval)
            except RedisError as exc:
                delay = min(delay * 2, MAX_BACKOFF)
                log.warning("scheduler: Redis unavailable (%s); trying again in %.1fs", exc, delay)
                self._status = self.Status.STARTED
            self._beat()
            time.sleep(delay)
        try:
            self.stop()
        except RedisError as exc:  # its locks expire by themselves
            log.warning("scheduler: could not release its locks (%s)", exc)

    def _beat(self) -> None:
        if self.heartbeat_dir is not None:
            (self.heartbeat_dir / LOOP_FILE).touch()


class AlertpilotWorker(Worker):
    heartbeat_dir: Path | None = None

    def work(self, *args: Any, **kwargs: Any) -> bool:
        if self.heartbeat_dir is not None:
            threading.Thread(target=self._liveness, name="liveness", daemon=True).start()
        done: bool = super().work(*args, **kwargs)
        return done

    # RQ's work loop quits on any error outside its blocking wait (it retries a refused
    # connection there, but not a timeout, nor an error in setting its state, the
    # suspension check, the maintenance, the heartbeat or a job's bookkeeping): a Redis
    # restart ended `alertpilot worker` in 2 of 8 runs of the restart test.
    # These keep it going; the next round tries again.

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except RedisError as exc:
            self._redis_away("suspension check", exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except RedisError as exc:
            self._redis_away("maintenance", exc)

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().heartbeat(*args, **kwargs)
        except RedisError as exc:
            self._redis_away("heartbeat", exc)

    def dequeue_job_and_maintain_ttl(self, *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(*args, **kwargs)
            except RedisError as exc:  # RQ retries a refusal in its wait, not around it
                self._redis_away("dequeue", exc)
                if self._stop_requested:
                    raise StopRequested() from exc

    def execute_job(self, *args: Any, **kwargs: Any) -> None:
        """A job running when Redis goes away: the worker's bookkeeping around it fails.
        The job stays in RQ's started registry, which the maintenance of a worker
        requeues (with its crash retries) once its heartbeat has lapsed."""
        try:
            super().execute_job(*args, **kwargs)
        except RedisError as exc:
            self._redis_away("a job's bookkeeping", exc)

    def _redis_away(self, what: str, exc: RedisError) -> None:
        log.warning("worker %s: Redis unavailable (%s); trying again", what, exc)
        time.sleep(1)

    def _liveness(self) -> None:
        assert self.heartbeat_dir is not None
        while True:
            if self.well():
                (self.heartbeat_dir / HEARTBEAT_FILE).touch()
            time.sleep(1)

    def well(self) -> bool:
        """No scheduler of its own, or one that is alive and going round its loop."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.acquired_locks:
            return True
        process = scheduler._process
        if process is None or not process.is_alive():
            return False
        assert self.heartbeat_dir is not None
        try:
            age = time.time() - (self.heartbeat_dir / LOOP_FILE).stat().st_mtime
        except FileNotFoundError:
            return True  # just started
        return age < LOOP_STALE

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = "%H:%M:%S",
        log_format: str = "%(asctime)s %(message)s",
    ) -> None:
        """RQ's own, with `Scheduler` in place of RQScheduler."""
        self.scheduler = Scheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.heartbeat_dir = self.heartbeat_dir
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def subscribe(self) -> None:
        """RQ's own, with a 1 s wait in the pubsub thread instead of 60 s."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )


def release_locks_of_dead_horse(job: Any, pid: int, status: int, rusage: Any) -> None:
    """The work horse died running `job` (killed, out of memory): give back the locks it
    held in the job's name (workers/jobs/locks.py), so the crash retry need not wait
    for them to expire (300 s). Called before RQ schedules that retry."""
    payload = job.args[0] if job.args and isinstance(job.args[0], dict) else {}
    prefix = payload.get("prefix")
    if not isinstance(prefix, str):
        return
    try:
        locks.release_dead(job.connection, Keys(prefix).job_locks(job.id), job.id)
    except RedisError as exc:  # they expire by themselves
        log.warning("could not release the locks of %s: %s", job.id, exc)


def preload(settings: Settings) -> None:
    """Import the job code and make the TLS context in the parent, once, for every fork."""
    import workers.entry  # noqa: F401  (the RQ function, its actions and vendor SDKs)

    ssl_context(settings.integrations.ca_bundle)
    gc.collect()
    gc.freeze()  # what is loaded now is never collected: the forks' GC leaves its pages shared


def make_worker(
    redis: Redis, queue_name: str, *, heartbeat_dir: Path | None = None
) -> AlertpilotWorker:
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    worker = AlertpilotWorker(
        lanes(queue),
        connection=redis,
        serializer=JSONSerializer,
        work_horse_killed_handler=release_locks_of_dead_horse,
        maintenance_interval=MAINTENANCE_SECONDS,
        # An idle worker waits in BLPOP for worker_ttl - 15 s and runs maintenance only
        # between dequeues: RQ's default (420) let a dead scheduler wait 405 s.
        worker_ttl=MAINTENANCE_SECONDS + 15,
    )
    worker.heartbeat_dir = heartbeat_dir
    return worker
