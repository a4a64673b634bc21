"""A fleet shard's measurements: the fast path from the supply model, or the full signal.

Both meters take the shard's cycles a block at a time (`measure(first_cycle, count)`) and return
encoded measurements ready to publish, as each box's `MeasurementBuilder` would have built them:
N cycles per measurement, timestamped at the window end, `f` over 10-cycle and `thd` over
12-cycle windows laid back to back ending at the measurement's end, a measurement cut short by an
outage and a fresh start after it.

* `FastMeter` computes no samples: per-cycle metrics of all the boxes that measure in step
  (a cohort: same supply model, rate and phase) come from `fleet_cycle_metrics` in one call and
  are summarized with array operations, and `fleet_encoding.encode_batch` writes the protobuf
  bytes of a whole batch at once.
* `SignalMeter` synthesizes each box's ADC counts and measures them as each box's
  `MeasurementBuilder` would (opq.domain), the boxes in step together (`MeasurementCohort`):
  for fidelity, and small fleets. It lives in `opq.box.signal_meter`, the interface both share
  (`Meter`, `EncodedBatch`, `BoxRates`) in `opq.box.meters`; both are importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.box.commands import RateControl
from opq.box.disturbances import FloatArray, SupplyModel
from opq.box.fleet_encoding import METRICS, IntArray, MeasurementBatch, encode_batch, measurement_prefix
from opq.box.meters import BoxRates, EncodedBatch, Meter
from opq.box.model_metrics import fleet_cycle_metrics
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.signal_meter import SignalMeter, retain_freed_memory
from opq.box.simulator import Variations
from opq.domain import FREQUENCY_WINDOW_CYCLES, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE, THD_WINDOW_CYCLES
from opq.domain.measurement_windows import (
    Span,
    advance_spans,
    row_summaries,
    span_reach,
    window_values,
    windows,
)

__all__ = [
    "MAX_CYCLE_VALUES",
    "BoxRates",
    "EncodedBatch",
    "FastMeter",
    "Meter",
    "SignalMeter",
    "advance_spans",
    "retain_freed_memory",
    "windows",
]

MAX_CYCLE_VALUES: Final = 250_000
"""Most box-cycles of metrics computed at once: 8 MB a metric, tens of MB with the intermediates."""


# --- the fast path ------------------------------------------------------------------------------


@dataclass
class _Cohort:
    """Boxes that measure in step: same supply model, rate, measurement in progress and segment."""

    model: int
    rate: int
    start: int | None
    origin: int
    boxes: IntArray
    variations: Variations

    @property
    def key(self) -> tuple[int, int, int | None, int]:
        return self.model, self.rate, self.start, self.origin


class FastMeter:
    """The fast path: measurements of a shard's boxes from the supply model, no samples (see module doc)."""

    def __init__(
        self,
        models: Sequence[SupplyModel],
        box_models: Sequence[int],
        variations: Variations,
        box_ids: Sequence[str],
        rates: BoxRates,
        *,
        start_ms: int,
        calibration_constant: float,
        max_cycle_values: int = MAX_CYCLE_VALUES,
    ) -> None:
        self._models = list(models)
        self._max_cycle_values = max_cycle_values
        self._variations = variations
        self._box_ids = list(box_ids)
        self._prefixes = [measurement_prefix(box_id) for box_id in box_ids]
        self.rates = rates
        self._start_ms = start_ms
        self._calibration = calibration_constant
        self._seen_version, snapshot = rates.snapshot()
        model_of = np.asarray(box_models, dtype=np.int64)
        self._cohorts = [
            self._cohort(
                int(model), int(rate), None, 0, np.flatnonzero((model_of == model) & (snapshot == rate))
            )
            for model in np.unique(model_of)
            for rate in np.unique(snapshot[model_of == model])
        ]

    def rate_control(self, box: int) -> RateControl:
        """What `CommandHandler` changes for a box."""
        return self.rates.control(box)

    def measure(self, first_cycle: int, count: int) -> list[EncodedBatch]:
        """The encoded measurements that cycles [first_cycle, first_cycle + count) complete."""
        return [
            EncodedBatch(
                batch.boxes.tolist(), batch.timestamp_ms, encode_batch(batch, self._prefixes, self._box_ids)
            )
            for batch in self.measure_batches(first_cycle, count)
        ]

    def measure_batches(self, first_cycle: int, count: int) -> list[MeasurementBatch]:
        """The measurements that cycles [first_cycle, first_cycle + count) complete, as values."""
        if self.rates.version != self._seen_version:
            self._regroup()
        silent: dict[int, npt.NDArray[np.bool_]] = {}
        batches: list[MeasurementBatch] = []
        for cohort in self._cohorts:
            if cohort.model not in silent:
                silent[cohort.model] = self._models[cohort.model].silent_cycles(first_cycle, count)
            spans, cohort.start, cohort.origin = advance_spans(
                cohort.rate, cohort.start, cohort.origin, first_cycle, count, silent[cohort.model]
            )
            if spans:
                batches += self._summaries(cohort, spans)
        self._merge()
        return batches

    def _summaries(self, cohort: _Cohort, spans: list[Span]) -> list[MeasurementBatch]:
        lo = min(span_reach(span) for span in spans)
        hi = spans[-1][1]
        # A few boxes at a time when measurements are long (a minute at 3,600 cycles), so that the
        # per-cycle arrays stay a few MB.
        step = max(1, self._max_cycle_values // (hi - lo))
        parts = [
            self._stats(cohort, slice(at, at + step), spans, lo, hi)
            for at in range(0, len(cohort.boxes), step)
        ]
        return [
            MeasurementBatch(cohort.boxes, self._timestamp_ms(origin, stop), np.concatenate(stats))
            for (_, stop, origin), *stats in zip(spans, *parts, strict=True)
        ]

    def _stats(self, cohort: _Cohort, rows: slice, spans: list[Span], lo: int, hi: int) -> list[FloatArray]:
        """(boxes, 4 metrics, min/max/average) of each span for some of a cohort's boxes."""
        v = cohort.variations
        variations = Variations(v.voltage_offset_v[rows], v.phase_offset_rad[rows], v.noise_scale[rows])
        metrics = fleet_cycle_metrics(
            self._models[cohort.model], variations, lo, hi - lo, calibration_constant=self._calibration
        )
        every = []
        for first, stop, origin in spans:
            stats = np.empty((len(metrics.rms_v), len(METRICS), 3))
            stats[:, 0] = row_summaries(metrics.rms_v[:, first - lo : stop - lo])
            f_windows = windows(first, stop, origin, FREQUENCY_WINDOW_CYCLES)
            stats[:, 1] = row_summaries(window_values(metrics.frequency_hz, lo, f_windows, quadratic=False))
            thd_windows = windows(first, stop, origin, THD_WINDOW_CYCLES)
            stats[:, 2] = row_summaries(window_values(metrics.thd_ratio, lo, thd_windows, quadratic=True))
            stats[:, 3] = row_summaries(metrics.transient_v[:, first - lo : stop - lo])
            every.append(stats)
        return every

    def _timestamp_ms(self, origin: int, stop: int) -> int:
        """The end of a measurement, counted from its segment's first cycle as `MeasurementBuilder` does."""
        origin_ms = self._start_ms + origin * SAMPLES_PER_CYCLE * 1000 // SAMPLE_RATE_HZ
        return origin_ms + round((stop - origin) * CYCLE_DURATION_MS)

    def _cohort(self, model: int, rate: int, start: int | None, origin: int, boxes: IntArray) -> _Cohort:
        v = self._variations
        subset = Variations(v.voltage_offset_v[boxes], v.phase_offset_rad[boxes], v.noise_scale[boxes])
        return _Cohort(model, rate, start, origin, boxes, subset)

    def _regroup(self) -> None:
        """Move the boxes whose rate was changed into cohorts of their new rate."""
        self._seen_version, snapshot = self.rates.snapshot()
        regrouped = []
        for cohort in self._cohorts:
            rates = snapshot[cohort.boxes]
            if (rates == cohort.rate).all():
                regrouped.append(cohort)
                continue
            for rate in np.unique(rates):
                boxes = cohort.boxes[rates == rate]
                regrouped.append(self._cohort(cohort.model, int(rate), cohort.start, cohort.origin, boxes))
        self._cohorts = regrouped
        self._merge()

    def _merge(self) -> None:
        """Join cohorts that have come into step (after an outage, or boxes set to the same rate together)."""
        by_key: dict[tuple[int, int, int | None, int], list[_Cohort]] = {}
        for cohort in self._cohorts:
            by_key.setdefault(cohort.key, []).append(cohort)
        if len(by_key) == len(self._cohorts):
            return
        self._cohorts = [
            group[0]
            if len(group) == 1
            else self._cohort(
                group[0].model,
                group[0].rate,
                group[0].start,
                group[0].origin,
                np.sort(np.concatenate([c.boxes for c in group])),
            )
            for group in by_key.values()
        ]
