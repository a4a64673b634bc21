"""On-box measurements: every N cycles, min/max/average of rms, f, thd and trans (the cycles' history, gaps
and rate, shared with `opq.box.measurement_cohort`, and one box's `MeasurementBuilder`)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from opq.box.ringbuffer import CYCLE_DURATION_MS, TimedCounts
from opq.domain import FREQUENCY_WINDOW_CYCLES, SAMPLES_PER_CYCLE, THD_WINDOW_CYCLES
from opq.domain.measurement_windows import group_starts, period_windows, summaries_of_groups, windows
from opq.domain.span_metrics import span_metrics
from opq.protocol import BoxMeasurement, MetricStats

MIN_RATE_CYCLES: Final = 1
"""Fewest cycles per measurement: one measurement per cycle (60 a second)."""

MAX_RATE_CYCLES: Final = 3600
"""Most cycles per measurement (one a minute): the cloud rolls measurements up into 1-minute trends
and judges a box silent after a minute without one, so a slower box would look unplugged."""

GAP_TOLERANCE_MS: Final = 1.5 * CYCLE_DURATION_MS
"""Consecutive cycles further apart than this [ms] have a gap (lost cycles, a silent box) between them."""

_METRIC_NAMES: Final[tuple[str, ...]] = ("rms", "f", "thd", "trans")  # in the order OPQ sends them
_INITIAL_CAPACITY_CYCLES: Final = 256


@dataclass(frozen=True)
class HistorySpan:
    """A measurement to compute: history cycles [first, stop) and the timestamp of its end."""

    first: int
    stop: int
    end_ms: int


_Result = TypeVar("_Result")


class MeasurementStream(Generic[_Result]):
    """What a box does with its cycles, for one box or many in step: the history, gaps, rate, spans.

    The cycle history has a leading shape (none for one box, (boxes,) for a cohort); subclasses
    compute the measurements of a list of spans (`_compute`).
    """

    def __init__(
        self,
        boxes_shape: tuple[int, ...],
        cycles_per_measurement: int,
        frequency_window_cycles: int,
        thd_window_cycles: int,
        *,
        history_dtype: type[np.int16] | type[np.float64] = np.int16,
        capacity_cycles: int = _INITIAL_CAPACITY_CYCLES,
    ) -> None:
        self._frequency_window = frequency_window_cycles
        self._thd_window = thd_window_cycles
        self._rate_lock = threading.Lock()
        self._rate = check_rate(cycles_per_measurement)
        self._history: npt.NDArray[Any] = np.empty(
            (*boxes_shape, capacity_cycles, SAMPLES_PER_CYCLE), dtype=history_dtype
        )
        self._n = 0  # cycles of history in self._history[..., :n, :], oldest first
        self._last_ms = 0  # timestamp of the newest cycle
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

    def _add_rows(self, stamps: list[int], rows: npt.NDArray[np.int16]) -> list[_Result]:
        """Cycles (rows[..., cycle, sample]) with their timestamps: the measurements they complete."""
        if len(stamps) != rows.shape[-2]:
            raise ValueError(f"{len(stamps)} timestamps for {rows.shape[-2]} cycles of counts")
        done: list[_Result] = []
        start = 0
        while start < len(stamps):
            if self._n and not 0 < stamps[start] - self._last_ms <= GAP_TOLERANCE_MS:
                flushed = self.flush()
                done += [flushed] if flushed is not None else []
                self._n = 0
            stop = start + 1
            while stop < len(stamps) and 0 < stamps[stop] - stamps[stop - 1] <= GAP_TOLERANCE_MS:
                stop += 1
            done += self._add_run(stamps[start], stamps[stop - 1], rows[..., start:stop, :])
            start = stop
        return done

    def flush(self) -> _Result | None:
        """The measurement in progress, however short, without waiting for more cycles (end of stream)."""
        if self._pending == 0:
            return None
        span = HistorySpan(self._n - self._pending, self._n, self._end_ms(self._n))
        self._pending = 0
        return self._compute([span])[0]

    def _append(self, first_ms: int, counts: npt.ArrayLike, cycles: int) -> None:
        """Copy cycles to the end of the history (a source may reuse its buffer)."""
        if self._n == 0:
            self._segment_start_ms, self._segment_cycles = first_ms, 0
        if self._n + cycles > self._history.shape[-2]:
            self._reserve(cycles)
        self._store(self._history[..., self._n : self._n + cycles, :], counts)
        self._n += cycles
        self._segment_cycles += cycles

    def _store(self, into: npt.NDArray[Any], counts: npt.ArrayLike) -> None:
        """Write cycles of counts into the history as it keeps them (here: the counts themselves)."""
        into[...] = counts

    def _add_run(self, first_ms: int, last_ms: int, rows: npt.NDArray[np.int16]) -> list[_Result]:
        """Cycles without a gap: append them, then compute every measurement they complete at once."""
        n_rows = rows.shape[-2]
        self._append(first_ms, rows, n_rows)
        self._last_ms = last_ms
        start = self._n - n_rows  # after `_append`, which may have moved the history
        rate, pending = self._rate, self._pending
        # As in `add`: a measurement ends before the cycle that finds `rate` pending, which is
        # the first at max(rate − pending, 0), then every `rate` cycles.
        stops = range(start + max(rate - pending, 0), self._n, rate)
        spans, first = [], start - pending
        for stop in stops:
            spans.append(HistorySpan(first, stop, self._end_ms(stop)))
            first = stop
        self._pending = self._n - first if spans else pending + n_rows
        return self._compute(spans)

    def _end_ms(self, stop: int) -> int:
        """End of history cycle `stop - 1`, counted from the segment's first cycle (no rounding adds up)."""
        return self._segment_start_ms + round((self._segment_cycles - (self._n - stop)) * CYCLE_DURATION_MS)

    def _reserve(self, cycles: int) -> None:  # only called when `cycles` more do not fit
        """Room for `cycles` more: keep only the cycles the measurement in progress needs; grow if short."""
        keep = min(self._n, self._pending + max(self._frequency_window, self._thd_window) + 2)
        if 2 * (keep + cycles) > self._history.shape[-2]:
            # Room for a few more blocks than now: each move copies the cycles kept.
            grown = np.empty(
                (*self._history.shape[:-2], 3 * (keep + cycles), SAMPLES_PER_CYCLE), dtype=self._history.dtype
            )
            grown[..., :keep, :] = self._history[..., self._n - keep : self._n, :]
            self._history = grown
        else:
            self._history[..., :keep, :] = self._history[..., self._n - keep : self._n, :]
        self._n = keep

    def _compute(self, spans: list[HistorySpan]) -> list[_Result]:
        raise NotImplementedError

    def _plan(self, spans: list[HistorySpan]) -> SpanPlan:
        """The history cycles a list of consecutive spans needs, and their windows within them."""
        # The history starts with the first cycle since the last gap: windows reach back to 0 at most.
        frequency_windows = [windows(s.first, s.stop, 0, self._frequency_window) for s in spans]
        thd_windows = [windows(s.first, s.stop, 0, self._thd_window) for s in spans]
        earliest = min(w[0][0] for w in [*frequency_windows, *thd_windows, [(spans[0].first, 0)]] if w)
        low, high = max(0, earliest - 1), min(self._n, spans[-1].stop + 1)
        cycle_starts = [s.first - low for s in spans]
        return SpanPlan(
            low=low,
            high=high,
            frequency_windows=[(a - low, b - low) for windows in frequency_windows for a, b in windows],
            thd_windows=[(a - low, b - low) for windows in thd_windows for a, b in windows],
            period_windows=period_windows([s.first for s in spans], frequency_windows, low, high),
            starts=[cycle_starts, group_starts(frequency_windows), group_starts(thd_windows), cycle_starts],
            cycle_stop=spans[-1].stop - low,
        )


