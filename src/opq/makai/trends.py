"""Each box's measurements rolled up into one trend per interval (a minute by default)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from opq.protocol.messages import BoxMeasurement, MetricStats
from opq.store.models import Stats, Trend

logger = logging.getLogger(__name__)

# Measurement metric name → Trend field.
TREND_FIELDS = {"rms": "voltage", "f": "frequency", "thd": "thd", "trans": "transient"}


@dataclass
class _Field:
    """Running min, max and sum of one stats field; NaN and infinite values are skipped."""

    low: float = math.inf
    high: float = -math.inf
    total: float = 0.0
    count: int = 0


@dataclass
class _MetricRollup:
    mins: _Field = field(default_factory=_Field)
    maxes: _Field = field(default_factory=_Field)
    averages: _Field = field(default_factory=_Field)

    def add(self, stats: MetricStats) -> None:
        # Each of min, max and average is taken on its own, so the max is updated even when the
        # same measurement lowered the min (the original's `else if` skipped it).
        for acc, value in ((self.mins, stats.min), (self.maxes, stats.max), (self.averages, stats.average)):
            if math.isfinite(value):
                acc.low = min(acc.low, value)
                acc.high = max(acc.high, value)
                acc.total += value
                acc.count += 1

    def stats(self) -> Stats | None:
        if not (self.mins.count and self.maxes.count and self.averages.count):
            return None
        return Stats(
            min=self.mins.low, max=self.maxes.high, average=self.averages.total / self.averages.count
        )


@dataclass
class _Interval:
    location: str | None = None
    location_timestamp_ms: int | None = None
    metrics: dict[str, _MetricRollup] = field(default_factory=dict)


class TrendRollup:
    """Rolls each box's measurements up into trends over intervals aligned on multiples of `interval_ms`.

    Interval k holds the measurements stamped in ((k − 1)·interval_ms, k·interval_ms] and its trend is
    stamped k·interval_ms, its end: a measurement's timestamp is the end of the span it measured, so
    one stamped exactly on a boundary belongs to the interval that boundary ends. Per metric the trend
    has the min of the mins, the max of the maxes and the mean of the averages (each over its finite
    values; a metric with no finite min, max or average in the interval is None), and the location
    given with the measurement stamped last in the interval.

    An interval is emitted once: by `add` when a later interval of the same box gets a measurement, or
    by `due` once it ended `grace_ms` ago. A measurement for an interval of its box that was already
    emitted (or that ends no later than one that was) is counted in `late_measurements` and dropped.
    """

    def __init__(self, interval_ms: int = 60_000, grace_ms: int = 5_000) -> None:
        if interval_ms <= 0 or grace_ms < 0:
            raise ValueError(f"interval_ms ({interval_ms}) must be > 0 and grace_ms ({grace_ms}) >= 0")
        self.interval_ms = interval_ms
        self.grace_ms = grace_ms
        self.late_measurements = 0
        # box_id → interval end [ms] → what was rolled up so far.
        self._open: dict[str, dict[int, _Interval]] = {}
        # box_id → end of the latest interval emitted [ms].
        self._emitted_through_ms: dict[str, int] = {}

    def interval_end_ms(self, timestamp_ms: int) -> int:
        """The end of the interval a measurement stamped `timestamp_ms` belongs to [ms]."""
        return -(-timestamp_ms // self.interval_ms) * self.interval_ms

    def add(self, measurement: BoxMeasurement, location: str | None) -> list[Trend]:
        """Roll `measurement` up; return the trends of its box's earlier intervals it closes, oldest first."""
        box_id = measurement.box_id
        end_ms = self.interval_end_ms(measurement.timestamp_ms)
        emitted_ms = self._emitted_through_ms.get(box_id)
        if emitted_ms is not None and end_ms <= emitted_ms:
            self.late_measurements += 1
            logger.debug("late measurement from box %s at %d dropped", box_id, measurement.timestamp_ms)
            return []
        intervals = self._open.setdefault(box_id, {})
        interval = intervals.setdefault(end_ms, _Interval())
        if (
            interval.location_timestamp_ms is None
            or measurement.timestamp_ms >= interval.location_timestamp_ms
        ):
            interval.location = location
            interval.location_timestamp_ms = measurement.timestamp_ms
        for name, stats in measurement.metrics.items():
            if name in TREND_FIELDS:
                interval.metrics.setdefault(name, _MetricRollup()).add(stats)
        return self._emit(box_id, [e for e in intervals if e < end_ms])

    def due(self, now_ms: int) -> list[Trend]:
        """Trends of every interval (of every box) that ended at least `grace_ms` before `now_ms`."""
        trends: list[Trend] = []
        for box_id, intervals in list(self._open.items()):
            trends.extend(self._emit(box_id, [e for e in intervals if e + self.grace_ms <= now_ms]))
        trends.sort(key=lambda t: (t.timestamp_ms, t.box_id))
        return trends

    def _emit(self, box_id: str, ends_ms: list[int]) -> list[Trend]:
        intervals = self._open[box_id]
        trends = []
        for end_ms in sorted(ends_ms):
            interval = intervals.pop(end_ms)
            stats = {TREND_FIELDS[name]: rollup.stats() for name, rollup in interval.metrics.items()}
            trends.append(
                Trend(
                    box_id=box_id,
                    timestamp_ms=end_ms,
                    location=interval.location,
                    voltage=stats.get("voltage"),
                    frequency=stats.get("frequency"),
                    thd=stats.get("thd"),
                    transient=stats.get("transient"),
                )
            )
            self._emitted_through_ms[box_id] = max(end_ms, self._emitted_through_ms.get(box_id, end_ms))
        if not intervals:
            del self._open[box_id]
        return trends
