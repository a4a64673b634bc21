"""The system_stats document: what the database holds, which boxes report, how plugins and Mauka fare."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from opq.store import Store

logger = logging.getLogger(__name__)

DAY_MS: Final = 86_400_000
ACTIVE_WINDOW_MS: Final = 60_000
"""A box with a measurement this recent is active [ms]."""
TREND_STATS_EVERY_MS: Final = 60_000
"""box_trend_stats scans every trend, and trends change once a minute: refreshed this often [ms]."""
COUNTS_EVERY_MS: Final = 300_000
"""Counting rows scans whole tables (10,000 boxes store 60,000 measurements a second), so the
counts are refreshed this often [ms], not with every document."""


class SystemStatsCollector:
    """Builds the system_stats document; remembers the CPU time of the last one to give a rate.

    The seed's fields (counts and today's counts per collection, boxes, users, trends per box) and
    the original Mauka's (active devices, plugin statistics, this process's CPU and memory). "Today"
    starts at midnight UTC. Sizes in bytes per collection are left out: the store has no portable
    way to measure them yet.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._last_cpu: tuple[float, float] | None = None
        self._trend_stats: list[dict[str, Any]] = []
        self._trend_stats_ms: int | None = None
        self._counts: dict[str, Any] = {}
        self._counts_ms: int | None = None

    def document(
        self,
        now_ms: int,
        *,
        plugin_stats: Mapping[str, Mapping[str, Any]],
        last_seen_ms: Mapping[str, int],
        mauka: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The document at now_ms; `last_seen_ms` is each box's newest measurement time."""
        if self._counts_ms is None or now_ms - self._counts_ms >= COUNTS_EVERY_MS:
            self._counts = self._count(now_ms)
            self._counts_ms = now_ms
        if self._trend_stats_ms is None or now_ms - self._trend_stats_ms >= TREND_STATS_EVERY_MS:
            self._trend_stats = [
                {"boxId": box, "firstTrend": first, "lastTrend": last, "totalTrends": total}
                for box, first, last, total in self._store.trends.per_box()
            ]
            self._trend_stats_ms = now_ms
        active = sorted(box for box, seen in last_seen_ms.items() if now_ms - seen <= ACTIVE_WINDOW_MS)
        return {
            "timestamp_ms": now_ms,
            "timestamp": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds"),
            **self._counts,
            "box_trend_stats": self._trend_stats,
            "active_devices": len(active),
            "active_boxes": active,
            "plugin_stats": {name: dict(stats) for name, stats in plugin_stats.items()},
            "mauka": dict(mauka or {}),
            "process": self._process(),
        }

    def _count(self, now_ms: int) -> dict[str, Any]:
        """Rows per collection, in all and since midnight UTC, and when they were counted."""
        store = self._store
        today_ms = now_ms - now_ms % DAY_MS
        rows = store.row_counts()
        return {
            "counted_ms": now_ms,
            "events_count": rows.get("events", 0),
            "events_count_today": store.events.count(since_ms=today_ms),
            "box_events_count": rows.get("box_events", 0),
            "box_events_count_today": store.events.count_box_events(since_ms=today_ms),
            "measurements_count": rows.get("measurements", 0),
            "measurements_count_today": store.measurements.count(since_ms=today_ms),
            "trends_count": rows.get("trends", 0),
            "trends_count_today": store.trends.count(since_ms=today_ms),
            "incidents_count": rows.get("incidents", 0),
            "incidents_count_today": store.incidents.count(since_ms=today_ms),
            "opq_boxes_count": rows.get("opq_boxes", 0),
            "users_count": rows.get("user_profiles", 0),
            "collections": {name: {"count": count} for name, count in sorted(rows.items())},
        }

    def put(self, now_ms: int, **figures: Any) -> dict[str, Any]:
        """Build the document (see `document`) and store it as the system_stats document."""
        document = self.document(now_ms, **figures)
        self._store.system_stats.put(now_ms, document)
        return document

    def _process(self) -> dict[str, Any]:
        """CPU and memory of this process (resource and /proc; no psutil)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = usage.ru_utime + usage.ru_stime
        wall_s = time.monotonic()
        cpu_percent = None
        if self._last_cpu is not None and wall_s > self._last_cpu[0]:
            cpu_percent = round(100 * (cpu_s - self._last_cpu[1]) / (wall_s - self._last_cpu[0]), 2)
        self._last_cpu = (wall_s, cpu_s)
        return {
            "pid": os.getpid(),
            "cpu_seconds": round(cpu_s, 3),
            "cpu_load_percent": cpu_percent,
            "memory_use_bytes": _resident_bytes(),
            # ru_maxrss is in KiB on Linux.
            "max_memory_use_bytes": usage.ru_maxrss * 1024,
            "load_average": list(os.getloadavg()),
        }


def _resident_bytes() -> int | None:
    """This process's resident memory [bytes], where /proc tells it."""
    try:
        with Path("/proc/self/statm").open(encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