@dataclass(frozen=True)
class SpanPlan:
    """Where a computation's spans are: history cycles [low, high), and windows counted from low."""

    low: int
    high: int
    frequency_windows: list[tuple[int, int]]
    thd_windows: list[tuple[int, int]]
    period_windows: list[int]
    starts: list[list[int]]
    """Per metric (rms, f, thd, trans), the index of each span's first value."""
    cycle_stop: int

    def stops(self) -> list[int]:
        """Per metric, where the last span's values end."""
        return [self.cycle_stop, len(self.frequency_windows), len(self.thd_windows), self.cycle_stop]


class MeasurementBuilder(MeasurementStream[BoxMeasurement]):
    """Turns a stream of cycles (ADC counts) into `BoxMeasurement`s of N cycles each.

    Per measurement: `rms` and `trans` summarize one value per cycle, `f` one per 10-cycle window and
    `thd` one per 12-cycle window (ratio). The windows are laid back to back ending at the
    measurement's end, ceil(N / window) of them, so every cycle is covered and, when N is not a
    multiple of a window, the earliest window reaches back into the previous measurement (with N = 10,
    each `thd` covers the last 12 cycles). A cycle's `rms` is over one period of the frequency its
    window measured, centred on the cycle (`opq.domain.rms_per_cycle` with `fundamental_hz`), so it
    is exact off 60 Hz too. The frequency and transient filters get one cycle of context on each
    side, so a measurement is emitted when the cycle after it arrives.

    `timestamp_ms` is the end of the measured span (when its last sample was taken, counted in
    16.67 ms cycles from the first cycle after the last gap, so rounding does not accumulate): a
    sample time, where the original stamped its read-out time at the block's end.

    A metric without any value (no frequency or THD in an interruption, a window shortened below
    half its length at the start of the stream) is left out rather than sent as NaN, as the
    original left out metrics it had no value for. A gap in the timestamps ends the measurement in
    progress early and starts afresh: no window spans a gap.

    The cycles are kept in one preallocated array, and everything a measurement needs is computed
    by `opq.domain.span_metrics` in one pass; `add_cycles` takes a block of cycles and computes all
    the measurements it completes in one pass. `MeasurementCohort` does the same for many boxes.
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
        self.calibration_constant = checked_calibration(calibration_constant)
        super().__init__((), cycles_per_measurement, frequency_window_cycles, thd_window_cycles)
        self.box_id = box_id
        self._volts_per_count = 1.0 / self.calibration_constant

    def add(self, cycle: TimedCounts) -> BoxMeasurement | None:
        """Take the next cycle; returns the measurement it completes, if any."""
        timestamp_ms = int(cycle.timestamp_ms)
        done = None
        if self._n and not 0 < timestamp_ms - self._last_ms <= GAP_TOLERANCE_MS:
            done = self.flush()
            self._n = 0
        if 0 < self._n < self._history.shape[-2]:  # the usual cycle, without `_append`'s checks
            self._history[self._n] = cycle.counts
            self._n += 1
            self._segment_cycles += 1
        else:
            self._append(timestamp_ms, cycle.counts, 1)
        self._last_ms = timestamp_ms
        if self._pending >= self._rate and done is None:
            stop = self._n - 1  # the new cycle is the context after the measurement
            done = self._compute([HistorySpan(stop - self._pending, stop, self._end_ms(stop))])[0]
            self._pending = 0
        self._pending += 1
        return done

    def add_cycles(self, timestamps_ms: Sequence[int], counts: npt.ArrayLike) -> list[BoxMeasurement]:
        """Take a block of cycles (counts: one row of 200 per cycle); the measurements they complete.

        The same measurements as `add` cycle by cycle, computed together: one pass over each
        stretch of the block without a gap. A rate set while a block is taken applies from the next.
        """
        rows = np.asarray(counts).reshape(-1, SAMPLES_PER_CYCLE)
        return self._add_rows([int(t) for t in timestamps_ms], rows)

    def _compute(self, spans: list[HistorySpan]) -> list[BoxMeasurement]:
        """The measurements of consecutive spans of the history, from one pass of `span_metrics`."""
        if not spans:
            return []
        plan = self._plan(spans)
        samples_v = np.multiply(
            self._history[plan.low : plan.high].ravel(), self._volts_per_count, dtype=np.float64
        )
        metrics = span_metrics(
            samples_v, plan.frequency_windows, plan.thd_windows, period_windows=plan.period_windows
        )
        stats = summaries_of_groups(
            [metrics.rms_v, metrics.frequency_hz, metrics.thd_ratio, metrics.transient_v],
            plan.starts,
            plan.stops(),
        )
        measurements = []
        for span, per_metric in zip(spans, stats, strict=True):
            chosen: dict[str, MetricStats] = {
                name: MetricStats(min=low_value, max=high_value, average=average)
                for name, (low_value, high_value, average) in zip(_METRIC_NAMES, per_metric, strict=True)
                if not math.isnan(average)
            }
            measurements.append(BoxMeasurement(box_id=self.box_id, timestamp_ms=span.end_ms, metrics=chosen))
        return measurements


def checked_calibration(calibration_constant: float) -> float:
    """`calibration_constant` [counts/V] as a float if it is a positive number, else ValueError."""
    if not (math.isfinite(calibration_constant) and calibration_constant > 0):
        raise ValueError(f"calibration constant {calibration_constant!r} counts/V is not a positive number")
    return float(calibration_constant)


def check_rate(cycles: int) -> int:
    """`cycles` if it is a valid measurement rate [cycles per measurement], else ValueError."""
    if isinstance(cycles, bool) or not isinstance(cycles, int | np.integer):
        raise ValueError(f"the measurement rate must be a whole number of cycles, not {cycles!r}")
    if not MIN_RATE_CYCLES <= cycles <= MAX_RATE_CYCLES:
        raise ValueError(
            f"the measurement rate must be {MIN_RATE_CYCLES} to {MAX_RATE_CYCLES} cycles, not {cycles}"
        )
    return int(cycles)
