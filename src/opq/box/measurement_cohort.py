"""Boxes that measure in step, measured together: their history in volts and its filter outputs, kept.

A simulated fleet's full signal (`opq.box.signal_meter.SignalMeter`) hands every box's cycles of
a tick over at once. A tick's measurements need more cycles than the tick brings (the 12-cycle
THD window and a cycle of filter context on each side: 14 cycles for a 10-cycle tick), so the
cohort low-passes and decimates each cycle once, as it arrives, and keeps the outputs next to
the samples, shifted and grown with them; a span then reads its filter outputs instead of
filtering the cycles it shares with the previous tick again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from opq.box.measuring import HistorySpan, MeasurementStream, checked_calibration
from opq.domain import FREQUENCY_WINDOW_CYCLES, SAMPLES_PER_CYCLE, THD_WINDOW_CYCLES
from opq.domain.filters import DECIMATION, EDGE_SAMPLES, decimate
from opq.domain.fleet_span_metrics import FilteredRows, fleet_span_metrics, metric_summaries
from opq.domain.frequency import SMOOTHING_TAPS, smooth_decimated

_COHORT_CAPACITY_CYCLES: Final = 32  # in volts, 8 bytes a sample; grows to what rate and blocks need
_DECIMATED_PER_CYCLE: Final = SAMPLES_PER_CYCLE // DECIMATION
"""Decimated samples a cycle adds (20)."""
_DECIMATION_LOSS: Final = EDGE_SAMPLES // DECIMATION
"""Decimated samples that N cycles have fewer than 20·N (8): the low-pass needs 80 samples ahead."""
_SMOOTHING_LOSS: Final = SMOOTHING_TAPS - 1
"""Smoothed samples that a decimated stretch has fewer than itself (20): 10 on each side."""


def _filtered_lengths(cycles: int) -> tuple[int, int]:
    """(decimated, smoothed) samples that `cycles` cycles of history give."""
    decimated = max(cycles * _DECIMATED_PER_CYCLE - _DECIMATION_LOSS, 0)
    return decimated, max(decimated - _SMOOTHING_LOSS, 0)


@dataclass(frozen=True)
class CohortMeasurements:
    """The measurements of a cohort's boxes ending at one time."""

    timestamp_ms: int
    stats: npt.NDArray[np.float64]
    """(boxes, 4 metrics: rms, f, thd, trans, min/max/average); a NaN average: the metric is absent."""


