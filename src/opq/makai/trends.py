"""Each box's measurements rolled up into one trend per interval (a minute by default), a batch at a time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.protocol.columns import METRICS, MeasurementColumns
from opq.protocol.messages import BoxMeasurement
from opq.store.models import Stats, Trend

logger = logging.getLogger(__name__)

# Measurement metric name → Trend field.
TREND_FIELDS: Final = {"rms": "voltage", "f": "frequency", "thd": "thd", "trans": "transient"}
_FIELDS: Final = tuple(TREND_FIELDS[name] for name in METRICS)
_NONE: Final = -1
"""An interval end [ms] standing for "no interval" (real ends are positive)."""

Array = npt.NDArray[np.float64]


class _Sums:
    """Per slot (a box) and metric: min and count of the finite mins, max and count of the finite maxes,
    total and count of the finite averages."""

    def __init__(self, slots: int) -> None:
        shape = (slots, len(METRICS))
        self.low = np.full(shape, np.inf)
        self.low_count = np.zeros(shape)
        self.high = np.full(shape, -np.inf)
        self.high_count = np.zeros(shape)
        self.total = np.zeros(shape)
        self.total_count = np.zeros(shape)

    @classmethod
    def of_groups(cls, stats: Array, starts: npt.NDArray[np.intp]) -> _Sums:
        """Sums of each group of rows of `stats` (rows × metrics × min/max/average), groups from `starts`."""
        sums = cls(0)
        mins, maxes, averages = stats[:, :, 0], stats[:, :, 1], stats[:, :, 2]
        finite_mins, finite_maxes, finite_averages = (
            np.isfinite(mins),
            np.isfinite(maxes),
            np.isfinite(averages),
        )
        sums.low = np.minimum.reduceat(np.where(finite_mins, mins, np.inf), starts)
        sums.low_count = np.add.reduceat(finite_mins, starts).astype(np.float64)
        sums.high = np.maximum.reduceat(np.where(finite_maxes, maxes, -np.inf), starts)
        sums.high_count = np.add.reduceat(finite_maxes, starts).astype(np.float64)
        sums.total = np.add.reduceat(np.where(finite_averages, averages, 0.0), starts)
        sums.total_count = np.add.reduceat(finite_averages, starts).astype(np.float64)
        return sums

    def grow(self, slots: int) -> None:
        old = self.low.shape[0]
        fresh = _Sums(slots - old)
        for name, value in vars(self).items():
            setattr(self, name, np.concatenate([value, getattr(fresh, name)]))

    def merge(self, slots: npt.NDArray[np.intp], other: _Sums, rows: npt.NDArray[np.intp]) -> None:
        """Add `other`'s rows `rows` into slots `slots` (each slot at most once)."""
        self.low[slots] = np.minimum(self.low[slots], other.low[rows])
        self.high[slots] = np.maximum(self.high[slots], other.high[rows])
        for name in ("low_count", "high_count", "total", "total_count"):
            getattr(self, name)[slots] += getattr(other, name)[rows]

    def put(self, slots: npt.NDArray[np.intp], other: _Sums, rows: npt.NDArray[np.intp]) -> None:
        """Replace slots `slots` by `other`'s rows `rows`."""
        for name, value in vars(self).items():
            value[slots] = getattr(other, name)[rows]

    def clear(self, slots: npt.NDArray[np.intp]) -> None:
        self.put(slots, _Sums(1), np.zeros(len(slots), dtype=np.intp))

    def stats(self, row: int) -> dict[str, Stats | None]:
        """Trend field → stats of row `row` (None for a metric without a finite min, max and average)."""
        out: dict[str, Stats | None] = {}
        for k, field in enumerate(_FIELDS):
            if self.low_count[row, k] and self.high_count[row, k] and self.total_count[row, k]:
                average = float(self.total[row, k] / self.total_count[row, k])
                out[field] = Stats(float(self.low[row, k]), float(self.high[row, k]), average)
            else:
                out[field] = None
        return out


