"""The one source of the current time for alertpilot's own decisions.

Production reads the system clock. A test installs a clock that runs ahead of
it (tests/support/clock.py) and advances it instead of sleeping: a follow-up
attempt, a stabilisation window or a status-update tick then comes due at once.
Scheduled jobs are stamped with this clock, and cooldowns and budgets are read
against it, so all of them move together. (Redis TTLs and RQ's own scheduler
still run on real time; only the tests' clock ever differs from it.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, with a zone."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_current: Clock = SystemClock()


def now() -> datetime:
    return _current.now()


def timestamp() -> float:
    """Seconds since the epoch, now."""
    return now().timestamp()


def install(clock: Clock) -> Clock:
    """Use `clock` from now on in this process; the one it replaces."""
    global _current
    previous, _current = _current, clock
    return previous