class MeasurementCohort(MeasurementStream[CohortMeasurements]):
    """Boxes that measure in step (same rate, same cycles heard): their `MeasurementBuilder`s at once.

    Each box's measurements equal what its own `MeasurementBuilder` would give for the same cycles
    (to rounding), but every measurement of every box that a block completes comes from one set of
    numpy calls (`opq.domain.fleet_span_metrics`): how a simulated fleet's full signal is measured.
    Decimated sample j of the history (`filters.decimate` of it since the last gap) and smoothed
    sample i (`frequency.smooth_decimated`, centred on decimated sample i + 10) are computed once,
    when the cycles they need have arrived.
    """

    def __init__(
        self,
        calibration_constants: Sequence[float],
        cycles_per_measurement: int = 10,
        *,
        frequency_window_cycles: int = FREQUENCY_WINDOW_CYCLES,
        thd_window_cycles: int = THD_WINDOW_CYCLES,
    ) -> None:
        constants = [checked_calibration(c) for c in calibration_constants]
        # The history is kept in volts: each cycle is converted once, and a span is a view of it.
        super().__init__(
            (len(constants),),
            cycles_per_measurement,
            frequency_window_cycles,
            thd_window_cycles,
            history_dtype=np.float64,
            capacity_cycles=_COHORT_CAPACITY_CYCLES,
        )
        self._volts_per_count = 1.0 / np.array(constants, dtype=np.float64)[:, np.newaxis, np.newaxis]
        capacity = _COHORT_CAPACITY_CYCLES * _DECIMATED_PER_CYCLE
        self._decimated = np.empty((len(constants), capacity))
        self._smoothed = np.empty((len(constants), capacity))

    @property
    def boxes(self) -> int:
        """Boxes in the cohort."""
        return len(self._volts_per_count)

    def add_cycles(self, timestamps_ms: Sequence[int], counts: npt.ArrayLike) -> list[CohortMeasurements]:
        """Take a block of cycles of every box (counts: boxes × cycles × 200) with their timestamps."""
        rows = np.asarray(counts).reshape(self.boxes, -1, SAMPLES_PER_CYCLE)
        return self._add_rows([int(t) for t in timestamps_ms], rows)

    def subset(
        self, rows: npt.NDArray[np.intp], cycles_per_measurement: int | None = None
    ) -> MeasurementCohort:
        """A cohort of some of these boxes (indices into this one) in the same state, at a rate if given."""
        part = MeasurementCohort(
            [1.0] * len(rows),
            self._rate if cycles_per_measurement is None else cycles_per_measurement,
            frequency_window_cycles=self._frequency_window,
            thd_window_cycles=self._thd_window,
        )
        part._volts_per_count = self._volts_per_count[rows]
        part._history = self._history[rows]
        part._decimated, part._smoothed = self._decimated[rows], self._smoothed[rows]
        part._n, part._last_ms, part._pending = self._n, self._last_ms, self._pending
        part._segment_start_ms, part._segment_cycles = self._segment_start_ms, self._segment_cycles
        return part

    def state(self) -> tuple[int, ...]:
        """Cohorts in the same state measure in step from here on and can be joined."""
        return (
            self._rate,
            self._n,
            self._last_ms,
            self._pending,
            self._segment_start_ms,
            self._segment_cycles,
        )

    def join(self, other: MeasurementCohort) -> MeasurementCohort:
        """One cohort of this one's boxes followed by `other`'s; both must be in the same `state`."""
        if other.state() != self.state():
            raise ValueError("only cohorts in the same state can be joined")
        joined = self.subset(np.arange(self.boxes))
        joined._volts_per_count = np.concatenate([self._volts_per_count, other._volts_per_count])
        joined._history = np.concatenate([self._history[:, : self._n], other._history[:, : self._n]])
        # As long as the history: `_reserve` grows all three together.
        length = self._n * _DECIMATED_PER_CYCLE
        joined._decimated = np.concatenate([self._decimated[:, :length], other._decimated[:, :length]])
        joined._smoothed = np.concatenate([self._smoothed[:, :length], other._smoothed[:, :length]])
        return joined

    def _store(self, into: npt.NDArray[Any], counts: npt.ArrayLike) -> None:
        np.multiply(counts, self._volts_per_count, out=into)

    def _append(self, first_ms: int, counts: npt.ArrayLike, cycles: int) -> None:
        """Store the cycles, then filter what they complete: the outputs their samples newly reach."""
        super()._append(first_ms, counts, cycles)
        old_decimated, old_smoothed = _filtered_lengths(self._n - cycles)
        new_decimated, new_smoothed = _filtered_lengths(self._n)
        if new_decimated > old_decimated:
            samples = self._history.reshape(self.boxes, -1)  # a view: the history is contiguous
            # Output j needs samples [10·j, 10·j + 90): the new outputs need 80 samples before the cycles.
            self._decimated[:, old_decimated:new_decimated] = decimate(
                samples[:, old_decimated * DECIMATION : self._n * SAMPLES_PER_CYCLE]
            )
        if new_smoothed > old_smoothed:
            # Smoothed output i needs decimated [i, i + 20].
            self._smoothed[:, old_smoothed:new_smoothed] = smooth_decimated(
                self._decimated[:, old_smoothed:new_decimated]
            )

    def _reserve(self, cycles: int) -> None:
        """Room for `cycles` more; the filter outputs move (and grow) with the cycles they come from."""
        before = self._n
        super()._reserve(cycles)
        shift = (before - self._n) * _DECIMATED_PER_CYCLE
        decimated, smoothed = _filtered_lengths(self._n)
        capacity = self._history.shape[-2] * _DECIMATED_PER_CYCLE
        if self._decimated.shape[-1] != capacity:
            grown_decimated, grown_smoothed = np.empty((2, self.boxes, capacity))
            grown_decimated[:, :decimated] = self._decimated[:, shift : shift + decimated]
            grown_smoothed[:, :smoothed] = self._smoothed[:, shift : shift + smoothed]
            self._decimated, self._smoothed = grown_decimated, grown_smoothed
        else:  # numpy copies overlapping ranges as if through a buffer
            self._decimated[:, :decimated] = self._decimated[:, shift : shift + decimated]
            self._smoothed[:, :smoothed] = self._smoothed[:, shift : shift + smoothed]

    def _compute(self, spans: list[HistorySpan]) -> list[CohortMeasurements]:
        """The measurements of consecutive spans of every box's history, from one `fleet_span_metrics`."""
        if not spans:
            return []
        plan = self._plan(spans)
        samples_v = self._history[:, plan.low : plan.high].reshape(self.boxes, -1)  # a view
        first = plan.low * _DECIMATED_PER_CYCLE
        decimated, smoothed = _filtered_lengths(plan.high - plan.low)
        filtered = FilteredRows(
            self._decimated[:, first : first + decimated], self._smoothed[:, first : first + smoothed]
        )
        metrics = fleet_span_metrics(
            samples_v,
            plan.frequency_windows,
            plan.thd_windows,
            period_windows=plan.period_windows,
            measured_cycles=(plan.starts[0][0], plan.cycle_stop),
            filtered=filtered,
        )
        values = [metrics.rms_v, metrics.frequency_hz, metrics.thd_ratio, metrics.transient_v]
        stats = metric_summaries(values, plan.starts, plan.stops())
        return [CohortMeasurements(span.end_ms, stats[k]) for k, span in enumerate(spans)]
