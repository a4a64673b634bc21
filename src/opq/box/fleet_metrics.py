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
  for fidelity, and small fleets.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from opq.box.commands import RateControl
from opq.box.disturbances import FloatArray, SupplyModel
from opq.box.fleet_encoding import METRICS, IntArray, MeasurementBatch, encode_batch, measurement_prefix
from opq.box.measuring import MeasurementCohort, check_rate
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.simulator import Simulator, Variations, fleet_cycle_metrics
from opq.domain import FREQUENCY_WINDOW_CYCLES, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE, THD_WINDOW_CYCLES
from opq.domain.measurement_windows import (
    Span,
    advance_spans,
    row_summaries,
    span_reach,
    window_values,
    windows,
)
from opq.protocol import BoxMeasurement

MAX_CYCLE_VALUES: Final = 250_000
"""Most box-cycles of metrics computed at once: 8 MB a metric, tens of MB with the intermediates."""


@dataclass(frozen=True)
class EncodedBatch:
    """Encoded measurements (`opq.opqbox3.Measurement` bytes) of some boxes, ending at one time."""

    boxes: Sequence[int]
    timestamp_ms: int
    payloads: list[bytes]


class Meter(Protocol):
    """What the shard's tick loop asks of a meter; see the module docstring."""

    def measure(self, first_cycle: int, count: int) -> list[EncodedBatch]: ...

    def rate_control(self, box: int) -> RateControl: ...


# --- the fast path ------------------------------------------------------------------------------


class BoxRates:
    """Each box's measurement rate [cycles per measurement]: set by the command thread, read by the meter."""

    def __init__(self, count: int, cycles: int) -> None:
        self._rates = np.full(count, check_rate(cycles), dtype=np.int64)
        self._lock = threading.Lock()
        self.version = 0
        """Bumped at every change."""

    def get(self, box: int) -> int:
        """The rate of one box."""
        with self._lock:
            return int(self._rates[box])

    def set(self, box: int, cycles: int) -> int:
        """Set one box's rate; returns the previous one (ValueError for an invalid rate)."""
        check_rate(cycles)
        with self._lock:
            old = int(self._rates[box])
            self._rates[box] = cycles
            self.version += 1
        return old

    def snapshot(self) -> tuple[int, IntArray]:
        """(version, a copy of all rates)."""
        with self._lock:
            return self.version, self._rates.copy()

    def control(self, box: int) -> RateControl:
        """One box's rate as `CommandHandler` changes it."""
        return _BoxRate(self, box)


class _BoxRate:
    def __init__(self, rates: BoxRates, box: int) -> None:
        self._rates, self._box = rates, box

    @property
    def cycles_per_measurement(self) -> int:
        return self._rates.get(self._box)

    def set_rate(self, cycles: int) -> int:
        return self._rates.set(self._box, cycles)


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


# --- the full signal ----------------------------------------------------------------------------


