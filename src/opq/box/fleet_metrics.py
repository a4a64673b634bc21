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
* `SignalMeter` synthesizes each box's ADC counts and runs them through its `MeasurementBuilder`
  (opq.domain), exactly what a real box does: for fidelity, and small fleets.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from opq.box.commands import RateControl
from opq.box.disturbances import FloatArray, SupplyModel
from opq.box.fleet_encoding import METRICS, IntArray, MeasurementBatch, encode_batch, measurement_prefix
from opq.box.measuring import MeasurementBuilder, check_rate
from opq.box.ringbuffer import CYCLE_DURATION_MS
from opq.box.simulator import Simulator, Variations, fleet_cycle_metrics
from opq.domain import FREQUENCY_WINDOW_CYCLES, SAMPLE_RATE_HZ, SAMPLES_PER_CYCLE, THD_WINDOW_CYCLES
from opq.protocol import BoxMeasurement, encode_measurement

MAX_CYCLE_VALUES: Final = 250_000
"""Most box-cycles of metrics computed at once: 8 MB a metric, tens of MB with the intermediates."""
Span = tuple[int, int, int]
"""A measurement as (first cycle, stop cycle, first cycle of its segment), cycles counted from sample 0."""


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


# --- spans and windows --------------------------------------------------------------------------


def advance_spans(
    rate: int, start: int | None, origin: int, first_cycle: int, count: int, silent: npt.NDArray[np.bool_]
) -> tuple[list[Span], int | None, int]:
    """The measurements that cycles [first_cycle, first_cycle + count) complete, and the new state.

    `start` is the first cycle of the measurement in progress (None while the box is off) and
    `origin` the first cycle since the box was last off. As `MeasurementBuilder` does, a
    measurement ends once it has `rate` cycles (a lowered rate ends the one in progress at the next
    cycle), an outage ends it early, and the first cycle after an outage starts afresh. The
    measurement that the block's last cycle completes ends with the block, not a cycle later: the
    model needs no cycle after it.
    """
    spans: list[Span] = []
    for row in range(count):
        cycle = first_cycle + row
        if silent[row]:
            if start is not None and cycle > start:
                spans.append((start, cycle, origin))
            start = None
        elif start is None:
            start = origin = cycle
        elif cycle - start >= rate:
            spans.append((start, cycle, origin))
            start = cycle
    stop = first_cycle + count
    if start is not None and stop - start >= rate:
        spans.append((start, stop, origin))
        start = stop
    return spans, start, origin


def windows(first: int, stop: int, origin: int, window: int) -> list[tuple[int, int]]:
    """Back-to-back windows of `window` cycles ending at `stop` and covering [first, stop).

    One cut by `origin` (the box's start after an outage) is kept if it still has half its
    cycles, as `MeasurementBuilder` does.
    """
    count = -(-(stop - first) // window)
    spans = [
        (max(origin, stop - (count - j) * window), stop - (count - j - 1) * window) for j in range(count)
    ]
    return [(a, b) for a, b in spans if 2 * (b - a) >= window]


def _reach(span: Span) -> int:
    """The first cycle whose metrics a measurement needs (its earliest window may reach back)."""
    first, stop, origin = span
    reach = [
        w[0][0]
        for size in (FREQUENCY_WINDOW_CYCLES, THD_WINDOW_CYCLES)
        if (w := windows(first, stop, origin, size))
    ]
    return min([first, *reach])


def _nanmean(values: FloatArray, axis: int) -> FloatArray:
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / valid.sum(axis=axis), dtype=np.float64)


def _window_values(
    per_cycle: FloatArray, lo: int, spans: list[tuple[int, int]], *, quadratic: bool
) -> FloatArray:
    """One value per window from per-cycle values (boxes, cycles from `lo`): their mean, or RMS mean."""
    values = per_cycle * per_cycle if quadratic else per_cycle
    parts = []
    full = list(spans)
    if full and full[0][1] - full[0][0] != full[-1][1] - full[-1][0]:
        a, b = full.pop(0)
        parts.append(_nanmean(values[:, a - lo : b - lo], axis=1)[:, np.newaxis])
    if full:
        size = full[0][1] - full[0][0]
        block = values[:, full[0][0] - lo : full[-1][1] - lo]
        parts.append(_nanmean(block.reshape(len(values), len(full), size), axis=2))
    if not parts:
        return np.full((len(values), 0), np.nan)
    joined = np.concatenate(parts, axis=1)
    return np.sqrt(joined) if quadratic else joined


def _summary(values: FloatArray) -> FloatArray:
    """(boxes, 3): min, max and average of each row, ignoring NaN; NaN where a row has no number."""
    if values.shape[1] == 0:
        return np.full((len(values), 3), np.nan)
    return np.stack(
        [np.fmin.reduce(values, axis=1), np.fmax.reduce(values, axis=1), _nanmean(values, 1)], axis=1
    )


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
        lo = min(_reach(span) for span in spans)
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
            stats[:, 0] = _summary(metrics.rms_v[:, first - lo : stop - lo])
            f_windows = windows(first, stop, origin, FREQUENCY_WINDOW_CYCLES)
            stats[:, 1] = _summary(_window_values(metrics.frequency_hz, lo, f_windows, quadratic=False))
            thd_windows = windows(first, stop, origin, THD_WINDOW_CYCLES)
            stats[:, 2] = _summary(_window_values(metrics.thd_ratio, lo, thd_windows, quadratic=True))
            stats[:, 3] = _summary(metrics.transient_v[:, first - lo : stop - lo])
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


class SignalMeter:
    """The full signal: each box's ADC counts through its own `MeasurementBuilder` (opq.domain)."""

    def __init__(
        self, simulators: Sequence[Simulator], box_ids: Sequence[str], cycles_per_measurement: int
    ) -> None:
        self._simulators = list(simulators)
        self.builders = [
            MeasurementBuilder(box_id, simulator.calibration_constant, cycles_per_measurement)
            for box_id, simulator in zip(box_ids, simulators, strict=True)
        ]

    def rate_control(self, box: int) -> RateControl:
        """What `CommandHandler` changes for a box: its builder."""
        return self.builders[box]

    def measure(self, first_cycle: int, count: int) -> list[EncodedBatch]:
        """The encoded measurements that cycles [first_cycle, first_cycle + count) complete."""
        return [
            EncodedBatch([box], measurement.timestamp_ms, [encode_measurement(measurement)])
            for box, measurement in self.measure_boxes(first_cycle, count)
        ]

    def measure_boxes(self, first_cycle: int, count: int) -> list[tuple[int, BoxMeasurement]]:
        """(box, measurement) for each measurement the cycles complete, box by box."""
        done = []
        for box, (simulator, builder) in enumerate(zip(self._simulators, self.builders, strict=True)):
            counts = simulator.counts(first_cycle * SAMPLES_PER_CYCLE, count * SAMPLES_PER_CYCLE)
            heard = np.flatnonzero(~simulator.silent_cycles(first_cycle, count)).tolist()
            timestamps_ms = [simulator.timestamp_ms_of_cycle(first_cycle + row) for row in heard]
            rows = counts.reshape(count, SAMPLES_PER_CYCLE)[heard]
            # One pass over the block per box: the measurements `add` would give cycle by cycle.
            done += [(box, measurement) for measurement in builder.add_cycles(timestamps_ms, rows)]
        return done
