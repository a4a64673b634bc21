"""Boxes that measure in step, measured together: their history in volts, one pass a tick for all of them.

A simulated fleet's full signal (`opq.box.signal_meter.SignalMeter`) hands every box's cycles of
a tick over at once; the cohort keeps them as a (boxes, cycles, 200) history in volts and computes
every measurement the tick completes, for every box, with `opq.domain.fleet_span_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from opq.box.measuring import HistorySpan, MeasurementStream, checked_calibration
from opq.domain import FREQUENCY_WINDOW_CYCLES, SAMPLES_PER_CYCLE, THD_WINDOW_CYCLES
from opq.domain.fleet_span_metrics import fleet_span_metrics, metric_summaries

_COHORT_CAPACITY_CYCLES: Final = 32  # in volts, 8 bytes a sample; grows to what rate and blocks need


@dataclass(frozen=True)
class CohortMeasurements:
    """The measurements of a cohort's boxes ending at one time."""

    timestamp_ms: int
    stats: npt.NDArray[np.float64]
    """(boxes, 4 metrics: rms, f, thd, trans, min/max/average); a NaN average: the metric is absent."""


class MeasurementCohort(MeasurementStream[CohortMeasurements]):
    """Boxes that measure in step (same rate, same cycles heard): their `MeasurementBuilder`s at once.

    Each box's measurements equal what its own `MeasurementBuilder` would give for the same cycles
    (to rounding), but every measurement of every box that a block completes comes from one
    compiled pass (`opq.domain.fleet_span_metrics`): how a simulated fleet's full signal is measured.
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
        return joined

    def _store(self, into: npt.NDArray[Any], counts: npt.ArrayLike) -> None:
        np.multiply(counts, self._volts_per_count, out=into)

    def _compute(self, spans: list[HistorySpan]) -> list[CohortMeasurements]:
        """The measurements of consecutive spans of every box's history, from one `fleet_span_metrics`."""
        if not spans:
            return []
        plan = self._plan(spans)
        metrics = fleet_span_metrics(
            self._history.reshape(self.boxes, -1),  # a view: the history is C-contiguous
            plan.frequency_windows,
            plan.thd_windows,
            period_windows=plan.period_windows,
            measured_cycles=(plan.starts[0][0], plan.cycle_stop),
            span_cycles=(plan.low, plan.high),
        )
        values = [metrics.rms_v, metrics.frequency_hz, metrics.thd_ratio, metrics.transient_v]
        stats = metric_summaries(values, plan.starts, plan.stops())
        return [CohortMeasurements(span.end_ms, stats[k]) for k, span in enumerate(spans)]
