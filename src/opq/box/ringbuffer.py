"""The box's raw ring buffer: the last hour (by default) of ADC cycles with their timestamps."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from opq.domain import SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE

CYCLE_DURATION_MS: Final = 1000 * SAMPLES_PER_CYCLE / SAMPLE_RATE_HZ
"""Time one 200-sample cycle spans [ms]: 16.67 ms at 12 kS/s."""

CYCLES_PER_SECOND: Final = SAMPLE_RATE_HZ // SAMPLES_PER_CYCLE
"""Cycles the box samples each second [cycles/s]: 60."""


class TimedCounts(Protocol):
    """A cycle as the buffer takes it: `opq.box.source.SourceCycle` or `opq.protocol.RawCycle`."""

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def counts(self) -> npt.NDArray[np.int16]: ...


@dataclass(frozen=True)
class BufferedCycles:
    """Cycles copied out of the buffer, oldest first: `counts[i]` started at `timestamps_ms[i]`."""

    timestamps_ms: npt.NDArray[np.int64]
    """Time of each cycle's first sample [ms since the Unix epoch]."""
    counts: npt.NDArray[np.int16]
    """ADC counts, shape (cycles, 200)."""

    def __len__(self) -> int:
        return len(self.timestamps_ms)


class RingBuffer:
    """A fixed-capacity, thread-safe store of the newest cycles, searchable by time in O(log n).

    Storage is allocated in full at construction with `np.empty`, which the operating system commits
    page by page as cycles are written: an hour (216,000 cycles, 86 MB) costs memory only as it
    fills, and nothing is allocated while the box runs. Timestamps must rise; a cycle not newer than
    the newest one means the clock stepped back, and the cycles it makes "future" are discarded
    (counted in `discarded_on_clock_step`) so the buffer stays sorted and keeps the present.
    """

    def __init__(self, capacity_cycles: int) -> None:
        if capacity_cycles < 1:
            raise ValueError(f"capacity_cycles must be at least 1, not {capacity_cycles}")
        self._lock = threading.Lock()
        self._timestamps_ms = np.empty(capacity_cycles, dtype=np.int64)
        self._counts = np.empty((capacity_cycles, SAMPLES_PER_CYCLE), dtype=np.int16)
        self._start = 0  # physical index of the oldest cycle
        self._size = 0
        self.discarded_on_clock_step = 0

    @classmethod
    def for_duration(cls, seconds: float) -> RingBuffer:
        """A buffer holding `seconds` [s] of cycles (3600 s: 216,000 cycles, 86 MB of int16)."""
        return cls(max(1, round(seconds * CYCLES_PER_SECOND)))

    @property
    def capacity_cycles(self) -> int:
        """Cycles the buffer holds when full."""
        return len(self._timestamps_ms)

    def __len__(self) -> int:
        with self._lock:
            return self._size

    @property
    def newest_timestamp_ms(self) -> int | None:
        """Start of the newest cycle [ms], or None while empty."""
        with self._lock:
            return None if self._size == 0 else int(self._timestamps_ms[self._physical(self._size - 1)])

    @property
    def oldest_timestamp_ms(self) -> int | None:
        """Start of the oldest cycle still held [ms], or None while empty."""
        with self._lock:
            return None if self._size == 0 else int(self._timestamps_ms[self._start])

    def append(self, cycle: TimedCounts) -> None:
        """Store a cycle of 200 counts, overwriting the oldest when full."""
        counts = np.asarray(cycle.counts)
        if counts.shape != (SAMPLES_PER_CYCLE,):
            raise ValueError(f"a cycle has {SAMPLES_PER_CYCLE} samples, not shape {counts.shape}")
        timestamp_ms = int(cycle.timestamp_ms)
        with self._lock:
            if self._size and timestamp_ms <= self._timestamps_ms[self._physical(self._size - 1)]:
                kept = self._search(timestamp_ms, "left")
                self.discarded_on_clock_step += self._size - kept
                self._size = kept
            capacity = self.capacity_cycles
            if self._size == capacity:
                slot = self._start
                self._start = (self._start + 1) % capacity
            else:
                slot = self._physical(self._size)
                self._size += 1
            self._timestamps_ms[slot] = timestamp_ms
            self._counts[slot] = counts

    def cycles_between(self, start_ms: int, end_ms: int) -> BufferedCycles:
        """Copies of the cycles overlapping [start_ms, end_ms] (both included), oldest first.

        A cycle spans [t, t + 16.67 ms): it is included when t ≤ end_ms and t + 16.67 ms > start_ms,
        so the cycle holding `start_ms` is in and so is one starting exactly at `end_ms`.
        """
        with self._lock:
            first = self._search(start_ms - CYCLE_DURATION_MS, "right")
            stop = self._search(end_ms, "right")
            indices = (self._start + np.arange(first, max(first, stop))) % self.capacity_cycles
            return BufferedCycles(timestamps_ms=self._timestamps_ms[indices], counts=self._counts[indices])

    def _physical(self, logical: int) -> int:
        return (self._start + logical) % self.capacity_cycles

    def _search(self, value: float, side: Literal["left", "right"]) -> int:
        """Logical index where `value` would be inserted among the sorted timestamps (`side` as numpy's)."""
        capacity = self.capacity_cycles
        older_end = min(self._start + self._size, capacity)
        older = self._timestamps_ms[self._start : older_end]
        index = int(np.searchsorted(older, value, side=side))
        if index < len(older):
            return index
        newer = self._timestamps_ms[: self._size - len(older)]
        return len(older) + int(np.searchsorted(newer, value, side=side))
