"""The wall clock every service and box reads (and tests replace): ms since the Unix epoch, UTC."""

from __future__ import annotations

import time


def wall_clock_ms() -> int:
    """Now [ms since the Unix epoch, UTC]."""
    return time.time_ns() // 1_000_000
