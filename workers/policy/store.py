"""The policy set in force: loaded whole, swapped whole, reloaded without a restart.

Readers take `store.get()` once per notification, so a notification is always
evaluated against one complete set. A reload builds the new set aside and
swaps one reference; a set that fails validation is logged, counted, shown in
`/readyz` and otherwise ignored, and the set in force stays.

`check()` (the periodic poll) reloads only once the directory's content hash
has been the same on two polls in a row, so a file caught half-written by an
editor or a copy is never even tried. `reload()` (SIGHUP) loads at once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from workers.policy.engine import Policy
from workers.policy.loader import load_policy, read_policy_files
from workers.policy.problems import PolicyError

log = logging.getLogger(__name__)


class PolicyStore:
    def __init__(self, directory: Path, *, on_reload: Callable[[bool], None] | None = None) -> None:
        self.directory = directory
        self.current: Policy = load_policy(directory)
        self.last_error: str | None = None
        """Why the newest files were rejected; None once a set loads again."""
        self._on_reload = on_reload or (lambda ok: None)
        self._pending: str | None = None
        self._rejected: str | None = None
        self._lock = threading.Lock()
        """One load at a time. Not held across fork (a load can take seconds, and a
        worker forks a work horse per job): a child gets a fresh one instead."""
        self._state = threading.Lock()
        """Held for the swap of what a load decided, and around fork, so a child never
        starts from a half-made swap."""
        self._stop = threading.Event()
        os.register_at_fork(
            before=self._state.acquire,
            after_in_parent=self._state.release,
            after_in_child=self._after_fork_in_child,
        )

    def _after_fork_in_child(self) -> None:
        self._state.release()
        self._lock = threading.Lock()  # the parent's may be held by its watcher thread

    def get(self) -> Policy:
        return self.current

    def reload(self) -> bool:
        """Load the directory now; True if a new set is in force."""
        with self._lock:
            try:
                _, content_hash = read_policy_files(self.directory)
            except Exception as exc:  # an unreadable set must never take the server down
                return self._failed(None, _reason(exc))
            return self._load(content_hash)

    def check(self) -> bool:
        """One poll: reload when the files changed and have settled."""
        with self._lock:
            try:
                _, content_hash = read_policy_files(self.directory)
            except Exception:
                return False  # being replaced, or unreadable: reload() reports it
            if content_hash in (self.current.content_hash, self._rejected):
                self._pending = None
                return False
            if content_hash != self._pending:
                self._pending = content_hash  # changed since last poll: let it settle
                return False
            return self._load(content_hash)

    def refresh(self) -> bool:
        """Load the directory now if it holds another set than the one in force (and not
        the one last rejected); True if a new set is in force.

        What a worker calls as each mitigation job starts, so the job is checked
        against the policy as it is then. No settling here: a set caught half
        written fails validation and the set in force stays, as with `check()`.
        """
        with self._lock:
            try:
                _, content_hash = read_policy_files(self.directory)
            except Exception:
                return False  # being replaced, or unreadable: keep the set in force
            if content_hash in (self.current.content_hash, self._rejected):
                return False
            return self._load(content_hash)

    def watch(self, interval: float) -> threading.Thread:
        """Poll every `interval` seconds in a daemon thread (one per process)."""

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.check()
                except Exception:  # never let the watcher die silently
                    log.exception("policy check failed")

        thread = threading.Thread(target=loop, name="policy-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _load(self, content_hash: str) -> bool:
        try:
            policy = load_policy(self.directory)
            _, after = read_policy_files(self.directory)
        except Exception as exc:
            return self._failed(content_hash, _reason(exc))
        if policy.content_hash != after:
            # The files changed while they were read (a swap in progress): the set
            # loaded may never have existed as a whole. Try again on the next poll.
            self._pending = None
            return False
        with self._state:
            self.current, self.last_error, self._pending = policy, None, None
        log.info("policy reloaded: %s (%d routes)", policy.content_hash[:12], len(policy.routes))
        self._on_reload(True)
        return True

    def _failed(self, content_hash: str | None, reason: str) -> bool:
        with self._state:
            self._rejected, self._pending, self.last_error = content_hash, None, reason
        log.error("policy reload rejected, keeping %s:\n%s", self.current.content_hash[:12], reason)
        self._on_reload(False)
        return False


_SHARED: dict[Path, PolicyStore] = {}


def shared(directory: Path) -> PolicyStore:
    """This process's store for `directory`, loaded on first use. `alertpilot worker`
    loads and watches it before RQ forks work horses, so each job starts from a set
    already parsed. Raises PolicyError while no valid set was ever loaded."""
    store = _SHARED.get(directory)
    if store is None:
        store = _SHARED.setdefault(directory, PolicyStore(directory))
    return store


def in_force(directory: Path) -> Policy:
    """The policy set in force in `directory` for a job starting now (refreshed first:
    a job never acts under a set older than the files). Raises PolicyError while no
    valid set was ever loaded: then no mitigation may act."""
    store = shared(directory)
    store.refresh()
    return store.get()


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, PolicyError | OSError) else f"{type(exc).__name__}: {exc}"
