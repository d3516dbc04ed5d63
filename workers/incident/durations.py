"""Durations as Prometheus and Alertmanager write them: `30s`, `15m`, `1h30m`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")


MAX_SECONDS = 10 * 365 * 86400
"""Longer is a typo, and past timedelta's range (999999999 days) an OverflowError."""


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus-style duration; reject anything else, including "0" or "1.5h"."""
    if not isinstance(text, str) or not text or not re.fullmatch(r"(?:\d+(?:ms|s|m|h|d|w))+", text):
        raise DurationError(f"expected a duration like 30s, 15m, 1h or 1h30m, got {text!r}")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise DurationError(f"at most 10 years, got {text!r}")
    return timedelta(seconds=seconds)
