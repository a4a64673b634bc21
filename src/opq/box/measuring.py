"""On-box measurements: every N cycles, min/max/average of rms, f, thd and trans as OPQ Box v3 sends them."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.box.ringbuffer import CYCLE_DURATION_MS, TimedCounts
from opq.domain import (
    FREQUENCY_WINDOW_CYCLES,
    SAMPLES_PER_CYCLE,
    THD_WINDOW_CYCLES,
    frequency_per_window,
    rms_per_cycle,
    summarize,
    thd_per_window,
    transient_per_cycle,
)
from opq.protocol import BoxMeasurement, MetricStats

MIN_RATE_CYCLES: Final = 1
"""Fewest cycles per measurement: one measurement per cycle (60 a second)."""

MAX_RATE_CYCLES: Final = 3600
"""Most cycles per measurement (one a minute): the cloud rolls measurements up into 1-minute trends
and judges a box silent after a minute without one, so a slower box would look unplugged."""

GAP_TOLERANCE_MS: Final = 1.5 * CYCLE_DURATION_MS
"""Consecutive cycles further apart than this [ms] have a gap (lost cycles, a silent box) between them."""

_Span = tuple[int, int]  # [first, stop) cycle indices into the history


class MeasurementBuilder:
    """Turns a stream of cycles (ADC counts) into `BoxMeasurement`s of N cycles each.

    Per measurement: `rms` and `trans` summarize one value per cycle, `f` one per 10-cycle window and
    `thd` one per 12-cycle window (ratio). The windows are laid back to back ending at the
    measurement's end, ceil(N / window) of them, so every cycle is covered and, when N is not a
    multiple of a window, the earliest window reaches back into the previous measurement (with N = 10,
    each `thd` covers the last 12 cycles). The frequency and transient filters get one cycle of
    context on each side, so a measurement is emitted when the cycle after it arrives.

    `timestamp_ms` is the end of the measured span (when its last sample was taken, counted in
    16.67 ms cycles from the first cycle after the last gap, so rounding does not accumulate): a
    sample time, where the original stamped its read-out time at the block's end.

    A metric without any value (no frequency or THD in an interruption, a window shortened below
    half its length at the start of the stream) is left out rather than sent as NaN, as the
    original left out metrics it had no value for. A gap in the timestamps ends the measurement in
    progress early and starts afresh: no window spans a gap.
    """

    def __init__(
        self,
        box_id: str,
        calibration_constant: float,
        cycles_per_measurement: int = 10,
        *,
        frequency_window_cycles: int = FREQUENCY_WINDOW_CYCLES,
        thd_window_cycles: int = THD_WINDOW_CYCLES,
    ) -> None:
        if not (math.isfinite(calibration_constant) and calibration_constant > 0):
            raise ValueError(
                f"calibration constant {calibration_constant!r} counts/V is not a positive number"
            )
        self.box_id = box_id
        self.calibration_constant = float(calibration_constant)
        self._frequency_window = frequency_window_cycles
        self._thd_window = thd_window_cycles
        self._rate_lock = threading.Lock()
        self._rate = check_rate(cycles_per_measurement)
        self._counts: deque[npt.NDArray[np.int16]] = deque()
        self._timestamps_ms: deque[int] = deque()
        self._pending = 0  # cycles at the end of the history that belong to the measurement in progress
        self._segment_start_ms = 0  # start of the first cycle since the last gap
        self._segment_cycles = 0  # cycles taken since the last gap

    @property
    def cycles_per_measurement(self) -> int:
        """Cycles per measurement now [cycles]."""
        return self._rate

    def set_rate(self, cycles: int) -> int:
        """Set the cycles per measurement (safe from another thread); returns the previous value.

        It applies to the measurement in progress: one that already has `cycles` ends with the next cycle.
        """
        check_rate(cycles)
        with self._rate_lock:
            old, self._rate = self._rate, cycles
        return old

    def add(self, cycle: TimedCounts) -> BoxMeasurement | None:
        """Take the next cycle; returns the measurement it completes, if any."""
        timestamp_ms = int(cycle.timestamp_ms)
        done: BoxMeasurement | None = None
        if self._timestamps_ms:
            step_ms = timestamp_ms - self._timestamps_ms[-1]
            if step_ms <= 0 or step_ms > GAP_TOLERANCE_MS:
                done = self.flush()
                self._counts.clear()
                self._timestamps_ms.clear()
        if not self._timestamps_ms:
            self._segment_start_ms, self._segment_cycles = timestamp_ms, 0
        self._segment_cycles += 1
        self._counts.append(np.array(cycle.counts, dtype=np.int16))  # a source may reuse its buffer
        self._timestamps_ms.append(timestamp_ms)
        with self._rate_lock:
            rate = self._rate
        if done is None and self._pending >= rate:
            done = self._measure(len(self._counts) - 1 - self._pending, len(self._counts) - 1)
            self._pending = 0
        self._pending += 1
        keep = self._pending + max(self._frequency_window, self._thd_window) + 1
        while len(self._counts) > keep:
            self._counts.popleft()
            self._timestamps_ms.popleft()
        return done

    def flush(self) -> BoxMeasurement | None:
        """The measurement in progress, however short, without waiting for more cycles (end of stream)."""
        if self._pending == 0:
            return None
        n = len(self._counts)
        done = self._measure(n - self._pending, n)
        self._pending = 0
        return done

    def _measure(self, first: int, stop: int) -> BoxMeasurement:
        """The measurement of history cycles [first, stop); the history may hold context either side."""
        n = len(self._counts)
        samples_v = np.concatenate(self._counts).astype(np.float64) / self.calibration_constant
        samples_v = samples_v.reshape(n, SAMPLES_PER_CYCLE)
        context = (max(0, first - 1), min(n, stop + 1))
        transient_v = transient_per_cycle(samples_v[context[0] : context[1]].ravel())
        values = {
            "rms": rms_per_cycle(samples_v[first:stop].ravel()),
            "f": _per_window(samples_v, _windows(first, stop, self._frequency_window), 1, _frequency),
            "thd": _per_window(samples_v, _windows(first, stop, self._thd_window), 0, _thd),
            "trans": transient_v[first - context[0] : stop - context[0]],
        }
        metrics: dict[str, MetricStats] = {}
        for name, array in values.items():
            low, high, average = summarize(array)
            if not math.isnan(average):
                metrics[name] = MetricStats(min=low, max=high, average=average)
        # Counted from the segment's first cycle, so rounded timestamps do not add up.
        end_ms = self._segment_start_ms + round((self._segment_cycles - (n - stop)) * CYCLE_DURATION_MS)
        return BoxMeasurement(box_id=self.box_id, timestamp_ms=end_ms, metrics=metrics)


def check_rate(cycles: int) -> int:
    """`cycles` if it is a valid measurement rate [cycles per measurement], else ValueError."""
    if isinstance(cycles, bool) or not isinstance(cycles, int | np.integer):
        raise ValueError(f"the measurement rate must be a whole number of cycles, not {cycles!r}")
    if not MIN_RATE_CYCLES <= cycles <= MAX_RATE_CYCLES:
        raise ValueError(
            f"the measurement rate must be {MIN_RATE_CYCLES} to {MAX_RATE_CYCLES} cycles, not {cycles}"
        )
    return int(cycles)


def _windows(first: int, stop: int, window: int) -> list[_Span]:
    """Back-to-back windows of `window` cycles ending at `stop` and covering [first, stop).

    A window cut by the start of the history is kept if it still has half its cycles.
    """
    count = -(-(stop - first) // window)
    spans = [(max(0, stop - (count - j) * window), stop - (count - j - 1) * window) for j in range(count)]
    return [(a, b) for a, b in spans if 2 * (b - a) >= window]


def _per_window(
    samples_v: npt.NDArray[np.float64],
    spans: list[_Span],
    context_cycles: int,
    metric: Callable[[npt.NDArray[np.float64], int], npt.NDArray[np.float64]],
) -> npt.NDArray[np.float64]:
    """One value per window, each computed over its span plus up to `context_cycles` either side.

    Windows of equal length (all but a shortened first one) go through `metric` as one 2-D batch.
    """
    n = len(samples_v)
    by_length: dict[int, list[npt.NDArray[np.float64]]] = {}
    for a, b in spans:
        piece = samples_v[max(0, a - context_cycles) : min(n, b + context_cycles)].ravel()
        by_length.setdefault(len(piece) // SAMPLES_PER_CYCLE, []).append(piece)
    results = [metric(np.stack(pieces), cycles).ravel() for cycles, pieces in by_length.items()]
    return np.concatenate(results) if results else np.empty(0)


def _frequency(windows_v: npt.NDArray[np.float64], cycles: int) -> npt.NDArray[np.float64]:
    return frequency_per_window(windows_v, cycles)


def _thd(windows_v: npt.NDArray[np.float64], cycles: int) -> npt.NDArray[np.float64]:
    return thd_per_window(windows_v, cycles)
