"""A clock that runs with real time, plus however far a test has advanced it.

It never stands still (incident ids and timeline order need time to move) and
never goes back; `advance` stands in for a sleep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class AheadClock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back, got {seconds!r}")
        self.offset += timedelta(seconds=seconds)