def retain_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    The full signal of a fleet is measured in arrays of a few MB, allocated and freed tens of times
    a tick. By default glibc returns such blocks to the kernel (mmap above a threshold, trimming
    of the heap's top), and every fresh page then costs a fault: measured, that made the batched
    metrics twice as slow, `filters.interpolate` six times. With both thresholds raised the
    process keeps its peak heap (tens of MB) and reuses it. True if set; no-op (False) off glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, libc's among them
    except (OSError, AttributeError):
        return False
    # M_MMAP_THRESHOLD (its largest, 32 MB on 64-bit) and M_TRIM_THRESHOLD, from <malloc.h>.
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


class SignalMeter:
    """The full signal: each box's ADC counts through the domain's metrics, as its `MeasurementBuilder` would.

    Boxes that measure in step (the same rate, the same cycles heard) form a `MeasurementCohort`,
    so every measurement of every box a tick completes comes from one set of numpy calls; a rate
    change or an outage that only some boxes see splits a cohort, and cohorts that come back into
    step are joined.
    """

    def __init__(
        self, simulators: Sequence[Simulator], box_ids: Sequence[str], cycles_per_measurement: int
    ) -> None:
        retain_freed_memory()
        self._simulators = list(simulators)
        self._box_ids = list(box_ids)
        self._prefixes = [measurement_prefix(box_id) for box_id in box_ids]
        self.rates = BoxRates(len(self._simulators), cycles_per_measurement)
        self._seen_version = self.rates.version
        constants = [simulator.calibration_constant for simulator in self._simulators]
        everyone = np.arange(len(self._simulators))
        self._cohorts = (
            [(everyone, MeasurementCohort(constants, cycles_per_measurement))] if constants else []
        )

    def rate_control(self, box: int) -> RateControl:
        """What `CommandHandler` changes for a box."""
        return self.rates.control(box)

    def cohorts(self) -> list[list[int]]:
        """The boxes measured together, group by group (boxes in step share one computation)."""
        return [boxes.tolist() for boxes, _ in self._cohorts]

    def measure(self, first_cycle: int, count: int) -> list[EncodedBatch]:
        """The encoded measurements that cycles [first_cycle, first_cycle + count) complete."""
        return [
            EncodedBatch(
                batch.boxes.tolist(), batch.timestamp_ms, encode_batch(batch, self._prefixes, self._box_ids)
            )
            for batch in self.measure_batches(first_cycle, count)
        ]

    def measure_boxes(self, first_cycle: int, count: int) -> list[tuple[int, BoxMeasurement]]:
        """(box, measurement) for each measurement the cycles complete."""
        return [
            (box, measurement)
            for batch in self.measure_batches(first_cycle, count)
            for box, measurement in zip(batch.boxes.tolist(), batch.measurements(self._box_ids), strict=True)
        ]

    def measure_batches(self, first_cycle: int, count: int) -> list[MeasurementBatch]:
        """The measurements that cycles [first_cycle, first_cycle + count) complete, cohort by cohort."""
        if self.rates.version != self._seen_version:
            self._regroup()
        start, n_samples = first_cycle * SAMPLES_PER_CYCLE, count * SAMPLES_PER_CYCLE
        counts = np.empty((len(self._simulators), count, SAMPLES_PER_CYCLE), dtype=np.int16)
        for box, simulator in enumerate(self._simulators):
            counts[box] = simulator.counts(start, n_samples).reshape(count, SAMPLES_PER_CYCLE)
        heard = self._heard(first_cycle, count)
        batches, cohorts = [], []
        for boxes, cohort in self._cohorts:
            # Boxes that heard different cycles (an outage some of them see) part here.
            parts = [(boxes, cohort)]
            if not (heard[boxes] == heard[boxes[0]]).all():
                _, which = np.unique(heard[boxes], axis=0, return_inverse=True)
                which = which.ravel()
                parts = [
                    (boxes[rows], cohort.subset(rows))
                    for k in np.unique(which)
                    if len(rows := np.flatnonzero(which == k))
                ]
            for part_boxes, part in parts:
                cycles = np.flatnonzero(heard[part_boxes[0], :count])
                simulator = self._simulators[part_boxes[0]]
                timestamps_ms = [simulator.timestamp_ms_of_cycle(first_cycle + int(row)) for row in cycles]
                rows_of_boxes = counts[part_boxes] if len(cycles) == count else counts[part_boxes][:, cycles]
                for done in part.add_cycles(timestamps_ms, rows_of_boxes):
                    batches.append(MeasurementBatch(part_boxes, done.timestamp_ms, done.stats))
                cohorts.append((part_boxes, part))
        self._cohorts = _joined(cohorts)
        return batches

    def _heard(self, first_cycle: int, count: int) -> IntArray:
        """(boxes, cycles + 1): whether each box is on in each cycle, then its start time [ms]."""
        per_model: dict[tuple[int, int], npt.NDArray[np.int64]] = {}
        heard = np.empty((len(self._simulators), count + 1), dtype=np.int64)
        for box, simulator in enumerate(self._simulators):
            key = (id(simulator.model), simulator.start_ms)  # boxes started apart stamp cycles apart
            if key not in per_model:
                per_model[key] = np.append(~simulator.silent_cycles(first_cycle, count), simulator.start_ms)
            heard[box] = per_model[key]
        return heard

    def _regroup(self) -> None:
        """Move the boxes whose rate was changed into cohorts of their new rate."""
        self._seen_version, snapshot = self.rates.snapshot()
        regrouped = []
        for boxes, cohort in self._cohorts:
            rates = snapshot[boxes]
            for rate in np.unique(rates):
                rows = np.flatnonzero(rates == rate)
                same = len(rows) == len(boxes) and rate == cohort.cycles_per_measurement
                regrouped.append((boxes, cohort) if same else (boxes[rows], cohort.subset(rows, int(rate))))
        self._cohorts = _joined(regrouped)


def _joined(cohorts: list[tuple[IntArray, MeasurementCohort]]) -> list[tuple[IntArray, MeasurementCohort]]:
    """Cohorts in the same state joined into one (boxes that came back into step)."""
    by_state: dict[tuple[int, ...], list[tuple[IntArray, MeasurementCohort]]] = {}
    for boxes, cohort in cohorts:
        by_state.setdefault(cohort.state(), []).append((boxes, cohort))
    if len(by_state) == len(cohorts):
        return cohorts
    joined = []
    for group in by_state.values():
        boxes, cohort = group[0]
        for more_boxes, more in group[1:]:
            boxes, cohort = np.concatenate([boxes, more_boxes]), cohort.join(more)
        joined.append((boxes, cohort))
    return joined
