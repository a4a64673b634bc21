"""A fleet shard's full signal: each box's ADC counts measured as its `MeasurementBuilder` would.

`SignalMeter` synthesizes each box's counts and measures the boxes that measure in step together
(`MeasurementCohort`), for fidelity and small fleets; `opq.box.fleet_metrics.FastMeter` is the
fast path from the supply model.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from opq.box.commands import RateControl
from opq.box.fleet_encoding import IntArray, MeasurementBatch, encode_batch, measurement_prefix
from opq.box.measurement_cohort import MeasurementCohort
from opq.box.meters import BoxRates, EncodedBatch
from opq.box.simulator import Simulator
from opq.domain import SAMPLES_PER_CYCLE
from opq.protocol import BoxMeasurement


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