class TrendRollup:
    """Rolls each box's measurements up into trends over intervals aligned on multiples of `interval_ms`.

    Interval k holds the measurements stamped in ((k − 1)·interval_ms, k·interval_ms] and its trend is
    stamped k·interval_ms, its end: a measurement's timestamp is the end of the span it measured, so
    one stamped exactly on a boundary belongs to the interval that boundary ends. Per metric the trend
    has the min of the mins, the max of the maxes and the mean of the averages (each over its finite
    values; a metric with no finite min, max or average in the interval is None), and the location
    given with the measurement stamped last in the interval.

    A box has one open interval at a time. It is emitted once: by `add_batch` when a later interval of
    the same box gets a measurement, or by `due` once it ended `grace_ms` ago. A measurement for an
    interval earlier than its box's open one, or for one already emitted, is counted in
    `late_measurements` and dropped (ingest passes each box's measurements in time order).
    """

    def __init__(self, interval_ms: int = 60_000, grace_ms: int = 5_000) -> None:
        if interval_ms <= 0 or grace_ms < 0:
            raise ValueError(f"interval_ms ({interval_ms}) must be > 0 and grace_ms ({grace_ms}) >= 0")
        self.interval_ms = interval_ms
        self.grace_ms = grace_ms
        self.late_measurements = 0
        self._slot_of: dict[str, int] = {}
        self._box_of: list[str] = []
        self._open_end_ms = np.zeros(0, dtype=np.int64)
        self._emitted_through_ms = np.zeros(0, dtype=np.int64)
        self._location_ms = np.zeros(0, dtype=np.int64)
        self._location: list[str | None] = []
        self._sums = _Sums(0)

    def interval_end_ms(self, timestamp_ms: int) -> int:
        """The end of the interval a measurement stamped `timestamp_ms` belongs to [ms]."""
        return -(-timestamp_ms // self.interval_ms) * self.interval_ms

    def add(self, measurement: BoxMeasurement, location: str | None) -> list[Trend]:
        """Roll one measurement up; the trends of its box's earlier interval it closes."""
        return self.add_batch(MeasurementColumns.of([measurement]), [location])

    def add_batch(self, columns: MeasurementColumns, locations: Sequence[str | None]) -> list[Trend]:
        """Roll `columns` up (row i at `locations[i]`); the trends they close, by time then box."""
        if len(columns) == 0:
            return []
        slots = np.array([self._slot(box_id) for box_id in columns.box_ids], dtype=np.intp)
        timestamps = columns.timestamps_ms
        ends = -(-timestamps // self.interval_ms) * self.interval_ms
        # Rows by box, interval and time (stable): a group's last row is its newest.
        order = np.lexsort((timestamps, ends, slots))
        slots, ends, timestamps = slots[order], ends[order], timestamps[order]
        starts = np.flatnonzero(np.r_[True, (slots[1:] != slots[:-1]) | (ends[1:] != ends[:-1])])
        sizes = np.diff(np.r_[starts, len(order)])
        group_slot, group_end = slots[starts], ends[starts]
        newest_ms = timestamps[starts + sizes - 1]
        newest_location = [locations[row] for row in order[starts + sizes - 1].tolist()]
        sums = _Sums.of_groups(columns.stats[order], starts)

        late = (group_end <= self._emitted_through_ms[group_slot]) | (
            group_end < self._open_end_ms[group_slot]
        )
        if late.any():
            self.late_measurements += int(sizes[late].sum())
            logger.debug("%d late measurements dropped", int(sizes[late].sum()))
        same = ~late & (group_end == self._open_end_ms[group_slot])
        self._sums.merge(group_slot[same], sums, np.flatnonzero(same))
        self._locate(np.flatnonzero(same), group_slot, newest_ms, newest_location)
        # Groups of later intervals (a box's come in time order): each closes its box's open
        # interval and opens its own, which the box's next group closes in turn.
        fresh = np.flatnonzero(~late & ~same)
        fresh_slot = group_slot[fresh]
        closing = np.unique(fresh_slot)
        closing = closing[self._open_end_ms[closing] != _NONE]
        trends = [
            self._trend(slot, int(self._open_end_ms[slot]), self._sums, slot, self._location[slot])
            for slot in closing.tolist()
        ]
        self._close(closing)
        last_of_box = np.r_[fresh_slot[1:] != fresh_slot[:-1], True] if fresh.size else np.zeros(0, bool)
        for group in fresh[~last_of_box].tolist():
            slot, end_ms = int(group_slot[group]), int(group_end[group])
            trends.append(self._trend(slot, end_ms, sums, group, newest_location[group]))
            self._emitted_through_ms[slot] = max(end_ms, int(self._emitted_through_ms[slot]))
        opening = fresh[last_of_box]
        self._sums.put(group_slot[opening], sums, opening)
        self._open_end_ms[group_slot[opening]] = group_end[opening]
        self._location_ms[group_slot[opening]] = _NONE
        self._locate(opening, group_slot, newest_ms, newest_location)
        trends.sort(key=lambda t: (t.timestamp_ms, t.box_id))
        return trends

    def due(self, now_ms: int) -> list[Trend]:
        """Trends of every open interval (of every box) that ended at least `grace_ms` before `now_ms`."""
        ended = np.flatnonzero((self._open_end_ms != _NONE) & (self._open_end_ms + self.grace_ms <= now_ms))
        trends = [
            self._trend(slot, int(self._open_end_ms[slot]), self._sums, slot, self._location[slot])
            for slot in ended.tolist()
        ]
        self._close(ended)
        trends.sort(key=lambda t: (t.timestamp_ms, t.box_id))
        return trends

    def _locate(
        self,
        groups: npt.NDArray[np.intp],
        group_slot: npt.NDArray[np.intp],
        newest_ms: npt.NDArray[np.int64],
        newest_location: list[str | None],
    ) -> None:
        """Each open interval keeps the location given with its newest measurement."""
        for group in groups.tolist():
            slot = int(group_slot[group])
            if newest_ms[group] >= self._location_ms[slot]:
                self._location_ms[slot] = newest_ms[group]
                self._location[slot] = newest_location[group]

    def _slot(self, box_id: str) -> int:
        slot = self._slot_of.get(box_id)
        if slot is None:
            slot = self._slot_of[box_id] = len(self._box_of)
            self._box_of.append(box_id)
            self._location.append(None)
            if slot >= len(self._open_end_ms):
                self._grow(max(64, 2 * slot))
        return slot

    def _grow(self, slots: int) -> None:
        extra = slots - len(self._open_end_ms)
        none = np.full(extra, _NONE, dtype=np.int64)
        self._open_end_ms = np.concatenate([self._open_end_ms, none])
        self._emitted_through_ms = np.concatenate([self._emitted_through_ms, none])
        self._location_ms = np.concatenate([self._location_ms, none])
        self._sums.grow(slots)

    def _close(self, slots: npt.NDArray[np.intp]) -> None:
        """The open intervals of `slots` were emitted."""
        self._emitted_through_ms[slots] = np.maximum(
            self._emitted_through_ms[slots], self._open_end_ms[slots]
        )
        self._open_end_ms[slots] = _NONE
        self._sums.clear(slots)

    def _trend(self, slot: int, end_ms: int, sums: _Sums, row: int, location: str | None) -> Trend:
        stats = sums.stats(row)
        return Trend(
            box_id=self._box_of[slot],
            timestamp_ms=end_ms,
            location=location,
            voltage=stats["voltage"],
            frequency=stats["frequency"],
            thd=stats["thd"],
            transient=stats["transient"],
        )
